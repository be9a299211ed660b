"""Probe runs and their levels: every figure of every level, the SLO, the verdict and the environment.

A run row is written when the probe starts (status "running") and each level as soon as it completes, so a
cancelled or crashed probe keeps what it measured. Figures are stored as the probe's own JSON; this module
does not interpret them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from console.store.connection import Db

STATUSES = ("running", "complete", "cancelled", "error")
# Runs are small (a few KB each) but still bounded: past this many the oldest go, with their levels.
MAX_RUNS = 10_000


@dataclass(frozen=True)
class ProbeRun:
    id: int
    started_at: float
    finished_at: float | None
    status: str
    engine: str
    engine_kind: str | None
    engine_version: str | None
    model: str
    params: Mapping[str, Any] = field(default_factory=dict)
    slo: Mapping[str, Any] = field(default_factory=dict)
    verdict: Mapping[str, Any] | None = None
    environment: Mapping[str, Any] | None = None
    levels: tuple[Mapping[str, Any], ...] = ()  # figures per level, in the order they were measured


def _dump(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(dict(value), default=str)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class ProbesRepo:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def start(self, *, engine: str, engine_kind: str | None, engine_version: str | None, model: str,
                    params: Mapping[str, Any], slo: Mapping[str, Any],
                    environment: Mapping[str, Any] | None = None) -> int:
        async with self._db.transaction("record the probe run") as conn:
            cursor = await conn.execute(
                "INSERT INTO probe_runs (started_at, status, engine, engine_kind, engine_version, model, "
                "params_json, slo_json, environment_json) VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), engine, engine_kind, engine_version, model, _dump(params) or "{}",
                 _dump(slo) or "{}", _dump(environment)))
            run_id = cursor.lastrowid or 0
            await conn.execute("DELETE FROM probe_runs WHERE id <= ?", (run_id - MAX_RUNS,))
        return run_id

    async def save_level(self, run_id: int, concurrency: int, figures: Mapping[str, Any]) -> None:
        """Add one measured level after the run's others (a concurrency may come twice: the noise guard)."""
        await self._db.execute(
            "INSERT INTO probe_levels (run_id, seq, concurrency, figures_json) VALUES "
            "(?, (SELECT COALESCE(MAX(seq), -1) + 1 FROM probe_levels WHERE run_id = ?), ?, ?)",
            (run_id, run_id, concurrency, _dump(figures)), doing="record the probe level")

    async def finish(self, run_id: int, status: str, verdict: Mapping[str, Any] | None) -> None:
        if status not in STATUSES or status == "running":
            raise ValueError(f"a finished probe run cannot have status {status!r}")
        await self._db.execute(
            "UPDATE probe_runs SET status = ?, finished_at = ?, verdict_json = ? WHERE id = ?",
            (status, time.time(), _dump(verdict), run_id), doing="record the probe result")

    async def get(self, run_id: int) -> ProbeRun | None:
        row = await self._db.fetchone("SELECT * FROM probe_runs WHERE id = ?", (run_id,))
        if row is None:
            return None
        levels = await self._db.fetchall(
            "SELECT figures_json FROM probe_levels WHERE run_id = ? ORDER BY seq", (run_id,))
        return self._run(row, tuple(json.loads(r["figures_json"]) for r in levels))

    async def recent(self, *, limit: int = 50, engine: str | None = None, model: str | None = None) -> list[ProbeRun]:
        """Newest first, without their levels (use `get` for those)."""
        where: list[str] = []
        params: list[Any] = []
        if engine:
            where.append("engine = ?")
            params.append(engine)
        if model:
            where.append("model = ?")
            params.append(model)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._db.fetchall(f"SELECT * FROM probe_runs {clause} ORDER BY id DESC LIMIT ?",
                                       (*params, limit))
        return [self._run(r, ()) for r in rows]

    @staticmethod
    def _run(row: Any, levels: tuple[Mapping[str, Any], ...]) -> ProbeRun:
        return ProbeRun(
            id=row["id"], started_at=row["started_at"], finished_at=row["finished_at"], status=row["status"],
            engine=row["engine"], engine_kind=row["engine_kind"], engine_version=row["engine_version"],
            model=row["model"], params=_load(row["params_json"]) or {}, slo=_load(row["slo_json"]) or {},
            verdict=_load(row["verdict_json"]), environment=_load(row["environment_json"]), levels=levels,
        )
