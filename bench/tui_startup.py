"""TUI start-up and idle cost on a real pseudo-terminal of 80x24.

Measures, over several runs of `enginedeck` with the dashboard live:
- time to first paint: from spawn until the dashboard header ("enginedeck") has been written to the terminal;
- RSS a few seconds after start;
- idle CPU % and terminal output bytes/s over a window with the dashboard polling at 1 Hz.

Engines: pass --engine URL (repeatable) for engines to connect to; with --contract it starts two Ollama
contract servers from tests/fakes on loopback so the figure matches the target's "two engines connected".

    python bench/tui_startup.py --runs 5 --idle 30 --contract
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


def one_run(engine_args: list[str], idle_s: float, env: dict[str, str]) -> dict[str, float]:
    cmd = [sys.executable, "-m", "console", "--no-discover", *engine_args]
    t0 = time.monotonic()
    proc, master = spawn(cmd, env)
    try:
        _, painted = read_for(master, 10.0, until=b"enginedeck")
        if painted is None:
            raise SystemExit("the dashboard never painted within 10 s")
        read_for(master, 3.0)  # let start-up work (first polls, discovery) finish
        p = psutil.Process(proc.pid)
        rss = p.memory_info().rss
        cpu0 = sum(p.cpu_times()[:2])
        w0 = time.monotonic()
        out, _ = read_for(master, idle_s)
        wall = time.monotonic() - w0
        cpu = sum(p.cpu_times()[:2]) - cpu0
        return {"first_paint_s": painted - t0, "rss_mb": rss / 2**20, "idle_cpu_pct": 100 * cpu / wall,
                "out_bytes_per_s": len(out) / wall}
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
        results = [one_run(engine_args, args.idle, env) for _ in range(args.runs)]
    for server in servers:
        server.stop()
    print(f"enginedeck TUI on an 80x24 pty, {len(urls)} engine(s), {args.runs} runs, idle window {args.idle:.0f} s")
    for key, target in (("first_paint_s", 0.40), ("rss_mb", 60), ("idle_cpu_pct", 0.5), ("out_bytes_per_s", 4096)):
        values = [r[key] for r in results]
        print(f"  {key:<16} median {statistics.median(values):8.3f}  min {min(values):8.3f}  "
              f"max {max(values):8.3f}  (target ≤ {target})")


if __name__ == "__main__":
    main()
