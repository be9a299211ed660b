"""The shared SQLite connection as the repositories use it (`Db`), and the one translation of SQLite and OS
failures into `StoreError` with a message a person can act on (disk full, read-only, corrupt, cannot create the
directory), never a raw sqlite3 exception.

Two enginedeck processes may share the file: WAL lets readers and one writer overlap, `busy_timeout` makes a
writer wait for the other instead of failing, and every multi-statement write starts with `BEGIN IMMEDIATE`,
so a transaction never has to upgrade a read lock (the case busy_timeout cannot help with).

Searches do not use the shared connection: `Db.read_bounded` runs them on a read-only connection of their own,
in a thread, under SQLite's progress handler, so a search past its time limit (or whose caller was cancelled)
stops within a few thousand VM steps, never holds up a chat's writes behind it, and builds its snippets off
the event loop.

The repositories (sessions, model events, probe runs, audit events) each receive a `Db` from the store that
opened it (console/store/db.py) and never import the store itself.
"""


from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from console.errors import StoreError
from console.secrets import redact_params

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000
PROGRESS_STEPS = 1000  # SQLite VM steps between two looks at a bounded read's deadline (~tens of microseconds)


def explain(exc: BaseException, doing: str, path: Path | None = None) -> StoreError:
    """One StoreError for any sqlite3/OS failure, worded for the person who has to fix it."""
    where = f" ({path})" if path else ""
    text = str(exc)
    code = getattr(exc, "sqlite_errorcode", None)
    low = text.lower()
    if code == sqlite3.SQLITE_FULL or "disk is full" in low or getattr(exc, "errno", None) == 28:
        return StoreError(f"cannot {doing}: the disk is full{where}", hint="free some space")
    if code == sqlite3.SQLITE_READONLY or "readonly" in low or "read-only" in low:
        return StoreError(f"cannot {doing}: the database is read-only{where}",
                          hint="check the file's permissions and the filesystem's mount options")
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT) or "not a database" in low or "malformed" in low:
        return StoreError(f"cannot {doing}: the database file is corrupt{where}",
                          hint="move it aside (enginedeck starts a new one) or restore it from a backup")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in low:
        return StoreError(f"cannot {doing}: another process kept the database busy for over "
                          f"{BUSY_TIMEOUT_MS // 1000} s{where}", hint="try again")
    if code == sqlite3.SQLITE_CANTOPEN or "unable to open" in low:
        return StoreError(f"cannot {doing}: cannot open the database file{where}",
                          hint="check that the directory exists and is writable")
    if isinstance(exc, OSError):
        return StoreError(f"cannot {doing}: {exc.strerror or text}{where}")
    return StoreError(f"cannot {doing}: {text}{where}")


@contextlib.contextmanager
def guard(doing: str, path: Path | None = None) -> Iterator[None]:
    """Turn sqlite3/OS errors raised inside into StoreError (see `explain`)."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise explain(exc, doing, path) from exc


class Writes:
    """The connection inside a transaction: `execute` and `executemany`, string parameters redacted."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Cursor:
        return await self._conn.execute(sql, redact_params(params))

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> aiosqlite.Cursor:
        return await self._conn.executemany(sql, [redact_params(r) for r in rows])


class Db:
    """The shared connection, as the repositories use it. Methods raise StoreError, never sqlite3 errors.

    The connection runs in autocommit mode: a single statement commits by itself; `transaction()` groups
    several under `BEGIN IMMEDIATE`. A lock keeps two coroutines from interleaving inside one transaction.
    """

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._tx_lock = asyncio.Lock()
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()  # one bounded read at a time on the read connection
        self._stops: set[threading.Event] = set()

    async def execute(self, sql: str, params: Iterable[Any] = (), *, doing: str = "write to the history",
                      verbatim: bool = False) -> int:
        """Run one statement; return how many rows it changed. Its strings lose every secret enginedeck has read
        (console/secrets.py) unless `verbatim`: a sealed audit record, redacted before it was hashed."""
        async with self._tx_lock:
            with guard(doing, self.path):
                cursor = await self.conn.execute(sql, tuple(params) if verbatim else redact_params(params))
                changed = cursor.rowcount
                await cursor.close()
                return changed

    async def insert(self, sql: str, params: Iterable[Any] = (), *, doing: str = "write to the history") -> int:
        """Run one INSERT; return the new row's id (strings redacted as in `execute`)."""
        async with self._tx_lock:
            with guard(doing, self.path):
                cursor = await self.conn.execute(sql, redact_params(params))
                rowid = cursor.lastrowid or 0
                await cursor.close()
                return rowid

    async def fetchall(self, sql: str, params: Iterable[Any] = (), *,
                       doing: str = "read the history") -> list[sqlite3.Row]:
        with guard(doing, self.path):
            async with self.conn.execute(sql, tuple(params)) as cursor:
                return list(await cursor.fetchall())

    async def fetchone(self, sql: str, params: Iterable[Any] = (), *,
                       doing: str = "read the history") -> sqlite3.Row | None:
        with guard(doing, self.path):
            async with self.conn.execute(sql, tuple(params)) as cursor:
                return await cursor.fetchone()

    async def read_bounded(self, sql: str, params: Iterable[Any], each: Callable[[sqlite3.Row], T], *,
                           time_limit_s: float, doing: str = "read the history") -> tuple[list[T], bool]:
        """Run a read-only query on the read connection, in a thread, `each(row)` on every row there too.

        Returns (results, finished). Past `time_limit_s`, or once the awaiting task is cancelled, the query is
        interrupted and the results so far come back with finished False (a cancelled caller gets
        CancelledError, and the thread stops at the next progress check).
        """
        stop = threading.Event()
        deadline = time.monotonic() + time_limit_s
        self._stops.add(stop)
        try:
            return await asyncio.to_thread(self._read_bounded, sql, tuple(params), each, deadline, stop, doing)
        finally:
            stop.set()
            self._stops.discard(stop)

    def _read_bounded(self, sql: str, params: tuple[Any, ...], each: Callable[[sqlite3.Row], T], deadline: float,
                      stop: threading.Event, doing: str) -> tuple[list[T], bool]:
        def halted() -> bool:
            return stop.is_set() or time.monotonic() > deadline

        results: list[T] = []
        with self._reader_lock, guard(doing, self.path):
            if halted():
                return results, False
            conn = self._read_connection()
            conn.set_progress_handler(halted, PROGRESS_STEPS)
            try:
                for row in conn.execute(sql, params):
                    results.append(each(row))
                    if halted():
                        return results, False
            except sqlite3.OperationalError:
                if halted():  # "interrupted": the progress handler stopped it
                    return results, False
                raise
            finally:
                conn.set_progress_handler(None, 0)
        return results, True

    def _read_connection(self) -> sqlite3.Connection:
        if self._reader is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA query_only = ON")
            self._reader = conn
        return self._reader

    async def close_reader(self) -> None:
        """Stop any bounded read and close the read connection."""
        for stop in list(self._stops):
            stop.set()
        await asyncio.to_thread(self._close_reader)

    def _close_reader(self) -> None:
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    @contextlib.asynccontextmanager
    async def transaction(self, doing: str = "write to the history") -> AsyncIterator[Writes]:
        """`BEGIN IMMEDIATE` … `COMMIT`, rolled back on any error; yields the connection's writing half."""
        async with self._tx_lock:
            with guard(doing, self.path):
                await self.conn.execute("BEGIN IMMEDIATE")
                try:
                    yield Writes(self.conn)
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        await self.conn.execute("ROLLBACK")
                    raise
                await self.conn.execute("COMMIT")
