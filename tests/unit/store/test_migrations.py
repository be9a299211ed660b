"""One test per schema version: from an empty file, and from a file made at the version before, with rows."""

import json
import sqlite3

import pytest

from console.errors import StoreError
from console.store.db import Store
from console.store.migrations import LATEST, STEPS, V1, split_statements


def _make_v1(path):
    conn = sqlite3.connect(path)
    for statement in split_statements(V1):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO sessions (id, title, engine, model, params_json, created_at, updated_at) "
                 "VALUES (1, 'old', 'ollama', 'llama3.2:1b', '{\"temperature\": 0.2}', 1.0, 2.0)")
    conn.execute("INSERT INTO messages (session_id, role, content, created_at, updated_at) "
                 "VALUES (1, 'user', 'why is the sky blue', 1.0, 1.0)")
    conn.execute("INSERT INTO messages (session_id, role, content, created_at, updated_at, tokens_out, status) "
                 "VALUES (1, 'assistant', 'Rayleigh scattering', 1.5, 1.5, 3, 'complete')")
    conn.commit()
    conn.close()


def _make_at(path, version: int) -> None:
    """A database at `version`, made the way users' files were: v1 with rows, then each step up to `version`."""
    _make_v1(path)
    conn = sqlite3.connect(path)
    for step in STEPS[1:version]:
        for statement in split_statements(step):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


async def test_empty_file_gets_every_step(tmp_path):
    store = await Store.open(tmp_path / "new.db")
    try:
        assert await store.schema_version() == LATEST == len(STEPS)
        tables = {r[0] for r in await store.db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"sessions", "messages", "messages_fts", "model_events", "probe_runs", "probe_levels",
                "audit_events", "gateway_usage"} <= tables
        mode = await store.db.fetchone("PRAGMA journal_mode")
        assert mode[0] == "wal"
        assert (await store.db.fetchone("PRAGMA foreign_keys"))[0] == 1
        assert (await store.db.fetchone("PRAGMA busy_timeout"))[0] >= 1000
    finally:
        await store.close()


