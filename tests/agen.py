"""Helpers for tests that read async generators."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def take(agen: AsyncIterator[T], n: int, limit_s: float = 10.0) -> list[T]:
    """The first `n` items of `agen`; fails with TimeoutError when they do not come within `limit_s`."""
    out: list[T] = []

    async def run() -> None:
        async for ev in agen:
            out.append(ev)
            if len(out) == n:
                return

    await asyncio.wait_for(run(), limit_s)
    return out
