"""Build a history database for the search benchmarks the way enginedeck builds one, and time searches on it.

Every turn goes through `console.conversation.Conversation` with a real `Store`: the user message and the
reply's `partial` row in their own transactions, then the reply written by streaming updates (the first text
at once, then one update per piece, as a reply that streams for a few seconds is saved), then the final
update with the figures. So the FTS5 index holds what an app-built one holds: one segment per commit, merged
by FTS5's automerge as it goes, with a delete and an insert for every streaming update, and no 'optimize'.

Used by bench/search_1m.py and bench/search_huge.py; run those.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from console.conversation import Conversation
from console.engines.base import Capabilities, ChatEvent, ChatRequest, Engine, EngineInfo, EventKind, Health
from console.store.db import Store

MESSAGES_PER_SESSION = 20  # 10 turns
PIECES = 3  # a reply streams in this many pieces, each one saved (flush interval 0)


class ScriptEngine(Engine):
    """Answers each chat with the next reply of its script, in PIECES pieces."""

    kind = "bench"

    def __init__(self) -> None:
        super().__init__("bench", "http://127.0.0.1:9")
        self.reply = ""

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    async def info(self) -> EngineInfo:
        return EngineInfo(self.kind, self.base_url, "1", Health.OK)

    async def list_models(self) -> list:
        return []

    async def loaded_models(self) -> list:
        return []

    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        words = self.reply.split(" ")
        step = max(1, -(-len(words) // PIECES))
        for start in range(0, len(words), step):
            text = " ".join(words[start:start + step]) + (" " if start + step < len(words) else "")
            yield ChatEvent(EventKind.CONTENT, time.perf_counter_ns(), text=text)


async def build(path: Path, turns: int, turn: Callable[[int], tuple[str, str]], *, progress: bool = True) -> float:
    """`turns` turns of (question, reply) = turn(i) into a new store at `path`; seconds it took."""
    store = await Store.open(path)
    engine = ScriptEngine()
    started = time.perf_counter()
    try:
        conv: Conversation | None = None
        for i in range(turns):
            if i % (MESSAGES_PER_SESSION // 2) == 0:
                conv = Conversation(store, model="bench-model", flush_interval_s=0)
            assert conv is not None
            question, engine.reply = turn(i)
            async for _ in conv.send(engine, question):
                pass
            if conv.store_warning:
                raise RuntimeError(conv.store_warning)
            if progress and (i + 1) % 5000 == 0:
                rate = (i + 1) / (time.perf_counter() - started)
                print(f"\r  {2 * (i + 1):>9,} messages ({2 * rate:,.0f}/s)", end="", flush=True)
    finally:
        await store.close()
    if progress:
        print()
    return time.perf_counter() - started


def evict(path: Path) -> bool:
    """Drop the database's pages from the OS page cache (the next read comes from the disk); False where the
    platform cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for name in (path, Path(f"{path}-wal")):
        if name.exists():
            fd = os.open(name, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    return True


async def timed(path: Path, query: str, runs: int, **search: object) -> tuple[float, list[float], int, bool]:
    """(cold ms, warm ms list, hits, complete): the cold query is the first on a store opened after the file's
    pages were dropped from the OS cache; then `runs` more on the same store."""
    evict(path)
    store = await Store.open(path)
    try:
        t0 = time.perf_counter()
        hits = await store.sessions.search(query, **search)
        cold = (time.perf_counter() - t0) * 1000
        warm = []
        for _ in range(runs):
            t0 = time.perf_counter()
            hits = await store.sessions.search(query, **search)
            warm.append((time.perf_counter() - t0) * 1000)
        return cold, warm, len(hits), hits.complete
    finally:
        await store.close()


def p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]
