"""History search where a message is huge and every message matches: a 1 MB prompt of one repeated word, and
10^5 other messages with that word.

    .venv/bin/python bench/search_huge.py [--matches 100000] [--mb 1] [--runs 7] [--db PATH]

The store is built as the app builds it (bench/search_build.py): 50 000 turns whose question and reply both
hold the word, then one turn whose prompt is `--mb` MB of "word word word …" (the newest message, so the
first hit of every search). Then it times:
- `SessionsRepo.search("word")`, the default limit of 20: cold (first query of a newly opened store, the
  file's pages dropped from the OS cache) and warm; the phrase "word word" the same way;
- `enginedeck history search word` run as a command (a new Python process each time, output to a pipe),
  next to `enginedeck --version` as the cost of starting Python and enginedeck alone;
- every hit at once (`--limit` the number of matches): where the time limit (5 s) stops it, it says so.
Target: `history search` ≤ 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from search_build import build, median, run, timed

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.5


def generate(path: Path, matches: int, mb: float) -> float:
    huge = ("word " * int(mb * 2**20 / 5)).strip()

    def turn(i: int) -> tuple[str, str]:
        if i == matches // 2:
            return huge, "that is a lot of words"
        return f"question {i}: what does the word mean here", f"reply {i}: the word means what it says"

    return run(build(path, matches // 2 + 1, turn))


def command(path: Path, *argv: str, runs: int) -> list[float]:
    """Wall seconds of `python -m console ARGV` with the data dir holding `path` (a pipe for output)."""
    env = {**os.environ, "ENGINEDECK_DATA_DIR": str(path.parent), "ENGINEDECK_CONFIG": os.devnull,
           "PYTHONPATH": str(ROOT)}
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "console", *argv], env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - t0)
        if done.returncode:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matches", type=int, default=100_000,
                        help="messages that hold the word (besides the huge one)")
    parser.add_argument("--mb", type=float, default=1.0, help="size of the huge prompt in MB")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--db", type=Path, help="reuse (or create) this database (named enginedeck.db)")
    args = parser.parse_args()
    tmp = None
    path = args.db
    if path is None:
        tmp = tempfile.TemporaryDirectory(prefix="enginedeck-search-huge-")
        path = Path(tmp.name) / "enginedeck.db"
    if not path.exists():
        print(f"building {args.matches:,} matching messages and one {args.mb:g} MB prompt into {path}")
        took = generate(path, args.matches, args.mb)
        print(f"  built in {took:.0f} s; file {path.stat().st_size / 2**20:.0f} MiB")

    print(f"search through SessionsRepo.search, cold then {args.runs} warm runs:")
    for label, query, extra in (("word, limit 20", "word", {}), ('"word word", limit 20', '"word word"', {}),
                                (f"word, all {args.matches + 1:,} hits", "word", {"limit": args.matches + 1})):
        cold, warm, shown, complete = run(timed(path, query, args.runs, **extra))
        print(f"  {label:<26} cold {cold:8.1f} ms   warm median {median(warm):8.1f} ms   ({shown:,} shown"
              f"{'' if complete else ', STOPPED at the time limit'})")

    print(f"the command, a new process each run, median of {args.runs}:")
    start = median(command(path, "--version", runs=args.runs))
    search = median(command(path, "history", "search", "word", runs=args.runs))
    print(f"  enginedeck --version            {start:6.3f} s (Python and enginedeck starting)")
    print(f"  enginedeck history search word  {search:6.3f} s: {'within' if search <= TARGET_S else 'OVER'} "
          f"the {TARGET_S} s target")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
