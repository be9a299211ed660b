"""Chat sessions, their messages, and full-text search over every message (FTS5).

Text is stored exactly as the engine sent it; making it safe for a terminal is the job of whoever shows it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from console.errors import StoreError
from console.store.db import Db

ROLES = ("system", "user", "assistant", "tool")
STATUSES = ("complete", "partial", "cancelled", "error")
EXPORT_FORMAT = "enginedeck-session"
EXPORT_VERSION = 1
# Private-use characters mark hits inside FTS snippets: they cannot clash with markup or terminal codes, and
# are turned into offsets before anything leaves this module.
_HIT_OPEN, _HIT_CLOSE = "\ue000", "\ue001"
SNIPPET_TOKENS = 16


@dataclass(frozen=True)
class Session:
    id: int
    title: str
    engine: str | None
    model: str | None
    system_prompt: str | None
    params: Mapping[str, Any]
    created_at: float
    updated_at: float
    archived: bool
    message_count: int = 0


@dataclass(frozen=True)
class Message:
    id: int
    session_id: int
    role: str
    content: str
    reasoning: str = ""
    engine: str | None = None
    model: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    ttft_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    tok_s: float | None = None
    token_source: str | None = None
    status: str = "complete"
    error: str | None = None
    params: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SearchHit:
    """One message that matches. `hits` are (start, end) offsets of the matched terms inside `snippet`."""

    message_id: int
    session_id: int
    session_title: str
    role: str
    created_at: float
    snippet: str
    hits: tuple[tuple[int, int], ...] = field(default_factory=tuple)


# Columns a streaming update may set, so callers cannot write arbitrary SQL through keyword names.
_UPDATABLE = frozenset({"content", "reasoning", "ttft_ms", "tokens_in", "tokens_out", "tok_s", "token_source",
                        "status", "error", "engine", "model"})


def _session(row: sqlite3.Row) -> Session:
    keys = row.keys()
    return Session(id=row["id"], title=row["title"], engine=row["engine"], model=row["model"],
                   system_prompt=row["system_prompt"], params=json.loads(row["params_json"] or "{}"),
                   created_at=row["created_at"], updated_at=row["updated_at"], archived=bool(row["archived"]),
                   message_count=row["message_count"] if "message_count" in keys else 0)


def _message(row: sqlite3.Row) -> Message:
    params = row["params_json"]
    return Message(
        id=row["id"], session_id=row["session_id"], role=row["role"], content=row["content"],
        reasoning=row["reasoning"], engine=row["engine"], model=row["model"], created_at=row["created_at"],
        updated_at=row["updated_at"], ttft_ms=row["ttft_ms"], tokens_in=row["tokens_in"],
        tokens_out=row["tokens_out"], tok_s=row["tok_s"], token_source=row["token_source"], status=row["status"],
        error=row["error"], params=json.loads(params) if params else None)


def fts_query(text: str) -> str:
    """What a person types, as a safe FTS5 query: each word (or "quoted phrase") must appear; `word*` is a prefix.

    FTS5's own syntax (NEAR, column filters, bare operators) would turn typos into syntax errors, so every
    term is quoted; `OR` between terms is kept because people expect it.
    """
    terms: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        if text[i] == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end
            phrase, i = text[i + 1:end], end + 1
            prefix = i < n and text[i] == "*"
            i += prefix
        else:
            end = i
            while end < n and not text[end].isspace() and text[end] != '"':
                end += 1
            phrase, i = text[i:end], end
            prefix = phrase.endswith("*")
            phrase = phrase.rstrip("*")
            if phrase == "OR" and terms and terms[-1] != "OR":
                terms.append("OR")
                continue
        if phrase.strip():
            terms.append('"' + phrase.replace('"', '""') + '"' + ("*" if prefix else ""))
    while terms and terms[-1] == "OR":
        terms.pop()
    return " ".join(terms)


def split_hits(marked: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """A snippet with hit markers → (plain snippet, hit offsets)."""
    out: list[str] = []
    hits: list[tuple[int, int]] = []
    pos, start = 0, 0
    for ch in marked:
        if ch == _HIT_OPEN:
            start = pos
        elif ch == _HIT_CLOSE:
            hits.append((start, pos))
        else:
            out.append(ch)
            pos += 1
    return "".join(out), tuple(hits)


class SessionsRepo:
    def __init__(self, db: Db) -> None:
        self._db = db

    # -- sessions ----------------------------------------------------------------------------------------
    async def create(self, *, title: str = "", engine: str | None = None, model: str | None = None,
                     system_prompt: str | None = None, params: Mapping[str, Any] | None = None) -> Session:
        now = time.time()
        sid = await self._db.insert(
            "INSERT INTO sessions (title, engine, model, system_prompt, params_json, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (title, engine, model, system_prompt, json.dumps(dict(params or {})), now, now),
            doing="create the session")
        return Session(sid, title, engine, model, system_prompt, dict(params or {}), now, now, False)

    async def get(self, session_id: int) -> Session | None:
        row = await self._db.fetchone(
            "SELECT s.*, (SELECT count(*) FROM messages m WHERE m.session_id = s.id) AS message_count "
            "FROM sessions s WHERE s.id = ?", (session_id,))
        return _session(row) if row else None

    async def require(self, session_id: int) -> Session:
        session = await self.get(session_id)
        if session is None:
            raise StoreError(f"no session {session_id} in the history", hint="enginedeck history list")
        return session

    async def list(self, *, archived: bool = False, limit: int | None = None) -> list[Session]:
        rows = await self._db.fetchall(
            "SELECT s.*, (SELECT count(*) FROM messages m WHERE m.session_id = s.id) AS message_count "
            "FROM sessions s WHERE s.archived = ? ORDER BY s.updated_at DESC, s.id DESC LIMIT ?",
            (int(archived), -1 if limit is None else limit))
        return [_session(r) for r in rows]

    async def update(self, session_id: int, *, engine: str | None = None, model: str | None = None,
                     system_prompt: str | None = None, params: Mapping[str, Any] | None = None,
                     title: str | None = None) -> None:
        """Change what is given (None leaves a field as it is)."""
        changes = {k: v for k, v in (("engine", engine), ("model", model), ("system_prompt", system_prompt),
                                     ("title", title)) if v is not None}
        if params is not None:
            changes["params_json"] = json.dumps(dict(params))
        sets = "".join(f"{k} = ?, " for k in changes)
        self._changed(await self._db.execute(
            f"UPDATE sessions SET {sets}updated_at = ? WHERE id = ?",
            (*changes.values(), time.time(), session_id), doing="update the session"), session_id)

    async def rename(self, session_id: int, title: str) -> None:
        await self.update(session_id, title=title)

    async def set_archived(self, session_id: int, archived: bool) -> None:
        self._changed(await self._db.execute(
            "UPDATE sessions SET archived = ? WHERE id = ?", (int(archived), session_id),
            doing="archive the session"), session_id)

    async def delete(self, session_id: int) -> None:
        """The session and all its messages (ON DELETE CASCADE; the FTS triggers follow)."""
        self._changed(await self._db.execute(
            "DELETE FROM sessions WHERE id = ?", (session_id,), doing="delete the session"),
            session_id)

    @staticmethod
    def _changed(rowcount: int, session_id: int) -> None:
        if not rowcount:
            raise StoreError(f"no session {session_id} in the history", hint="enginedeck history list")

    # -- messages ----------------------------------------------------------------------------------------
    async def messages(self, session_id: int) -> list[Message]:
        rows = await self._db.fetchall("SELECT * FROM messages WHERE session_id = ? ORDER BY id", (session_id,))
        return [_message(r) for r in rows]

    async def message(self, message_id: int) -> Message | None:
        row = await self._db.fetchone("SELECT * FROM messages WHERE id = ?", (message_id,))
        return _message(row) if row else None

    async def add_message(self, session_id: int, role: str, content: str = "", *, reasoning: str = "",
                          engine: str | None = None, model: str | None = None, status: str = "complete",
                          params: Mapping[str, Any] | None = None) -> int:
        if role not in ROLES or status not in STATUSES:
            raise ValueError(f"bad role/status {role!r}/{status!r}")
        now = time.time()
        async with self._db.transaction("save the message") as conn:
            cursor = await conn.execute(
                "INSERT INTO messages (session_id, role, content, reasoning, engine, model, created_at, "
                "updated_at, status, params_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, role, content, reasoning, engine, model, now, now, status,
                 json.dumps(dict(params)) if params is not None else None))
            message_id = cursor.lastrowid or 0
            await conn.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))
        return message_id

    async def update_message(self, message_id: int, **fields: Any) -> None:
        """Set the given columns (text, figures, status, error) and `updated_at`."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update message columns {sorted(unknown)}")
        if fields.get("status", "complete") not in STATUSES:
            raise ValueError(f"bad status {fields['status']!r}")
        sets = "".join(f"{k} = ?, " for k in fields)
        await self._db.execute(f"UPDATE messages SET {sets}updated_at = ? WHERE id = ?",
                               (*fields.values(), time.time(), message_id), doing="save the message")

    async def delete_messages_from(self, session_id: int, message_id: int) -> None:
        """Remove this message and every later one of the session (regenerate, edit and resend)."""
        await self._db.execute("DELETE FROM messages WHERE session_id = ? AND id >= ?", (session_id, message_id),
                               doing="remove the old reply")

    # -- search ------------------------------------------------------------------------------------------
    async def search(self, query: str, *, limit: int = 20) -> list[SearchHit]:
        """Newest matches first, each with a snippet around the hit.

        Newest first rather than bm25: FTS5 walks its index in rowid order and stops at `limit`, while ranking
        must score every match (a common word over 1 M messages costs seconds; see bench/search_1m.py).
        """
        match = fts_query(query)
        if not match:
            return []
        rows = await self._db.fetchall(
            "SELECT m.id, m.session_id, s.title, m.role, m.created_at, "
            f"snippet(messages_fts, -1, '{_HIT_OPEN}', '{_HIT_CLOSE}', '…', {SNIPPET_TOKENS}) AS snip "
            "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
            "JOIN sessions s ON s.id = m.session_id "
            "WHERE messages_fts MATCH ? ORDER BY messages_fts.rowid DESC LIMIT ?",
            (match, limit), doing="search the history")
        hits = []
        for r in rows:
            text, offsets = split_hits(r["snip"] or "")
            hits.append(SearchHit(r["id"], r["session_id"], r["title"], r["role"], r["created_at"], text, offsets))
        return hits

    # -- export / import ---------------------------------------------------------------------------------
    async def export(self, session_id: int) -> dict[str, Any]:
        """Everything about one session, as plain JSON values (the `import_session` input)."""
        session = await self.require(session_id)
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "session": {"id": session.id, "title": session.title, "engine": session.engine,
                        "model": session.model, "system_prompt": session.system_prompt,
                        "params": dict(session.params), "created_at": session.created_at,
                        "updated_at": session.updated_at, "archived": session.archived},
            "messages": [
                {k: v for k, v in m.__dict__.items() if k not in ("id", "session_id")}
                for m in await self.messages(session_id)
            ],
        }

    async def import_session(self, data: Mapping[str, Any]) -> int:
        """A session from `export` output, as a new session (new ids, same text, times and figures)."""
        session, messages = _validated(data)
        async with self._db.transaction("import the session") as conn:
            cursor = await conn.execute(
                "INSERT INTO sessions (title, engine, model, system_prompt, params_json, created_at, updated_at, "
                "archived) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (session.get("title") or "", session.get("engine"), session.get("model"),
                 session.get("system_prompt"), json.dumps(session.get("params") or {}),
                 session["created_at"], session["updated_at"], int(bool(session.get("archived")))))
            session_id = cursor.lastrowid
            await conn.executemany(
                "INSERT INTO messages (session_id, role, content, reasoning, engine, model, created_at, updated_at, "
                "ttft_ms, tokens_in, tokens_out, tok_s, token_source, status, error, params_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(session_id, m["role"], m.get("content") or "", m.get("reasoning") or "", m.get("engine"),
                  m.get("model"), m["created_at"], m.get("updated_at", m["created_at"]), m.get("ttft_ms"),
                  m.get("tokens_in"), m.get("tokens_out"), m.get("tok_s"), m.get("token_source"),
                  m.get("status", "complete"), m.get("error"),
                  json.dumps(m["params"]) if m.get("params") is not None else None) for m in messages])
        return int(session_id or 0)


