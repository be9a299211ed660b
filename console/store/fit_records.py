"""Will-it-fit records: for each load, the formula's model part (weights + KV + output) and overhead, beside the
memory the engine's processes held afterwards and where that figure came from (`nvml:pid 1234`, `rss:pid 5`,
`ollama /api/ps`). console/fit/calibrate.py fits the overhead term from them (docs/fit.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from console.store.connection import Db

MEMORY = ("gpu", "host")
# A record is a few hundred bytes and the fit reads only the newest 50 per kind; past this many the oldest go.
MAX_RECORDS = 10_000


@dataclass(frozen=True)
class FitRow:
    id: int
    ts: float
    engine: str
    engine_kind: str
    model: str
    memory: str
    context: int
    slots: int
    predicted_model: int
    overhead: int
    measured: int
    measured_source: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def predicted(self) -> int:
        return self.predicted_model + self.overhead


class FitRecordsRepo:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def record(self, *, engine: str, engine_kind: str, model: str, memory: str, context: int, slots: int,
                     predicted_model: int, overhead: int, measured: int, measured_source: str,
                     detail: Mapping[str, Any] | None = None) -> int:
        if memory not in MEMORY:
            raise ValueError(f"unknown memory kind {memory!r}")
        async with self._db.transaction("record the fit measurement") as conn:
            cursor = await conn.execute(
                "INSERT INTO fit_records (ts, engine, engine_kind, model, memory, context, slots, predicted_model, "
                "overhead, measured, measured_source, detail_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), engine, engine_kind, model, memory, context, slots, predicted_model, overhead,
                 measured, measured_source, json.dumps(dict(detail or {}), default=str)))
            record_id = cursor.lastrowid or 0
            await conn.execute("DELETE FROM fit_records WHERE id <= ?", (record_id - MAX_RECORDS,))
        return record_id

    async def recent(self, *, engine_kind: str | None = None, memory: str | None = None,
                     limit: int = 50) -> list[FitRow]:
        """Newest first."""
        where, params = [], []
        for column, value in (("engine_kind", engine_kind), ("memory", memory)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT * FROM fit_records" + (f" WHERE {' AND '.join(where)}" if where else "")
        rows = await self._db.fetchall(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [FitRow(r["id"], r["ts"], r["engine"], r["engine_kind"], r["model"], r["memory"], r["context"],
                       r["slots"], r["predicted_model"], r["overhead"], r["measured"], r["measured_source"],
                       json.loads(r["detail_json"] or "{}")) for r in rows]
