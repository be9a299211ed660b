"""The schema, one step per version. `PRAGMA user_version` says which steps a database file has had.

Times are REAL seconds since the epoch (UTC); JSON columns hold objects encoded with `json.dumps`.
A step never changes once released: a new need is a new step, tested from a database made at the step before.
"""

from __future__ import annotations

# v1: every table of DESIGN.md "Data".
V1 = """
CREATE TABLE sessions (
    id            INTEGER PRIMARY KEY,
    title         TEXT    NOT NULL DEFAULT '',
    engine        TEXT,
    model         TEXT,
    system_prompt TEXT,
    params_json   TEXT    NOT NULL DEFAULT '{}',
    created_at    REAL    NOT NULL,
    updated_at    REAL    NOT NULL,
    archived      INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1))
);

CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    session_id   INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    role         TEXT    NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content      TEXT    NOT NULL DEFAULT '',
    reasoning    TEXT    NOT NULL DEFAULT '',
    engine       TEXT,
    model        TEXT,
    created_at   REAL    NOT NULL,
    updated_at   REAL    NOT NULL,
    ttft_ms      REAL,
    tokens_in    INTEGER,
    tokens_out   INTEGER,
    tok_s        REAL,
    token_source TEXT,
    status       TEXT    NOT NULL DEFAULT 'complete'
                         CHECK (status IN ('complete', 'partial', 'cancelled', 'error')),
    error        TEXT
);
CREATE INDEX messages_by_session ON messages(session_id, id);

-- External-content FTS5 index over messages, kept in sync by the triggers below.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    content, reasoning, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, content, reasoning) VALUES (new.id, new.content, new.reasoning);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content, reasoning)
    VALUES ('delete', old.id, old.content, old.reasoning);
END;
-- Only when the text changes: a streaming reply also updates its figures, which the index does not hold.
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, reasoning ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content, reasoning)
    VALUES ('delete', old.id, old.content, old.reasoning);
    INSERT INTO messages_fts(rowid, content, reasoning) VALUES (new.id, new.content, new.reasoning);
END;

CREATE TABLE model_events (
    id          INTEGER PRIMARY KEY,
    ts          REAL    NOT NULL,
    engine      TEXT    NOT NULL,
    engine_kind TEXT,
    model       TEXT,
    op          TEXT    NOT NULL CHECK (op IN ('load', 'unload', 'swap', 'pull', 'delete')),
    duration_s  REAL,
    ok          INTEGER NOT NULL CHECK (ok IN (0, 1)),
    error       TEXT,
    detail_json TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX model_events_by_ts ON model_events(ts);

CREATE TABLE probe_runs (
    id               INTEGER PRIMARY KEY,
    started_at       REAL NOT NULL,
    finished_at      REAL,
    status           TEXT NOT NULL CHECK (status IN ('running', 'complete', 'cancelled', 'error')),
    engine           TEXT NOT NULL,
    engine_kind      TEXT,
    engine_version   TEXT,
    model            TEXT NOT NULL,
    params_json      TEXT NOT NULL DEFAULT '{}',
    slo_json         TEXT NOT NULL DEFAULT '{}',
    verdict_json     TEXT,
    environment_json TEXT
);
CREATE TABLE probe_levels (
    run_id       INTEGER NOT NULL REFERENCES probe_runs(id) ON DELETE CASCADE,
    concurrency  INTEGER NOT NULL,
    figures_json TEXT    NOT NULL,
    PRIMARY KEY (run_id, concurrency)
);

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    ts          REAL NOT NULL,
    os_user     TEXT NOT NULL,
    ssh_origin  TEXT,
    host        TEXT NOT NULL,
    action      TEXT NOT NULL,
    engine      TEXT,
    target      TEXT,
    params_json TEXT NOT NULL DEFAULT '{}',
    result      TEXT NOT NULL,
    duration_s  REAL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE,
    hmac        TEXT
);
CREATE INDEX audit_events_by_ts ON audit_events(ts);
"""

# v2: each assistant message keeps the parameters it was generated with (a session's parameters change over
# time, and an export must say what produced each reply); the session list is read by (archived, recency).
# Replies saved before v2 get their session's parameters: the best record of them there is.
V2 = """
ALTER TABLE messages ADD COLUMN params_json TEXT;
UPDATE messages SET params_json = (SELECT s.params_json FROM sessions s WHERE s.id = messages.session_id)
    WHERE role = 'assistant';
CREATE INDEX sessions_by_recency ON sessions(archived, updated_at DESC);
"""

# v3: a probe run may measure one concurrency twice (the noise guard's second c=1) and its open-loop levels are
# rates, so a level is keyed by the order it was measured in (seq), no longer by its concurrency. Levels stored
# before v3 keep their concurrency as their seq, which keeps their order.
V3 = """
CREATE TABLE probe_levels_v3 (
    run_id       INTEGER NOT NULL REFERENCES probe_runs(id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    concurrency  INTEGER NOT NULL,
    figures_json TEXT    NOT NULL,
    PRIMARY KEY (run_id, seq)
);
INSERT INTO probe_levels_v3 (run_id, seq, concurrency, figures_json)
    SELECT run_id, concurrency, concurrency, figures_json FROM probe_levels;
DROP TABLE probe_levels;
ALTER TABLE probe_levels_v3 RENAME TO probe_levels;
"""

# v4: will-it-fit records (docs/fit.md): each load's predicted need, term by term, beside what the engine's
# processes held afterwards, so the overhead term is fitted from this box's own loads.
V4 = """
CREATE TABLE fit_records (
    id               INTEGER PRIMARY KEY,
    ts               REAL    NOT NULL,
    engine           TEXT    NOT NULL,
    engine_kind      TEXT    NOT NULL,
    model            TEXT    NOT NULL,
    memory           TEXT    NOT NULL CHECK (memory IN ('gpu', 'host')),
    context          INTEGER NOT NULL,
    slots            INTEGER NOT NULL,
    predicted_model  INTEGER NOT NULL,
    overhead         INTEGER NOT NULL,
    measured         INTEGER NOT NULL,
    measured_source  TEXT    NOT NULL,
    detail_json      TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX fit_records_by_kind ON fit_records(engine_kind, memory, id);
"""

# v5: a reply's energy, when it was measured (console/telemetry/energy.py): gross, idle and net joules, the window,
# the output tokens, joules per token and the method, as one JSON object. NULL: not measured.
V5 = """
ALTER TABLE messages ADD COLUMN energy_json TEXT;
"""

# v6: the gateway's usage ledger (console/store/usage.py): requests, errors, tokens and busy time per gateway,
# client, model and hour; each request adds to its row, so the table grows with hours × clients × models only.
V6 = """
CREATE TABLE gateway_usage (
    hour       INTEGER NOT NULL,
    gateway    TEXT    NOT NULL,
    client     TEXT    NOT NULL,
    model      TEXT    NOT NULL,
    requests   INTEGER NOT NULL DEFAULT 0,
    errors     INTEGER NOT NULL DEFAULT 0,
    tokens_in  INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    busy_s     REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, gateway, client, model)
);
"""

STEPS: tuple[str, ...] = (V1, V2, V3, V4, V5, V6)
LATEST = len(STEPS)


def split_statements(script: str) -> list[str]:
    """A script as single statements (triggers kept whole), so a step runs inside one transaction we control.

    `executescript` would commit first; `sqlite3.complete_statement` tells where each statement ends.
    """
    import sqlite3

    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement in migration: {current[:80]!r}")
    return statements
