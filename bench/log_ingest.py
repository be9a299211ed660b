"""Log ingest throughput: parse + filter, per format and mixed, and end to end from a file (target ≥ 100 k
lines/s).

    .venv/bin/python bench/log_ingest.py [--lines 300000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from console.logs.filter import LogFilter
from console.logs.parse import LineParser
from console.logs.sources import FileSource

FORMATS = {
    "ollama slog": 'time=2026-11-22T06:50:{s:02d}.{ms:03d}Z level=INFO source=routes.go:1331 msg="served" n={n}',
    "vllm": "(APIServer pid=4107) INFO 11-22 06:50:{s:02d} [loggers.py:123] Avg prompt throughput: {n} tok/s",
    "llama.cpp": "0.05.{ms:03d}.436 I slot launch_slot_: id  0 | task {n} | processing task, is_child = 0",
    "json": '{{"time": "2026-11-22T06:50:{s:02d}Z", "level": "warn", "msg": "slow request", "ms": {n}}}',
    "plain": "some engine wrote this line without any structure, number {n}",
}


def lines_of(template: str, n: int) -> list[str]:
    return [template.format(s=i % 60, ms=i % 1000, n=i) for i in range(n)]


def rate(lines: list[str], flt: LogFilter) -> float:
    parser = LineParser("bench")
    parse, match = parser.parse, flt.matches
    t0 = time.perf_counter()
    kept = sum(1 for raw in lines if match(parse(raw)))
    dt = time.perf_counter() - t0
    assert kept >= 0
    return len(lines) / dt


async def file_rate(path: Path, flt: LogFilter, total: int) -> float:
    t0 = time.perf_counter()
    n = 0
    async for event in FileSource(path, lines=total, follow=False).events():
        n += flt.matches(event)  # type: ignore[arg-type]
    return total / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=300_000)
    args = ap.parse_args()
    flt = LogFilter.build("warn", r"throughput|slow|error")
    print(f"parse + filter (--level warn --grep 'throughput|slow|error'), {args.lines:,} lines each:")
    for name, template in FORMATS.items():
        print(f"  {name:12} {rate(lines_of(template, args.lines), flt) / 1000:8.0f} k lines/s")
    mixed = [line for group in zip(*(lines_of(t, args.lines // len(FORMATS)) for t in FORMATS.values()),
                                   strict=True) for line in group]
    print(f"  {'mixed':12} {rate(mixed, flt) / 1000:8.0f} k lines/s")
    fd, name = tempfile.mkstemp(suffix=".log")
    path = Path(name)
    try:
        os.write(fd, ("\n".join(mixed) + "\n").encode())
        os.close(fd)
        print(f"  {'file, mixed':12} {asyncio.run(file_rate(path, flt, len(mixed))) / 1000:8.0f} k lines/s "
              "(FileSource read + parse + filter)")
    finally:
        path.unlink()


if __name__ == "__main__":
    main()
