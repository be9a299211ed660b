"""Chat sessions, their messages, and full-text search over every message (FTS5).

Text is stored exactly as the engine sent it; making it safe for a terminal is the job of whoever shows it.
"""

from __future__ import annotations

import builtins
import itertools
import json
import re
import sqlite3
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from console.errors import StoreError
from console.store.connection import Db

ROLES = ("system", "user", "assistant", "tool")
STATUSES = ("complete", "partial", "cancelled", "error")
EXPORT_FORMAT = "enginedeck-session"
EXPORT_VERSION = 1
SNIPPET_TOKENS = 16
SEARCH_TIME_LIMIT_S = 5.0  # a search that takes longer stops and returns what it found


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
    energy: Mapping[str, Any] | None = None  # console.telemetry.energy.EnergyReading.to_dict(), when measured


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


class SearchResult(list[SearchHit]):
    """The hits, newest first. `complete` is False when the time limit stopped the search early."""

    def __init__(self, hits: Iterable[SearchHit] = (), *, complete: bool = True) -> None:
        super().__init__(hits)
        self.complete = complete


# Columns a streaming update may set, so callers cannot write arbitrary SQL through keyword names.
_UPDATABLE = frozenset({"content", "reasoning", "ttft_ms", "tokens_in", "tokens_out", "tok_s", "token_source",
                        "status", "error", "engine", "model", "energy_json"})


def _session(row: sqlite3.Row) -> Session:
    keys = row.keys()
    return Session(id=row["id"], title=row["title"], engine=row["engine"], model=row["model"],
                   system_prompt=row["system_prompt"], params=json.loads(row["params_json"] or "{}"),
                   created_at=row["created_at"], updated_at=row["updated_at"], archived=bool(row["archived"]),
                   message_count=row["message_count"] if "message_count" in keys else 0)


def _message(row: sqlite3.Row) -> Message:
    params = row["params_json"]
    energy = row["energy_json"]
    return Message(
        id=row["id"], session_id=row["session_id"], role=row["role"], content=row["content"],
        reasoning=row["reasoning"], engine=row["engine"], model=row["model"], created_at=row["created_at"],
        updated_at=row["updated_at"], ttft_ms=row["ttft_ms"], tokens_in=row["tokens_in"],
        tokens_out=row["tokens_out"], tok_s=row["tok_s"], token_source=row["token_source"], status=row["status"],
        error=row["error"], params=json.loads(params) if params else None,
        energy=json.loads(energy) if energy else None)


@dataclass(frozen=True)
class Term:
    """One thing a query looks for: a word or a "quoted phrase", `prefix` when typed with a trailing `*`."""

    text: str
    prefix: bool = False


OR = Term("OR")  # the operator, between two terms (a lone OR is a word to look for)


def parse_query(text: str) -> list[Term]:
    """What a person types, as terms: each word (or "quoted phrase") must appear; `word*` is a prefix; `OR`
    between two terms means either."""
    terms: list[Term] = []
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
            if phrase == "OR" and terms and terms[-1] is not OR:
                terms.append(OR)
                continue
        if phrase.strip():
            terms.append(Term(phrase, prefix))
    while terms and terms[-1] is OR:
        terms.pop()
    return terms


def fts_query(text: str) -> str:
    """A query as safe FTS5 syntax. FTS5's own syntax (NEAR, column filters, bare operators) would turn typos
    into syntax errors, so every term is quoted; `OR` between terms is kept because people expect it."""
    return " ".join("OR" if t is OR else '"' + t.text.replace('"', '""') + '"' + ("*" if t.prefix else "")
                    for t in parse_query(text))


# -- snippets ----------------------------------------------------------------------------------------------------
# FTS5's snippet() scores every instance of a term against every other one in the row: on a 1 MB message made
# of one repeated word that is hours of work inside one SQLite call, which no deadline can interrupt. Snippets
# are built here instead, from the first SNIPPET_WINDOW characters of each column, with the tokens the FTS5
# unicode61 tokenizer sees (runs of letters and digits, case and diacritics folded). A match further into a
# longer message is still found by the index; its snippet is the message's start, with nothing marked.

SNIPPET_WINDOW = 65_536  # characters of a message read to build its snippet
MATCHES_CONSIDERED = 64  # candidate snippet positions per column
_TOKEN = re.compile(r"[^\W_]+")
_BETWEEN = r"[\W_]+"


def fold(text: str) -> str:
    """Lower case without diacritics, one character for one, so offsets in the folded text are offsets in
    `text` (unicode61 with remove_diacritics, near enough for marking hits)."""
    if text.isascii():
        return text.lower()
    table: dict[int, str] = {}
    for ch in set(text):
        if ch.isascii():
            table[ord(ch)] = ch.lower()
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)) or ch
        table[ord(ch)] = base.lower()[0]
    return text.translate(table)


