"""The gateway's usage ledger: per gateway × client × model × hour, how many requests, how many ended in an error,
the engine's token counts in and out, and busy time (the sum of the requests' latencies: two requests at once
for an hour make two hours busy).

The gateway adds up its records in memory and writes them every few seconds (`add`). A request whose engine gave no
token counts adds none to the token totals: they are what the engines counted, never an estimate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from console.store.connection import Db

# Rows kept: hours × gateways × clients × models. Past this many the oldest hours go.
MAX_ROWS = 500_000
BY = {"client": ("client",), "model": ("model",), "client-model": ("client", "model"),
      "hour": ("hour",), "gateway": ("gateway",)}


@dataclass(frozen=True)
class UsageDelta:
    hour: int  # Unix time of the hour's start (UTC)
    gateway: str
    client: str
    model: str  # "" when the request named none
    requests: int = 0
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    busy_s: float = 0.0


@dataclass(frozen=True)
class UsageRow:
    key: dict[str, str | int]  # the grouping's fields (client, model, hour, gateway)
    requests: int
    errors: int
    tokens_in: int
    tokens_out: int
    busy_s: float


class UsageRepo:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, deltas: Iterable[UsageDelta]) -> None:
        rows = [(d.hour, d.gateway, d.client, d.model, d.requests, d.errors, d.tokens_in, d.tokens_out, d.busy_s)
                for d in deltas]
        if not rows:
            return
        async with self._db.transaction("write the usage ledger") as conn:
            await conn.executemany(
                "INSERT INTO gateway_usage (hour, gateway, client, model, requests, errors, tokens_in, tokens_out, "
                "busy_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hour, gateway, client, model) DO UPDATE SET "
                "requests = requests + excluded.requests, errors = errors + excluded.errors, "
                "tokens_in = tokens_in + excluded.tokens_in, tokens_out = tokens_out + excluded.tokens_out, "
                "busy_s = busy_s + excluded.busy_s", rows)
            await conn.execute(
                "DELETE FROM gateway_usage WHERE rowid IN (SELECT rowid FROM gateway_usage ORDER BY hour "
                "LIMIT max(0, (SELECT count(*) FROM gateway_usage) - ?))", (MAX_ROWS,))

    async def summary(self, *, by: str = "client", since: float | None = None,
                      gateway: str | None = None) -> list[UsageRow]:
        """Totals grouped `by` (a key of BY), busiest first; `since`: hours from this Unix time on."""
        fields = BY[by]
        where: list[str] = []
        params: list[int | str] = []
        if since is not None:
            where.append("hour >= ?")
            params.append(int(since) - int(since) % 3600)
        if gateway is not None:
            where.append("gateway = ?")
            params.append(gateway)
        cols = ", ".join(fields)
        rows = await self._db.fetchall(
            f"SELECT {cols}, sum(requests) AS requests, sum(errors) AS errors, sum(tokens_in) AS tokens_in, "
            f"sum(tokens_out) AS tokens_out, sum(busy_s) AS busy_s FROM gateway_usage "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} GROUP BY {cols} "
            f"ORDER BY {'hour' if by == 'hour' else 'requests DESC'}, {cols}", params, doing="read the usage ledger")
        return [UsageRow({f: r[f] for f in fields}, r["requests"], r["errors"], r["tokens_in"], r["tokens_out"],
                         r["busy_s"]) for r in rows]
