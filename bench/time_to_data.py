"""Time to data, not time to a frame: how long a person waits for the engine's row, next to toolong's first line.

    .venv/bin/python bench/time_to_data.py [--runs 7] [--no-discover]

Both programs run on a pseudo-terminal of 80x24, and the screen is read as a person would see it (the pty's bytes
played on a pyte screen, polled every 5 ms):
- enginedeck: `python -m console --engine URL` against one Ollama contract server (tests/fakes/ollama_server.py,
  in this process) with a fresh data dir and config. "First frame" is when the title bar ("enginedeck") is on
  screen; "time to data" is when the engine's version string (the contract server says 0.12.6) is on screen,
  i.e. the engine's row; "whole dashboard" is when the key bar ("q Quit") is on screen, i.e. Textual's first
  frame (the rows may come before it: console/ui/start.py). Discovery of the default ports is on unless
  --no-discover (as a user would run it).
- toolong (PyPI `toolong`, the log viewer built on Textual): `tl FILE` on a log file of a few lines (it opens
  at the tail) whose first line is known; its time is when that line is on screen. It is installed into its
  own venv, `.bench-venv/` (ignored by git; toolong is no dependency of enginedeck), on the first run:
  `python3 -m venv .bench-venv && .bench-venv/bin/pip install toolong`.

The two alternate, run by run, so both see the same load on a shared box. Printed: the median and range of each,
and the ratio of enginedeck's time to data to toolong's first line (target ≤ 0.40).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tui_startup import ROOT, Terminal, spawn

BENCH_VENV = ROOT / ".bench-venv"
FIRST_LINE = "2026-12-07T06:50:00Z level=INFO msg=\"first line of the bench log\""
VERSION = "0.12.6"


def toolong() -> Path:
    tl = BENCH_VENV / "bin" / "tl"
    if not tl.exists():
        print(f"installing toolong into {BENCH_VENV} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(BENCH_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "toolong"], check=True)
    return tl


def watch(cmd: list[str], env: dict[str, str], wanted: dict[str, str], timeout_s: float = 20.0) -> dict[str, float]:
    """Spawn `cmd` on an 80x24 pty; return, for each name in `wanted`, seconds until its text was on screen."""
    term = Terminal()
    seen: dict[str, float] = {}
    t0 = time.monotonic()
    proc, master = spawn(cmd, env)
    try:
        while len(seen) < len(wanted):
            if time.monotonic() - t0 > timeout_s:
                raise SystemExit(f"{cmd[0]}: not on screen within {timeout_s:g} s: "
                                 f"{sorted(set(wanted) - set(seen))}\n{term.text()}")
            ready, _, _ = select.select([master], [], [], 0.005)
            if not ready:
                continue
            try:
                term.feed(os.read(master, 65536))
            except OSError:
                raise SystemExit(f"{cmd[0]} exited:\n{term.text()}") from None
            now = time.monotonic() - t0
            text = term.text()
            for name, needle in wanted.items():
                if name not in seen and needle in text:
                    seen[name] = now
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--no-discover", action="store_true", help="pass --no-discover to enginedeck")
    args = ap.parse_args()
    tl = toolong()
    sys.path.insert(0, str(ROOT))
    from tests.fakes.ollama_server import FakeOllama

    server = FakeOllama().start()
    # What an installed enginedeck runs: byte-compiled modules (pip compiles them; toolong's venv already is).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "console")], check=True)
    rows: list[tuple[float, float, float, float]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "engine.log"
            # One screen of lines: toolong opens at the tail.
            log.write_text(FIRST_LINE + "\n" + "".join(f"line {i} of the bench log\n" for i in range(10)))
            env = {**os.environ, "TERM": "xterm-256color", "ENGINEDECK_DATA_DIR": str(Path(tmp) / "data"),
                   "ENGINEDECK_CONFIG": str(Path(tmp) / "none.toml"), "COLUMNS": "80", "LINES": "24"}
            Path(env["ENGINEDECK_CONFIG"]).write_text("")  # the defaults
            deck = [sys.executable, "-m", "console", "--engine", server.url,
                    *(["--no-discover"] if args.no_discover else [])]
            for _ in range(args.runs):
                d = watch(deck, env, {"frame": "enginedeck", "data": VERSION, "keys": "q Quit"})
                t = watch([str(tl), str(log)], env, {"line": "first line of the bench log"})
                rows.append((d["frame"], d["data"], t["line"], d["keys"]))
    finally:
        server.stop()
    print(f"time to data on an 80x24 pty, {args.runs} runs, one Ollama contract server"
          f"{', --no-discover' if args.no_discover else ', discovery on'}:")
    for i, (frame, data, line, keys) in enumerate(rows):
        print(f"  run {i + 1}: enginedeck first frame {frame:.3f} s, engine row {data:.3f} s, whole dashboard "
              f"{keys:.3f} s | toolong first line {line:.3f} s | ratio {data / line:.2f}")
    for name, values in (("enginedeck first frame", [r[0] for r in rows]),
                         ("enginedeck time to data (engine row)", [r[1] for r in rows]),
                         ("enginedeck whole dashboard (key bar)", [r[3] for r in rows]),
                         ("toolong first line", [r[2] for r in rows]),
                         ("ratio time to data / toolong", [r[1] / r[2] for r in rows])):
        print(f"  {name:<38} median {statistics.median(values):6.3f}  min {min(values):6.3f}  "
              f"max {max(values):6.3f}")
    print("  target: ratio ≤ 0.40")


if __name__ == "__main__":
    main()