def _validated(data: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[Mapping[str, Any]]]:
    """Check an import document's shape, naming the first thing that is wrong."""

    def bad(what: str) -> StoreError:
        return StoreError(f"cannot import: {what}", hint="use a file written by `enginedeck history export "
                                                          "--format json`")

    if not isinstance(data, Mapping) or data.get("format") != EXPORT_FORMAT:
        raise bad(f"not an {EXPORT_FORMAT} document")
    if data.get("version") != EXPORT_VERSION:
        raise bad(f"unknown version {data.get('version')!r} (this enginedeck reads {EXPORT_VERSION})")
    session, messages = data.get("session"), data.get("messages")
    if not isinstance(session, Mapping) or not isinstance(messages, list):
        raise bad("missing 'session' or 'messages'")
    for key in ("created_at", "updated_at"):
        if not isinstance(session.get(key), int | float):
            raise bad(f"session.{key} must be a number")
    if not isinstance(session.get("params", {}), Mapping):
        raise bad("session.params must be an object")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise bad(f"message {i} is not an object")
        if m.get("role") not in ROLES:
            raise bad(f"message {i} has role {m.get('role')!r}")
        if m.get("status", "complete") not in STATUSES:
            raise bad(f"message {i} has status {m.get('status')!r}")
        if not isinstance(m.get("created_at"), int | float):
            raise bad(f"message {i}: created_at must be a number")
        for key in ("content", "reasoning"):
            if not isinstance(m.get(key, ""), str | None):
                raise bad(f"message {i}: {key} must be text")
    return session, messages
