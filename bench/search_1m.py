"""History search over 1 M messages: generate them, then time several query shapes through the real code path.

    .venv/bin/python bench/search_1m.py [--messages 1000000] [--runs 15] [--db PATH] [--keep]

The messages are deterministic (seeded generator over a fixed vocabulary with a Zipf-like spread, so some
words are in a third of all messages and some in a handful). They are written with executemany in large
transactions into a database made by `Store.open` (the real schema, FTS triggers included), then each query is
timed through `SessionsRepo.search` (match, newest first, join, snippet) with the default limit. Target: ≤ 50 ms
per query. Prints the median and p95 of each shape.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from console.store.db import Store

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "za", "qu", "ber", "dan", "fel", "gor", "hin"]
REAL_WORDS = ["kubernetes", "scheduler", "gpu", "memory", "latency", "throughput", "python", "error", "timeout",
              "quantization", "tokenizer", "attention", "cache", "prompt", "model", "server"]
MESSAGES_PER_SESSION = 20
BATCH = 50_000
SHAPES = {
    "common word": "model",
    "rare word": "tokenizer",
    "two words": "gpu memory",
    "phrase": '"cache latency"',
    "prefix": "quanti*",
    "either word": "scheduler OR throughput",
    "no match": "zzzzunknown",
}


def vocabulary(size: int = 6000) -> list[str]:
    rng = random.Random(7)
    words = set(REAL_WORDS)
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    # Real words first: with Zipf weights below, "model" is common and "tokenizer" rare.
    ordered = ["the", "a", "model", "server", "gpu", "memory", "cache", "latency", "error"]
    ordered += sorted(words - set(ordered))
    ordered.remove("tokenizer")
    return [*ordered, "tokenizer"]


def generate(path: Path, n: int) -> float:
    asyncio.run(_create(path))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")  # a throwaway file: nothing to protect while loading
    words = vocabulary()
    started = time.perf_counter()
    sessions = n // MESSAGES_PER_SESSION + 1
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO sessions (id, title, created_at, updated_at) VALUES (?, ?, ?, ?)",
                     [(i, f"session {i}", 1.7e9, 1.7e9) for i in range(1, sessions + 1)])
    conn.execute("COMMIT")
    for start in range(0, n, BATCH):
        rows = batch(start, min(BATCH, n - start), words)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO messages (session_id, role, content, created_at, updated_at) "
                         "VALUES (?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        print(f"\r  {start + len(rows):>9,} messages", end="", flush=True)
    conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')")
    conn.close()
    print()
    return time.perf_counter() - started


def batch(start: int, count: int, words: list[str]) -> list[tuple]:
    """Messages start .. start+count-1; each batch seeded by its start, so any batch can be made alone."""
    rng = random.Random(start)
    cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(words))))
    base = 1_700_000_000.0
    return [(
        (start + i) // MESSAGES_PER_SESSION + 1, "user" if (start + i) % 2 == 0 else "assistant",
        " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(15, 60))), base + start + i, base + start + i,
    ) for i in range(count)]


async def _create(path: Path) -> None:
    await (await Store.open(path)).close()


async def measure(path: Path, runs: int) -> dict[str, list[float]]:
    store = await Store.open(path)
    try:
        timings: dict[str, list[float]] = {}
        for name, query in SHAPES.items():
            await store.sessions.search(query)  # warm the page cache once per shape
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                hits = await store.sessions.search(query)
                times.append((time.perf_counter() - t0) * 1000)
            timings[name] = times
            count = (await store.db.fetchone("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?",
                                             (_match(query),)))[0]
            print(f"  {name:<12} {query!r:<28} median {statistics.median(times):6.1f} ms   "
                  f"p95 {_p95(times):6.1f} ms   ({count:,} matching, {len(hits)} shown)")
        return timings
    finally:
        await store.close()


def _match(query: str) -> str:
    from console.store.sessions import fts_query

    return fts_query(query)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--db", type=Path, help="reuse (or create) this database instead of a temp one")
    parser.add_argument("--keep", action="store_true", help="keep the temp database")
    args = parser.parse_args()
    tmp = None
    path = args.db
    if path is None:
        tmp = tempfile.TemporaryDirectory(prefix="enginedeck-search-")
        path = Path(tmp.name) / "history.db"
    if not path.exists():
        print(f"generating {args.messages:,} messages into {path}")
        took = generate(path, args.messages)
        print(f"  generated in {took:.1f} s; file {path.stat().st_size / 2**20:.0f} MiB")
    print(f"search, {args.runs} runs per shape, limit 20 (target ≤ 50 ms):")
    timings = asyncio.run(measure(path, args.runs))
    worst = max(_p95(t) for t in timings.values())
    print(f"worst p95 {worst:.1f} ms: {'within' if worst <= 50 else 'OVER'} the 50 ms target")
    if tmp is not None:
        if args.keep:
            print(f"kept {path}")
        else:
            tmp.cleanup()


if __name__ == "__main__":
    main()
