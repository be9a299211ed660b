"""History search over 1 M messages: build them as the app does, then time several query shapes, cold and warm.

    .venv/bin/python bench/search_1m.py [--messages 1000000] [--runs 15] [--db PATH] [--keep]

The messages are deterministic (a seeded generator over a fixed vocabulary with a Zipf-like spread, so some
words are in a third of all messages and some in a handful). They are written the way enginedeck writes them
(bench/search_build.py): turn by turn through `Conversation` and the real store, each reply by streaming
updates, every write its own transaction, no 'optimize' afterwards. Then each query shape is timed through
`SessionsRepo.search` (match, newest first, join, snippet) with the default limit: first cold (a newly opened
store, the file's pages dropped from the OS cache), then `--runs` times warm. Target: ≤ 50 ms per warm query.
"""

from __future__ import annotations

import argparse
import itertools
import random
import tempfile
from pathlib import Path

from search_build import build, median, p95, run, timed

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "za", "qu", "ber", "dan", "fel", "gor", "hin"]
REAL_WORDS = ["kubernetes", "scheduler", "gpu", "memory", "latency", "throughput", "python", "error", "timeout",
              "quantization", "tokenizer", "attention", "cache", "prompt", "model", "server"]
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
    words = vocabulary()
    cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(words))))

    def turn(i: int) -> tuple[str, str]:
        rng = random.Random(i)
        question, reply = (" ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(15, 60)))
                           for _ in range(2))
        return question, reply

    return run(build(path, n // 2, turn))


async def _count(path: Path, query: str) -> int:
    from console.store.db import Store

    store = await Store.open(path)
    try:
        row = await store.db.fetchone("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?", (_match(query),))
        return int(row[0]) if row else 0
    finally:
        await store.close()


def measure(path: Path, runs: int) -> list[float]:
    """Prints each shape's cold time and warm median / p95; returns the warm p95s."""
    worst = []
    for name, query in SHAPES.items():
        cold, warm, shown, complete = run(timed(path, query, runs))
        worst.append(p95(warm))
        print(f"  {name:<12} {query!r:<28} cold {cold:7.1f} ms   warm median {median(warm):6.1f} ms   "
              f"p95 {p95(warm):6.1f} ms   ({run(_count(path, query)):,} matching, {shown} shown"
              f"{'' if complete else ', STOPPED at the time limit'})")
    return worst


def _match(query: str) -> str:
    from console.store.sessions import fts_query

    return fts_query(query)


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
        print(f"building {args.messages:,} messages into {path}, turn by turn as the app writes them")
        took = generate(path, args.messages)
        print(f"  built in {took:.0f} s; file {path.stat().st_size / 2**20:.0f} MiB")
    print(f"search, cold then {args.runs} warm runs per shape, limit 20 (target ≤ 50 ms warm):")
    worst = max(measure(path, args.runs))
    print(f"worst warm p95 {worst:.1f} ms: {'within' if worst <= 50 else 'OVER'} the 50 ms target")
    if tmp is not None:
        if args.keep:
            print(f"kept {path}")
        else:
            tmp.cleanup()


if __name__ == "__main__":
    main()