async def test_v1_to_v2_keeps_rows_and_backfills_reply_parameters(tmp_path):
    path = tmp_path / "v1.db"
    _make_v1(path)
    store = await Store.open(path)
    try:
        assert await store.schema_version() == LATEST
        messages = await store.sessions.messages(1)
        assert [m.content for m in messages] == ["why is the sky blue", "Rayleigh scattering"]
        assert messages[0].params is None  # a user message has no generation parameters
        assert messages[1].params == {"temperature": 0.2}
        indexes = {r[0] for r in await store.db.fetchall("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "sessions_by_recency" in indexes
        # The FTS index built under v1 still answers after the upgrade.
        assert [h.message_id for h in await store.sessions.search("rayleigh")] == [messages[1].id]
    finally:
        await store.close()


async def test_v4_to_v5_adds_the_energy_of_a_reply(tmp_path):
    path = tmp_path / "v4.db"
    _make_at(path, 4)
    store = await Store.open(path)
    try:
        assert await store.schema_version() == LATEST
        old = await store.sessions.messages(1)
        assert [m.energy for m in old] == [None, None]  # not measured before v5
        energy = {"method": "nvml energy counter", "gross_j": 40.0, "idle_w": 60.0, "net_j": 10.0, "tokens": 5,
                  "j_per_token": 2.0, "window_s": 0.5}
        await store.sessions.update_message(old[1].id, energy_json=json.dumps(energy))
        assert (await store.sessions.message(old[1].id)).energy == energy
    finally:
        await store.close()


async def test_reopening_runs_nothing_twice(tmp_path):
    path = tmp_path / "again.db"
    first = await Store.open(path)
    await first.sessions.create(title="kept")
    await first.close()
    second = await Store.open(path)
    try:
        assert [s.title for s in await second.sessions.list()] == ["kept"]
        assert await second.schema_version() == LATEST
    finally:
        await second.close()


async def test_newer_schema_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST + 5}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this enginedeck"):
        await Store.open(path)


async def test_v3_to_v4_adds_fit_records_and_keeps_rows(tmp_path):
    path = tmp_path / "v3.db"
    _make_at(path, 3)
    store = await Store.open(path)
    try:
        assert await store.schema_version() == LATEST
        assert [s.title for s in await store.sessions.list()] == ["old"]
        first = await store.fit_records.record(engine="e", engine_kind="llamacpp", model="m", memory="gpu",
                                               context=1024, slots=4, predicted_model=900, overhead=100,
                                               measured=1050, measured_source="nvml:pid 7", detail={"kv": 1})
        (row,) = await store.fit_records.recent(engine_kind="llamacpp", memory="gpu")
        assert (row.id, row.predicted, row.measured_source, row.detail) == (first, 1000, "nvml:pid 7", {"kv": 1})
        assert await store.fit_records.recent(engine_kind="llamacpp", memory="host") == []
        with pytest.raises(ValueError, match="memory kind"):
            await store.fit_records.record(engine="e", engine_kind="k", model="m", memory="disk", context=1,
                                           slots=1, predicted_model=1, overhead=1, measured=1, measured_source="x")
    finally:
        await store.close()


def test_split_statements_keeps_triggers_whole():
    statements = split_statements(V1)
    triggers = [s for s in statements if s.startswith("CREATE TRIGGER")]
    assert len(triggers) == 3 and all(s.endswith("END;") for s in triggers)
    assert all(sqlite3.complete_statement(s) for s in statements)
    assert json.dumps(statements)  # plain strings


async def test_v2_to_v3_keeps_probe_levels_in_order_and_lets_a_concurrency_come_twice(tmp_path):
    path = tmp_path / "v2.db"
    _make_at(path, 2)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO probe_runs (id, started_at, status, engine, model) "
                 "VALUES (7, 1.0, 'complete', 'vllm', 'smollm2')")
    for n in (4, 1, 2):
        conn.execute("INSERT INTO probe_levels (run_id, concurrency, figures_json) VALUES (7, ?, ?)",
                     (n, json.dumps({"concurrency": n})))
    conn.commit()
    conn.close()
    store = await Store.open(path)
    try:
        assert await store.schema_version() == LATEST
        run = await store.probes.get(7)
        assert [lv["concurrency"] for lv in run.levels] == [1, 2, 4]
        await store.probes.save_level(7, 1, {"concurrency": 1, "phase": "noise"})  # a second c=1: the noise guard
        run = await store.probes.get(7)
        assert [(lv["concurrency"], lv.get("phase")) for lv in run.levels] == [
            (1, None), (2, None), (4, None), (1, "noise")]
        await store.db.execute("DELETE FROM probe_runs WHERE id = 7", doing="test")
        assert await store.db.fetchall("SELECT * FROM probe_levels") == []  # still cascades with its run
    finally:
        await store.close()


async def test_v5_to_v6_adds_the_usage_ledger(tmp_path):
    from console.store.usage import UsageDelta

    path = tmp_path / "v5.db"
    _make_at(path, 5)
    store = await Store.open(path)
    try:
        assert await store.schema_version() == 6
        assert next(m.content for m in await store.sessions.messages(1)) == "why is the sky blue"
        await store.usage.add([UsageDelta(3600, "gw", "a", "m", requests=2, errors=1, tokens_in=5, tokens_out=7,
                                          busy_s=1.5)])
        await store.usage.add([UsageDelta(3600, "gw", "a", "m", requests=1, tokens_out=3, busy_s=0.5)])
        (row,) = await store.usage.summary(by="client-model")
        assert (row.key, row.requests, row.errors, row.tokens_in, row.tokens_out, row.busy_s) == (
            {"client": "a", "model": "m"}, 3, 1, 5, 10, 2.0)
    finally:
        await store.close()
