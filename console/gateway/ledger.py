"""The usage ledger's gateway side: each record added to its gateway × client × model × hour row in memory, the rows
written to the store every FLUSH_S seconds and once more when the gateway stops (console/store/usage.py)."""

from __future__ import annotations

import asyncio

from console.errors import StoreError
from console.gateway.events import emit
from console.gateway.record import Outcome, RequestRecord
from console.store.usage import UsageDelta, UsageRepo

FLUSH_S = 2.0
MAX_PENDING = 100_000  # rows held while the store cannot be written; past this the ledger says it dropped some


class Ledger:
    def __init__(self, repo: UsageRepo, gateway: str) -> None:
        self._repo = repo
        self._gateway = gateway
        self._pending: dict[tuple[int, str, str], list[float]] = {}

    def __call__(self, rec: RequestRecord) -> None:
        key = (int(rec.started) // 3600 * 3600, rec.client, rec.model or "")
        acc = self._pending.get(key)
        if acc is None:
            if len(self._pending) >= MAX_PENDING:
                emit("ledger_full", level="error", dropped_request=rec.request_id)
                return
            acc = self._pending[key] = [0, 0, 0, 0, 0.0]
        acc[0] += 1
        acc[1] += rec.outcome is not Outcome.OK
        acc[2] += rec.tokens_in or 0
        acc[3] += rec.tokens_out or 0
        acc[4] += rec.latency_ms / 1000

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        deltas = [UsageDelta(hour, self._gateway, client, model, int(a[0]), int(a[1]), int(a[2]), int(a[3]), a[4])
                  for (hour, client, model), a in pending.items()]
        try:
            await self._repo.add(deltas)
        except StoreError as exc:
            emit("ledger_write_failed", level="error", error=str(exc), rows=len(deltas))
            for key, acc in pending.items():  # kept for the next try
                mine = self._pending.setdefault(key, [0, 0, 0, 0, 0.0])
                for i, v in enumerate(acc):
                    mine[i] += v

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            await self.flush()
