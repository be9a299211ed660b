"""Polling many engines: the real TUI on an 80x24 pty, N Ollama contract servers polled at 1 Hz, measured from
outside (targets for 10 engines over 10 minutes: ≤ 1.5 % of one core, ≤ 2 KB/s of terminal output, RSS flat).

    .venv/bin/python bench/poll_scale.py                       # 10 engines, 10 minutes
    .venv/bin/python bench/poll_scale.py --engines 10 --duration 60 --warmup 5

The servers (tests/fakes/ollama_server.py) run in this process, each with one model loaded so that every poll
has a row of loaded models to compare; the TUI is `python -m console --no-discover --engine URL ...` with a fresh
data dir and a config that polls engines and samples telemetry once a second. After the engine rows are on
screen and a warm-up, CPU (user + system of the TUI process, as % of one core), terminal output and RSS are taken
over the measured window; RSS is printed at its start and end. `--every S` also prints the figures of each
S-second slice, to see a trend.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tui_startup import ROOT, Terminal, long_idle, read_for, spawn


def start_servers(n: int) -> list:
    sys.path.insert(0, str(ROOT))
    import httpx

    from tests.fakes.ollama_server import FakeOllama

    servers = [FakeOllama().start() for _ in range(n)]
    for server in servers:  # a loaded model: a row per engine in the loaded-models table, as on a real box
        httpx.post(f"{server.url}/api/generate", json={"model": "llama3.2:1b", "keep_alive": "2h"},
                   timeout=10).raise_for_status()
    return servers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", type=int, default=10)
    ap.add_argument("--duration", type=float, default=600.0, help="seconds measured (default 600)")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds after the rows show before measuring")
    ap.add_argument("--poll", type=float, default=1.0, help="engine poll interval, seconds")
    ap.add_argument("--telemetry", type=float, default=1.0, help="telemetry interval, seconds")
    ap.add_argument("--every", type=float, default=0.0, help="also print each slice of this many seconds")
    args = ap.parse_args()

    servers = start_servers(args.engines)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "console")], check=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "TERM": "xterm-256color", "ENGINEDECK_DATA_DIR": tmp,
                   "ENGINEDECK_CONFIG": str(Path(tmp) / "none.toml"), "COLUMNS": "80", "LINES": "24"}
            Path(env["ENGINEDECK_CONFIG"]).write_text(
                f"[ui]\npoll_interval_s = {args.poll}\ntelemetry_interval_s = {args.telemetry}\n")
            cmd = [sys.executable, "-m", "console", "--no-discover",
                   *(a for s in servers for a in ("--engine", s.url))]
            proc, master = spawn(cmd, env)
            try:
                measure(proc, master, args)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
                os.close(master)
    finally:
        for server in servers:
            server.stop()


def measure(proc: subprocess.Popen, master: int, args: argparse.Namespace) -> None:
    term = Terminal()
    deadline = time.monotonic() + 30
    while "llama3.2:1b" not in term.text():  # the loaded-models rows: every engine has answered once
        if time.monotonic() > deadline:
            raise SystemExit(f"no engine rows within 30 s:\n{term.text()}")
        term.feed(read_for(master, 0.2)[0])
    read_for(master, args.warmup)
    idle = long_idle(proc, master, args.duration, args.every)
    wall, cpu, total, rss0, rss1 = idle.wall_s, idle.cpu_s, idle.output_bytes, idle.rss0, idle.rss1
    print(f"{args.engines} Ollama contract servers polled every {args.poll:g} s (telemetry every "
          f"{args.telemetry:g} s), TUI on an 80x24 pty, measured over {wall:.0f} s:")
    print(f"  CPU {100 * cpu / wall:.2f} % of one core (target ≤ 1.5 %)  output {total / wall / 1024:.2f} KB/s "
          f"(target ≤ 2)  RSS {rss0 / 2**20:.1f} → {rss1 / 2**20:.1f} MB")


if __name__ == "__main__":
    main()
