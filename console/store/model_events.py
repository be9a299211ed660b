"""Model events: every load, unload, swap, pull and delete, with its duration and result.

An event that did not succeed also carries its verified `outcome`: what the engine said it held when enginedeck
read its state again afterwards (see console/actions.py). It is kept in `detail_json`, under "outcome".
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from console.store.connection import Db

OPS = ("load", "unload", "swap", "pull", "delete")
# The table is an operations log, not an archive: past this many rows the oldest go.
MAX_EVENTS = 100_000


@dataclass(frozen=True)
class ModelEvent:
    id: int
    ts: float
    engine: str
    engine_kind: str | None
    model: str | None
    op: str
    duration_s: float | None
    ok: bool
    error: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> str | None:
        """The engine's state read back after a failure: loaded / not loaded / ... / unknown: engine unreachable."""
        value = self.detail.get("outcome")
        return value if isinstance(value, str) else None


class ModelEventsRepo:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def record(self, *, engine: str, engine_kind: str | None, model: str | None, op: str,
                     duration_s: float | None, ok: bool, error: str | None = None,
                     detail: Mapping[str, Any] | None = None, outcome: str | None = None) -> int:
        if op not in OPS:
            raise ValueError(f"unknown model op {op!r}")
        detail = {**(detail or {}), **({"outcome": outcome} if outcome is not None else {})}
        async with self._db.transaction("record the model event") as conn:
            cursor = await conn.execute(
                "INSERT INTO model_events (ts, engine, engine_kind, model, op, duration_s, ok, error, detail_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), engine, engine_kind, model, op, duration_s, int(ok), error,
                 json.dumps(detail, default=str)))
            event_id = cursor.lastrowid or 0
            await conn.execute("DELETE FROM model_events WHERE id <= ?", (event_id - MAX_EVENTS,))
        return event_id

    async def recent(self, *, limit: int = 50, engine: str | None = None) -> list[ModelEvent]:
        """Newest first."""
        where, params = ("WHERE engine = ?", (engine, limit)) if engine else ("", (limit,))
        rows = await self._db.fetchall(f"SELECT * FROM model_events {where} ORDER BY id DESC LIMIT ?", params)
        return [ModelEvent(r["id"], r["ts"], r["engine"], r["engine_kind"], r["model"], r["op"], r["duration_s"],
                           bool(r["ok"]), r["error"], json.loads(r["detail_json"] or "{}")) for r in rows]
