"""The TUI's idle cost in fleet mode: the real TUI on an 80x24 pty with `[fleet] prometheus_url` set, reading 100
simulated hosts through the lab's real Prometheus (bench/fleet_scale.py's fake exporter: 2 engines, 6 loaded models
and 8 GPUs a host), measured from outside. Target: the dashboard's idle budget, ≤ 0.5 % of one core, settled.

    .venv/bin/python bench/fleet_idle.py                        # 100 hosts, 60 s measured after 15 s settling
    .venv/bin/python bench/fleet_idle.py --duration 180 --every 30 --baseline

The TUI is `python -m console --no-discover` with a fresh data dir and a config whose dashboard polls at 1 Hz, so the
fleet is read at its own pace (every 5 s at most, further apart when a refresh is costly: console/ui/fleet_rows.py's
fleet_interval; the fleet line says it), and telemetry is sampled once a second, as in the dashboard's idle
figure (bench/tui_startup.py). Once the fleet line says every host is read and the settling time has passed, CPU
(user + system of the TUI process, all its threads, as % of one core), terminal output and RSS are taken over the
measured window; `--baseline` first measures the same window with no fleet and no engine, so the
difference is the fleet's own cost on the box as it is then. Then, in this process, one fleet read and the rows
built from it are timed on their own (CPU time of the reading thread), to say where the TUI's CPU goes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fleet_scale import prometheus_fleet, prometheus_version
from tui_startup import ROOT, Terminal, long_idle, read_for, spawn

BUDGET_PCT = 0.5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds measured (default 60)")
    ap.add_argument("--warmup", type=float, default=15.0, help="seconds after every host is shown, before measuring")
    ap.add_argument("--poll", type=float, default=1.0, help="ui.poll_interval_s (the fleet: at least every 5 s)")
    ap.add_argument("--telemetry", type=float, default=1.0, help="ui.telemetry_interval_s")
    ap.add_argument("--every", type=float, default=0.0, help="also print each slice of this many seconds")
    ap.add_argument("--baseline", action="store_true",
                    help="first the same window with no fleet (the dashboard with no engine): the fleet's own share")
    args = ap.parse_args()

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "console")], check=True)
    with prometheus_fleet(args.hosts) as (url, _pages):
        if args.baseline:
            run_tui(None, args)
        run_tui(url, args)
        in_process(url, args.hosts)
    print(f"  {prometheus_version()}; load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} cores)")
    return 0


def run_tui(url: str | None, args: argparse.Namespace) -> None:
    """The TUI in fleet mode over `url`, or with neither fleet nor engines (None), measured on its pty."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TERM": "xterm-256color", "ENGINEDECK_DATA_DIR": tmp,
               "ENGINEDECK_CONFIG": str(Path(tmp) / "config.toml"), "COLUMNS": "80", "LINES": "24"}
        fleet = f'\n[fleet]\nprometheus_url = "{url}"\n' if url else ""
        Path(env["ENGINEDECK_CONFIG"]).write_text(
            f"[ui]\npoll_interval_s = {args.poll}\ntelemetry_interval_s = {args.telemetry}\n{fleet}")
        proc, master = spawn([sys.executable, "-m", "console", "--no-discover"], env)
        try:
            measure(proc, master, args, fleet=url is not None)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
            os.close(master)


def measure(proc: subprocess.Popen[bytes], master: int, args: argparse.Namespace, *, fleet: bool) -> None:
    term = Terminal()
    shown = re.compile(rf"\b{args.hosts} host\(s\) from " if fleet else "Quit")
    deadline = time.monotonic() + 60
    while not shown.search(term.text()):
        if time.monotonic() > deadline:
            raise SystemExit(f"the TUI never showed {shown.pattern!r} within 60 s:\n{term.text()}")
        term.feed(read_for(master, 0.2)[0])
    term.feed(read_for(master, args.warmup)[0])
    idle = long_idle(proc, master, args.duration, args.every, term)
    wall, cpu, total, rss0, rss1 = idle.wall_s, idle.cpu_s, idle.output_bytes, idle.rss0, idle.rss1
    pct = 100 * cpu / wall
    if not fleet:
        print(f"baseline, the dashboard with no fleet and no engine (telemetry every {args.telemetry:g} s), "
              f"measured over {wall:.0f} s:")
        print(f"  CPU {pct:.2f} % of one core  output {total / wall / 1024:.2f} KB/s  "
              f"RSS {rss0 / 2**20:.1f} → {rss1 / 2**20:.1f} MB")
        return
    line = next((row.strip("│ ") for row in term.text().split("\n") if shown.search(row)), None)
    if line is None:
        raise SystemExit(f"the fleet line no longer says {args.hosts} hosts:\n{term.text()}")
    print(f"fleet mode, {args.hosts} simulated hosts through a real Prometheus, TUI on an 80x24 pty "
          f"(dashboard poll {args.poll:g} s, telemetry every {args.telemetry:g} s), measured over {wall:.0f} s "
          f"after {args.warmup:g} s settling:")
    print(f"  fleet line: {line}")
    print(f"  CPU {pct:.2f} % of one core (budget ≤ {BUDGET_PCT} %: {'met' if pct <= BUDGET_PCT else 'MISSED'})  "
          f"output {total / wall / 1024:.2f} KB/s  RSS {rss0 / 2**20:.1f} → {rss1 / 2**20:.1f} MB")


def in_process(url: str, hosts: int, reads: int = 5) -> None:
    """Where a fleet refresh's CPU goes: the read (five queries and their parse, in the reading thread) and the
    rows the dashboard builds from it, each timed by CPU time here."""
    sys.path.insert(0, str(ROOT))
    from console.config import Config, FleetConfig
    from console.ui.fleet_rows import fleet_host_lines, fleet_rows, read_fleet

    config = Config(fleet=FleetConfig(prometheus_url=url), discover=False)
    read_cpu, rows_cpu = [], []
    for _ in range(reads):
        c0 = time.thread_time()
        view = read_fleet(config)
        c1 = time.thread_time()
        engines, loaded, _ = fleet_rows(view)
        lines = fleet_host_lines(view)
        read_cpu.append(c1 - c0)
        rows_cpu.append(time.thread_time() - c1)
    read_cpu.sort()
    rows_cpu.sort()
    print(f"  one refresh in this process, median of {reads}: the read {1000 * read_cpu[reads // 2]:.0f} ms of CPU, "
          f"the rows {1000 * rows_cpu[reads // 2]:.0f} ms ({len(view.hosts)} of {hosts} hosts, {len(engines)} engine "
          f"rows, {len(loaded)} model rows, {len(lines)} host/GPU lines)")


if __name__ == "__main__":
    raise SystemExit(main())
