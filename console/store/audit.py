"""The database copy of enginedeck's audit trail (the JSONL files are the primary record; see console/audit)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from console.audit.record import AuditEvent

if TYPE_CHECKING:
    import sqlite3

    from console.store.connection import Db

_COLUMNS = ("id, ts, os_user, ssh_origin, host, action, engine, target, params_json, result, duration_s, "
            "prev_hash, hash, hmac")


class AuditRepo:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def insert(self, event: AuditEvent) -> None:
        """The row's id is the event's sequence number, so the two copies can be matched record by record."""
        await self._db.execute(
            f"INSERT INTO audit_events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event.seq, event.ts, event.os_user, event.ssh_origin, event.host, event.action, event.engine,
             event.target, json.dumps(dict(event.params), sort_keys=True, ensure_ascii=False), event.result,
             event.duration_s, event.prev_hash, event.hash, event.hmac),
            doing="write the audit trail", verbatim=True)  # sealed: a changed byte would break its hash

    async def recent(self, limit: int = 50) -> list[AuditEvent]:
        """Newest first."""
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM audit_events ORDER BY id DESC LIMIT ?", (limit,),
                                       doing="read the audit trail")
        return [_event(r) for r in rows]

    async def all(self) -> list[AuditEvent]:
        """Every row, oldest first (retention keeps this bounded)."""
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM audit_events ORDER BY id",
                                       doing="read the audit trail")
        return [_event(r) for r in rows]

    async def delete_through(self, seq: int) -> int:
        """Retention: drop the rows up to `seq`, as the trail files holding them were removed."""
        return await self._db.execute("DELETE FROM audit_events WHERE id <= ?", (seq,), doing="prune the audit trail")


def _event(row: sqlite3.Row) -> AuditEvent:
    return AuditEvent(seq=row["id"], ts=row["ts"], os_user=row["os_user"], ssh_origin=row["ssh_origin"],
                      host=row["host"], action=row["action"], engine=row["engine"], target=row["target"],
                      params=json.loads(row["params_json"] or "{}"), result=row["result"],
                      duration_s=row["duration_s"], prev_hash=row["prev_hash"], hash=row["hash"], hmac=row["hmac"])
