"""Opening and writing the store: every failure is a StoreError that says what to do."""

import asyncio
import os
import sqlite3
import stat

import pytest

from console.errors import StoreError
from console.store import db as db_module
from console.store.db import Store


async def test_creates_private_directory_and_file(tmp_path):
    path = tmp_path / "deep" / "er" / "enginedeck.db"
    store = await Store.open(path)
    await store.close()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not sqlite at all\x00\x01" * 200)
    with pytest.raises(StoreError, match="corrupt") as err:
        await Store.open(path)
    assert str(path) in str(err.value) and err.value.hint


async def test_directory_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the data directory"):
        await Store.open(blocker / "enginedeck.db")


async def test_path_is_a_directory(tmp_path):
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="is a directory"):
        await Store.open(tmp_path / "dir.db")


async def test_disk_full_on_write(tmp_path):
    store = await Store.open(tmp_path / "full.db")
    try:
        pages = (await store.db.fetchone("PRAGMA page_count"))[0]
        # SQLite's own cap on the file size fails writes exactly as a full disk does (SQLITE_FULL).
        await store.db.execute(f"PRAGMA max_page_count = {pages}")
        session = await store.sessions.create(title="fits in a free page")
        with pytest.raises(StoreError, match="disk is full") as err:
            for _ in range(50):
                await store.sessions.add_message(session.id, "user", "x" * 20_000)
        assert err.value.hint == "free some space"
        # The store stays usable for reads after the failure.
        assert (await store.sessions.get(session.id)) is not None
    finally:
        await store.close()


async def test_read_only_database_on_write(tmp_path):
    store = await Store.open(tmp_path / "ro.db")
    try:
        # query_only makes SQLite refuse writes with SQLITE_READONLY, the code a read-only file gives
        # (chmod cannot stop root, and tests run as root in CI).
        await store.db.execute("PRAGMA query_only = ON")
        with pytest.raises(StoreError, match="read-only"):
            await store.sessions.create(title="nope")
    finally:
        await store.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
async def test_read_only_file(tmp_path):
    path = tmp_path / "ro.db"
    await (await Store.open(path)).close()
    path.chmod(0o400)
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StoreError, match=r"read-only|cannot open"):
            store = await Store.open(path)
            await store.sessions.create(title="nope")
    finally:
        tmp_path.chmod(0o700)


async def test_integrity_check_ok(tmp_path):
    store = await Store.open(tmp_path / "ok.db")
    try:
        assert await store.integrity_check() == []
    finally:
        await store.close()



async def test_open_waits_out_another_process_switching_a_fresh_file(tmp_path):
    # SQLite fails a journal-mode switch at once, without the busy handler, while another connection holds
    # the write lock; two processes opening a fresh file together hit exactly that.
    path = tmp_path / "fresh.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN IMMEDIATE")
    asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
    store = await Store.open(path)
    try:
        row = await store.db.fetchone("PRAGMA journal_mode")
        assert row is not None and row[0] == "wal"
    finally:
        await store.close()
        other.close()


async def test_open_gives_up_on_a_lock_that_is_never_released(tmp_path, monkeypatch):
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 1000)
    path = tmp_path / "held.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="busy"):
            await Store.open(path)
    finally:
        other.close()
