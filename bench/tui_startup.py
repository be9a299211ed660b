"""TUI start-up and idle cost on a real pseudo-terminal of 80x24.

Measures, over several runs of `enginedeck` with the dashboard live:
- time to first paint: from spawn until the dashboard's key bar ("Quit") has been written to the terminal (the
  engine rows may be on screen before that: bench/time_to_data.py);
- RSS a few seconds after start;
- idle CPU % and terminal output bytes/s over a window with the dashboard polling at 1 Hz;
- with --tour, the same idle figures again after a tour of every screen by keys (2, 3, 4, 5, ?, then 1 back to
  the dashboard), side by side with the dashboard-only figures of the same run (target: after ≤ 1.1 × before,
  and ≤ 0.5 %): a screen that is not shown must cost nothing.

Engines: pass --engine URL (repeatable) for engines to connect to; with --contract it starts two Ollama
contract servers from tests/fakes on loopback so the figure matches the target's "two engines connected".

    python bench/tui_startup.py --runs 5 --idle 30 --contract
    python bench/tui_startup.py --runs 3 --idle 30 --contract --tour
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import pty
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def spawn(args: list[str], env: dict[str, str], cols: int = 80, rows: int = 24) -> tuple[subprocess.Popen, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                            close_fds=True)
    os.close(slave)
    return proc, master


def read_for(master: int, seconds: float, until: bytes | None = None) -> tuple[bytes, float | None]:
    """Read the terminal for `seconds`; return everything and when `until` first appeared (monotonic)."""
    buf = bytearray()
    seen_at = None
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([master], [], [], min(left, 0.05))
        if not ready:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        buf += chunk
        if until is not None and seen_at is None and until in buf:
            seen_at = time.monotonic()
            return bytes(buf), seen_at
    return bytes(buf), seen_at


class Terminal:
    """What a person would see: the pty's bytes played on an 80x24 screen (pyte, from the test extras)."""

    def __init__(self, cols: int = 80, rows: int = 24) -> None:
        import pyte

        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)

    def feed(self, data: bytes) -> None:
        self.stream.feed(data)

    def text(self) -> str:
        return "\n".join(self.screen.display)


# The keys of the tour, the title each screen shows, and how long each stays shown (long enough to compose it
# and start its work: a chat pane, the probe form, the logs screen's audit pane).
TOUR = ((b"2", "Models"), (b"3", "Chat"), (b"4", "Probe"), (b"5", "Logs"), (b"?", "Help"), (b"1", "Dashboard"))
TOUR_DWELL_S = 2.0
PROCESS_SCAN_EVERY_S = 60.0  # console/ui/screens/dashboard.py


def idle_window(proc: subprocess.Popen, master: int, seconds: float) -> tuple[float, float]:
    """CPU % of one core and terminal output bytes/s of the process over `seconds` of reading its terminal."""
    p = psutil.Process(proc.pid)
    cpu0 = sum(p.cpu_times()[:2])
    w0 = time.monotonic()
    out, _ = read_for(master, seconds)
    wall = time.monotonic() - w0
    cpu = sum(p.cpu_times()[:2]) - cpu0
    return 100 * cpu / wall, len(out) / wall


@dataclass
class Idle:
    wall_s: float
    cpu_s: float
    output_bytes: int
    rss0: int
    rss1: int

    @property
    def cpu_pct(self) -> float:
        return 100 * self.cpu_s / self.wall_s


def long_idle(proc: subprocess.Popen, master: int, seconds: float, every: float = 0.0,
              term: Terminal | None = None) -> Idle:
    """The process's CPU, terminal output and RSS over `seconds` of reading its terminal (fed to `term`), with a line
    of figures every `every` seconds (0: none)."""
    p = psutil.Process(proc.pid)
    rss0, cpu0, t0 = p.memory_info().rss, sum(p.cpu_times()[:2]), time.monotonic()
    total = 0
    slice_s = every or seconds
    while (left := t0 + seconds - time.monotonic()) > 0:
        c0, w0 = sum(p.cpu_times()[:2]), time.monotonic()
        out, _ = read_for(master, min(slice_s, left))
        if term is not None:
            term.feed(out)
        total += len(out)
        if every:
            wall = time.monotonic() - w0
            print(f"  {time.monotonic() - t0:6.0f} s  CPU {100 * (sum(p.cpu_times()[:2]) - c0) / wall:5.2f} %  "
                  f"output {len(out) / wall / 1024:5.2f} KB/s  RSS {p.memory_info().rss / 2**20:5.1f} MB",
                  flush=True)
    return Idle(time.monotonic() - t0, sum(p.cpu_times()[:2]) - cpu0, total, rss0, p.memory_info().rss)


