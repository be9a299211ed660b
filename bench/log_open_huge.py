"""Open a 1 GB log and show its last screen of lines: time to first lines, and how much was read.

    .venv/bin/python bench/log_open_huge.py [--size-mb 1024] [--path /tmp/enginedeck-huge.log] [--keep]

The file is made of real engine log lines (Ollama slog, vLLM, llama.cpp, JSON), written in 1 MiB blocks.
It was just written, so it sits in the page cache: the figure is CPU and syscalls, not disk seeks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from pathlib import Path

from console.logs.index import FileIndex
from console.logs.sources import FileSource

TEMPLATES = (
    'time=2026-11-22T06:50:{s:02d}.{ms:03d}Z level=INFO source=routes.go:1331 msg="request served" n={n}',
    "(APIServer pid=4107) INFO 11-22 06:50:{s:02d} [loggers.py:123] Engine 000: Avg prompt throughput: {n} tok/s",
    "0.05.{ms:03d}.436 I slot launch_slot_: id  0 | task {n} | processing task, is_child = 0",
    '{{"time": "2026-11-22T06:50:{s:02d}Z", "level": "warn", "msg": "slow request", "ms": {n}}}',
    "time=2026-11-22T06:50:{s:02d}.{ms:03d}Z level=ERROR source=sched.go:455 msg=\"error loading model\" n={n}",
)


def generate(path: Path, size: int) -> int:
    lines = [TEMPLATES[i % len(TEMPLATES)].format(s=i % 60, ms=i % 1000, n=i) for i in range(12_000)]
    block = ("\n".join(lines) + "\n").encode()
    block = block[: block.rfind(b"\n", 0, 1 << 20) + 1]
    count = 0
    with path.open("wb") as f:
        while f.tell() + len(block) <= size:
            f.write(block)
            count += block.count(b"\n")
        f.write(b"time=2026-11-22T07:00:00Z level=INFO msg=\"the very last line\"\n")
    return count + 1


async def first_lines(path: Path, n: int) -> tuple[float, list[str]]:
    t0 = time.perf_counter()
    agen = FileSource(path, lines=n, follow=True).events()
    got = [await anext(agen) for _ in range(n)]
    dt = time.perf_counter() - t0
    await agen.aclose()
    return dt, [line.text for line in got]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--path", type=Path, default=Path("/tmp/enginedeck-huge.log"))
    ap.add_argument("--keep", action="store_true", help="keep the file afterwards")
    args = ap.parse_args()
    size = args.size_mb * 1024 * 1024
    if not args.path.exists() or args.path.stat().st_size < size:
        t0 = time.perf_counter()
        n = generate(args.path, size)
        print(f"generated {args.path}: {args.path.stat().st_size / 2**20:.0f} MiB, {n:,} lines "
              f"in {time.perf_counter() - t0:.1f} s")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    t0 = time.perf_counter()
    with FileIndex(args.path) as idx:
        last = idx.tail(50)
        dt_index = time.perf_counter() - t0
        t1 = time.perf_counter()
        for _ in range(20):  # scroll back 20 screens of 50 lines
            idx.extend_back(50)
            [idx.line(i) for i in range(50)]
        dt_scroll = (time.perf_counter() - t1) / 20
        indexed = idx.count
    dt_source, texts = asyncio.run(first_lines(args.path, 50))
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"open + last 50 lines (FileIndex.tail):   {dt_index * 1000:8.2f} ms  last: {last[-1].text!r}")
    print(f"open + last 50 lines (FileSource, -F):   {dt_source * 1000:8.2f} ms  last: {texts[-1]!r}")
    print(f"scroll back one screen (50 lines):       {dt_scroll * 1000:8.2f} ms  ({indexed:,} lines indexed of "
          f"{args.path.stat().st_size / 2**20:.0f} MiB)")
    print(f"max RSS: {rss1 / 1024:.0f} MiB (before opening: {rss0 / 1024:.0f} MiB)")
    if not args.keep:
        os.unlink(args.path)


if __name__ == "__main__":
    main()