class HitFinder:
    """Finds the terms of a query in text, as the index would match them; builds snippets with hits marked."""

    def __init__(self, terms: list[Term]) -> None:
        alternatives = []
        for i, term in enumerate(t for t in terms if t is not OR):
            words = _TOKEN.findall(fold(term.text))
            if words:
                end = r"[^\W_]*" if term.prefix else r"(?![^\W_])"
                alternatives.append(f"(?P<t{i}>{_BETWEEN.join(map(re.escape, words))}{end})")
        self.pattern = re.compile(r"(?<![^\W_])(?:" + "|".join(alternatives) + ")") if alternatives else None

    def matches(self, text: str) -> list[re.Match[str]]:
        if self.pattern is None:
            return []
        return list(itertools.islice(self.pattern.finditer(fold(text)), MATCHES_CONSIDERED))

    def snippet(self, text: str, *, cut: bool) -> tuple[int, str, tuple[tuple[int, int], ...]]:
        """(score, snippet, hit offsets) for `text` (a column's first characters; `cut` when more follows).
        The score is how many distinct terms the snippet shows; 0 when none is in `text`."""
        found = self.matches(text)
        best: tuple[int, int, int] | None = None  # score, start, end
        for m in found:
            start = _tokens_back(text, m.start(), 3)
            end, taken = _tokens_forward(text, start, SNIPPET_TOKENS)
            if taken < SNIPPET_TOKENS:  # the text ends first: show more of what comes before instead
                start = _tokens_back(text, start, SNIPPET_TOKENS - taken)
            score = len({h.lastgroup for h in found if h.start() >= start and h.end() <= end})
            if best is None or score > best[0]:
                best = (score, start, end)
        if best is None:
            start, (end, _), score = 0, _tokens_forward(text, 0, SNIPPET_TOKENS), 0
        else:
            score, start, end = best
        lead = "…" if start > 0 else ""
        trail = "…" if end < len(text) or cut else ""
        hits = tuple((m.start() - start + len(lead), min(m.end(), end) - start + len(lead))
                     for m in found if start <= m.start() < end)
        return score, lead + text[start:end] + trail, hits


def _tokens_back(text: str, pos: int, count: int) -> int:
    """Where the token `count` tokens before `pos` starts (looking at most 40 characters a token back); 0 when
    the text starts sooner."""
    since = max(0, pos - 40 * count)
    starts = [m.start() for m in _TOKEN.finditer(text, since, pos)]
    if len(starts) >= count:
        return starts[-count]
    return 0 if since == 0 else (starts[0] if starts else pos)


def _tokens_forward(text: str, start: int, count: int) -> tuple[int, int]:
    """Where the `count`th token from `start` ends, and how many tokens there were (fewer at the end)."""
    end, taken = start, 0
    for match in itertools.islice(_TOKEN.finditer(text, start), count):
        end, taken = match.end(), taken + 1
    return end, taken


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
    async def messages(self, session_id: int) -> builtins.list[Message]:  # `list` here is the method above
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

    async def asked_contexts(self, *, limit: int = 500) -> dict[tuple[str, str], tuple[int, float]]:
        """The context length (num_ctx) the newest replies asked for, per (engine, model): (tokens, when asked).
        Read from the last `limit` replies that asked for one (console/truth: "context smaller than asked")."""
        rows = await self._db.fetchall(
            "SELECT engine, model, params_json, created_at FROM messages WHERE role = 'assistant' "
            "AND engine IS NOT NULL AND model IS NOT NULL AND params_json LIKE '%context_length%' "
            "ORDER BY id DESC LIMIT ?", (limit,))
        asked: dict[tuple[str, str], tuple[int, float]] = {}
        for r in rows:
            try:
                tokens = json.loads(r["params_json"]).get("context_length")
            except (ValueError, AttributeError):
                continue
            if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0:
                asked.setdefault((r["engine"], r["model"]), (tokens, r["created_at"]))
        return asked

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
    async def search(self, query: str, *, limit: int = 20, time_limit_s: float | None = None) -> SearchResult:
        """Newest matches first, each with a snippet around the hit, within `time_limit_s` (None: the default,
        SEARCH_TIME_LIMIT_S).

        Newest first rather than bm25: FTS5 walks its index in rowid order and stops at `limit`, while ranking
        must score every match (a common word over 1 M messages costs seconds; see bench/search_1m.py). The
        query runs on the store's read connection (`Db.read_bounded`): past the time limit, or when the caller
        is cancelled, it stops and the hits found so far come back with `complete` False.
        """
        terms = parse_query(query)
        match = fts_query(query)
        if not match:
            return SearchResult([])
        finder = HitFinder(terms)

        def hit(r: sqlite3.Row) -> SearchHit:
            # Rows come newest first; the snippet comes from whichever column shows more of the query.
            content = finder.snippet(r["content"], cut=r["content_cut"])
            reasoning = finder.snippet(r["reasoning"], cut=r["reasoning_cut"]) if r["reasoning"] else None
            _, text, offsets = reasoning if reasoning and reasoning[0] > content[0] else content
            return SearchHit(r["id"], r["session_id"], r["title"], r["role"], r["created_at"], text, offsets)

        # length() of a text counts its characters: compared with the window through substr of one more
        # character, so a huge message is never measured whole.
        hits, complete = await self._db.read_bounded(
            "SELECT m.id, m.session_id, s.title, m.role, m.created_at, "
            f"substr(m.content, 1, {SNIPPET_WINDOW}) AS content, "
            f"length(substr(m.content, {SNIPPET_WINDOW + 1}, 1)) AS content_cut, "
            f"substr(m.reasoning, 1, {SNIPPET_WINDOW}) AS reasoning, "
            f"length(substr(m.reasoning, {SNIPPET_WINDOW + 1}, 1)) AS reasoning_cut "
            "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
            "JOIN sessions s ON s.id = m.session_id "
            "WHERE messages_fts MATCH ? ORDER BY messages_fts.rowid DESC LIMIT ?",
            (match, limit), hit, time_limit_s=SEARCH_TIME_LIMIT_S if time_limit_s is None else time_limit_s,
            doing="search the history")
        return SearchResult(hits, complete=complete)

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

    async def import_session(self, data: object) -> int:
        """A session from `export` output (any JSON a file held: checked here), as a new session (new ids, same
        text, times and figures)."""
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


def _validated(data: object) -> tuple[Mapping[str, Any], list[Mapping[str, Any]]]:
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