def one_run(engine_args: list[str], idle_s: float, env: dict[str, str], *, tour: bool = False) -> dict[str, float]:
    cmd = [sys.executable, "-m", "console", "--no-discover", *engine_args]
    t0 = time.monotonic()
    proc, master = spawn(cmd, env)
    try:
        _, painted = read_for(master, 10.0, until=b"Quit")  # the key bar: Textual's first frame of the dashboard
        if painted is None:
            raise SystemExit("the dashboard never painted within 10 s")
        read_for(master, 3.0)  # let start-up work (first polls, discovery) finish
        rss = psutil.Process(proc.pid).memory_info().rss
        idle_at = time.monotonic()
        cpu, out = idle_window(proc, master, idle_s)
        result = {"first_paint_s": painted - t0, "rss_mb": rss / 2**20, "idle_cpu_pct": cpu, "out_bytes_per_s": out}
        if tour:
            term = Terminal()
            for key, title in TOUR:
                os.write(master, key)
                term.feed(read_for(master, TOUR_DWELL_S)[0])
                if title not in term.text().split("\n")[0] and title != "Help":  # help is a dialog over the screen
                    raise SystemExit(f"the tour's {key.decode()!r} did not show {title}:\n{term.text()}")
            read_for(master, 3.0)  # the dashboard's catch-up poll and sample on coming back
            # The dashboard scans /proc for engine processes once a minute (~15-50 ms of CPU): the second window
            # starts a whole number of minutes after the first, so that both see the same part of that cycle.
            read_for(master, -(time.monotonic() - idle_at) % PROCESS_SCAN_EVERY_S)
            result["tour_cpu_pct"], result["tour_out_bytes_per_s"] = idle_window(proc, master, idle_s)
            result["tour_ratio"] = result["tour_cpu_pct"] / max(cpu, 1e-9)
            result["tour_rss_mb"] = psutil.Process(proc.pid).memory_info().rss / 2**20
        return result
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        os.close(master)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of idle measurement per run")
    ap.add_argument("--engine", action="append", default=[], help="engine URL to connect to (repeatable)")
    ap.add_argument("--contract", action="store_true", help="start two Ollama contract servers to connect to")
    ap.add_argument("--poll", type=float, default=1.0, help="engine poll interval, seconds (ui.poll_interval_s)")
    ap.add_argument("--telemetry", type=float, default=1.0,
                    help="telemetry interval, seconds (ui.telemetry_interval_s)")
    ap.add_argument("--tour", action="store_true",
                    help="after the idle window, visit every screen by keys, come back and measure idle again")
    args = ap.parse_args()

    servers = []
    urls = list(args.engine)
    if args.contract:
        sys.path.insert(0, str(ROOT))
        from tests.fakes.ollama_server import FakeOllama

        for _ in range(2):
            server = FakeOllama().start()
            servers.append(server)
            urls.append(server.url)
    # pip byte-compiles an installed package; an editable checkout under PYTHONDONTWRITEBYTECODE would instead
    # compile every module from source on each start. Measure what an installed enginedeck does.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "console")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TERM": "xterm-256color", "ENGINEDECK_DATA_DIR": tmp,
               "ENGINEDECK_CONFIG": str(Path(tmp) / "none.toml"), "COLUMNS": "80", "LINES": "24"}
        Path(env["ENGINEDECK_CONFIG"]).write_text(
            f"[ui]\npoll_interval_s = {args.poll}\ntelemetry_interval_s = {args.telemetry}\n")
        engine_args = [a for u in urls for a in ("--engine", u)]
        results = [one_run(engine_args, args.idle, env, tour=args.tour) for _ in range(args.runs)]
    for server in servers:
        server.stop()
    print(f"enginedeck TUI on an 80x24 pty, {len(urls)} engine(s), {args.runs} runs, idle window {args.idle:.0f} s")
    for key, target in (("first_paint_s", 0.40), ("rss_mb", 60), ("idle_cpu_pct", 0.5), ("out_bytes_per_s", 4096)):
        values = [r[key] for r in results]
        print(f"  {key:<16} median {statistics.median(values):8.3f}  min {min(values):8.3f}  "
              f"max {max(values):8.3f}  (target ≤ {target})")
    if args.tour:
        print(f"  dashboard idle before and after a tour of every screen ({' '.join(k.decode() for k, _ in TOUR)}), "
              "same run:")
        for r in results:
            print(f"    CPU {r['idle_cpu_pct']:.3f} % → {r['tour_cpu_pct']:.3f} % (×{r['tour_ratio']:.2f}, "
                  f"target ≤ 1.1 and ≤ 0.5 %)  output {r['out_bytes_per_s']:.0f} → {r['tour_out_bytes_per_s']:.0f} "
                  f"B/s  RSS {r['rss_mb']:.1f} → {r['tour_rss_mb']:.1f} MB")
        ratios = [r["tour_ratio"] for r in results]
        print(f"    ratio median {statistics.median(ratios):.2f}  min {min(ratios):.2f}  max {max(ratios):.2f}")


if __name__ == "__main__":
    main()
