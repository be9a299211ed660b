"""The SQLite store: one file, WAL, migrations by `PRAGMA user_version`, repositories as attributes.

The only place with SQL. `Store.open` creates the file (mode 0600, directory 0700), switches it to WAL and runs
the migrations; each repository gets the store's connection (`console.store.connection.Db`), which turns every
SQLite or OS failure into a `StoreError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path

import aiosqlite

from console.errors import StoreError
from console.store.audit import AuditRepo
from console.store.connection import BUSY_TIMEOUT_MS, Db, guard
from console.store.fit_records import FitRecordsRepo
from console.store.migrations import LATEST, STEPS, split_statements
from console.store.model_events import ModelEventsRepo
from console.store.probes import ProbesRepo
from console.store.sessions import SessionsRepo
from console.store.usage import UsageRepo


class Store:
    """Open with `await Store.open(path)`; close with `await store.close()`."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self.path = db.path
        self.sessions: SessionsRepo = SessionsRepo(db)
        self.model_events: ModelEventsRepo = ModelEventsRepo(db)
        self.probes: ProbesRepo = ProbesRepo(db)
        self.audit: AuditRepo = AuditRepo(db)
        self.fit_records: FitRecordsRepo = FitRecordsRepo(db)
        self.usage: UsageRepo = UsageRepo(db)

    @classmethod
    async def open(cls, path: Path) -> Store:
        path = Path(path)
        with guard("create the data directory", path.parent):
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.is_dir():  # caught here: aiosqlite's failed connect leaves its thread finishing after us
            raise StoreError(f"cannot open the history database: {path} is a directory",
                             hint="point the data dir somewhere else (ENGINEDECK_DATA_DIR)")
        with guard("open the history database", path):
            conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        store = cls(Db(conn, path))
        try:
            await store._prepare()
        except BaseException:
            await conn.close()
            raise
        return store

    async def _prepare(self) -> None:
        conn = self.db.conn
        with guard("open the history database", self.path):
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = await self._switch_to_wal()
            if mode != "wal":
                # A read-only file answers with its current mode instead of switching.
                raise StoreError(f"cannot open the history database: it cannot be switched to WAL ({self.path})",
                                 hint="check that the file and its directory are writable")
            # In WAL mode NORMAL loses no committed transaction on a process crash, only on power loss.
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o600)
        await self.migrate()

    async def _switch_to_wal(self) -> str:
        """Set WAL and return the journal mode the file ends up in.

        SQLite does not call the busy handler for a journal-mode switch: when another process opens a fresh
        file at the same moment, the switch fails at once with "database is locked". WAL is stored in the
        file, so once either process has switched it, the other only has to read it back; retry until then.
        """
        conn = self.db.conn
        deadline = asyncio.get_running_loop().time() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                row = await (await conn.execute("PRAGMA journal_mode = WAL")).fetchone()
                return str(row[0]).lower() if row else ""
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc).lower() or asyncio.get_running_loop().time() > deadline:
                    raise
            await asyncio.sleep(0.02)

    async def migrate(self, target: int = LATEST) -> None:
        """Run the steps this file has not had, each in its own transaction (safe if two processes race)."""
        while (current := await self.schema_version()) < target:
            if current > LATEST:
                break
            async with self.db.transaction(f"upgrade the history database to version {current + 1}") as conn:
                # Re-read inside the write lock: another process may have just run this step.
                row = await (await conn.execute("PRAGMA user_version")).fetchone()
                if (row[0] if row else 0) != current:  # as schema_version reads it
                    continue
                for statement in split_statements(STEPS[current]):
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version = {current + 1}")
        if (version := await self.schema_version()) > LATEST:
            raise StoreError(f"the history database is version {version}, newer than this enginedeck "
                             f"understands ({LATEST}) ({self.path})", hint="upgrade enginedeck")

    async def schema_version(self) -> int:
        row = await self.db.fetchone("PRAGMA user_version", doing="read the database version")
        return int(row[0]) if row else 0

    async def integrity_check(self) -> list[str]:
        """Problems `PRAGMA integrity_check` finds; empty when the file is sound."""
        rows = await self.db.fetchall("PRAGMA integrity_check", doing="check the database")
        problems = [str(r[0]) for r in rows]
        return [] if problems == ["ok"] else problems

    async def close(self) -> None:
        with guard("close the history database", self.path):
            await self.db.close_reader()
            await self.db.conn.close()
