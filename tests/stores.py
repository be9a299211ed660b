"""Reading back what a command run in a test left in enginedeck's database (`<data dir>/enginedeck.db`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from console.store.db import Store


def fit_records(data_dir: Path) -> list[Any]:
    """The will-it-fit records, newest first, as `enginedeck` wrote them under `data_dir`."""

    async def read() -> list[Any]:
        store = await Store.open(data_dir / "enginedeck.db")
        try:
            return await store.fit_records.recent()
        finally:
            await store.close()

    return asyncio.run(read())
