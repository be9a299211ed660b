"""`enginedeck history list|show|search|export|import|rename|archive|unarchive|delete`.

Text from the history (titles, messages) came from models. What these commands print is inert wherever it goes
(commands/output.py); a Markdown export escapes control characters visibly (ESC as `\x1b`), a JSON export
escapes them as JSON does (`\u001b`), so it still holds exactly the text and imports back unchanged.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from console.commands.output import (
    BOLD,
    PLAIN,
    Col,
    cell,
    json_text,
    print_json,
    print_table,
    styled,
    table_width,
    visible,
)
from console.errors import EngineDeckError, StoreError
from console.logs.sanitize import one_line
from console.present.format import cell_width, elide_end

if TYPE_CHECKING:
    from console.services import Context
    from console.store.sessions import Message, SearchHit, Session

HIT_MARKS = ("«", "»")
AFTER_HIT = 20  # columns of a snippet kept after its first hit when the line must be cut
_SPACES = re.compile(r"\s+")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("history", help="chat sessions: list, show, search, export, import",
                       description="The chat history kept in the SQLite database of the data dir.")
    hs = p.add_subparsers(dest="history_command", metavar="ACTION", required=True)

    a = hs.add_parser("list", parents=[common], help="sessions, newest first")
    a.add_argument("--archived", action="store_true", help="list archived sessions instead")
    a.add_argument("--limit", type=int, default=None, metavar="N")
    a.set_defaults(handler=list_sessions)

    a = hs.add_parser("show", parents=[common], help="one session with every message and its figures")
    a.add_argument("id", type=int, metavar="ID")
    a.set_defaults(handler=show)

    a = hs.add_parser("search", parents=[common], help="full-text search over every message")
    a.add_argument("query", metavar="QUERY", help='words must all appear; "quoted phrase", prefix*, a OR b')
    a.add_argument("--limit", type=int, default=20, metavar="N")
    a.add_argument("--time-limit", dest="time_limit", type=_positive_seconds, metavar="SECONDS",
                   help="stop the search after this long and show what it found, exit 1 (default 5)")
    a.set_defaults(handler=search)

    a = hs.add_parser("export", parents=[common], help="a session as Markdown (front-matter) or JSON")
    a.add_argument("id", type=int, metavar="ID")
    a.add_argument("--format", choices=("md", "json"), default="md", help="md (default), or json (as --json)")
    a.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here instead of stdout")
    a.set_defaults(handler=export)

    a = hs.add_parser("import", parents=[common], help="a session from a JSON export (gets a new id)")
    a.add_argument("file", type=Path, metavar="FILE")
    a.set_defaults(handler=import_)

    a = hs.add_parser("rename", parents=[common], help="give a session a new title")
    a.add_argument("id", type=int, metavar="ID")
    a.add_argument("title", metavar="TITLE")
    a.set_defaults(handler=rename)

    for name, archived in (("archive", True), ("unarchive", False)):
        a = hs.add_parser(name, parents=[common], help=f"{name} a session")
        a.add_argument("id", type=int, metavar="ID")
        a.set_defaults(handler=archive, archived=archived)

    a = hs.add_parser("delete", parents=[common], help="delete a session and its messages (needs --yes)")
    a.add_argument("id", type=int, metavar="ID")
    a.add_argument("--yes", action="store_true", help="really delete; there is no undo")
    a.set_defaults(handler=delete)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "—"


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


def _session_json(s: Session) -> dict[str, Any]:
    return {"id": s.id, "title": s.title, "engine": s.engine, "model": s.model, "system_prompt": s.system_prompt,
            "params": dict(s.params), "created_at": _iso(s.created_at), "updated_at": _iso(s.updated_at),
            "archived": s.archived, "message_count": s.message_count}


def _message_json(m: Message) -> dict[str, Any]:
    return {"id": m.id, "role": m.role, "content": m.content, "reasoning": m.reasoning, "engine": m.engine,
            "model": m.model, "created_at": _iso(m.created_at), "updated_at": _iso(m.updated_at),
            "ttft_ms": m.ttft_ms, "tokens_in": m.tokens_in, "tokens_out": m.tokens_out, "tok_s": m.tok_s,
            "token_source": m.token_source, "status": m.status, "error": m.error, "params": m.params}


def figures_line(m: Message) -> str:
    """The figures of a stored reply, worded like the live ones."""
    from console.conversation import Figures, parse_token_source

    line = Figures(m.ttft_ms, m.tokens_in, m.tokens_out, m.tok_s, parse_token_source(m.token_source)).describe()
    status = {"cancelled": "stopped"}.get(m.status, m.status)
    return line if m.status == "complete" else f"{line} · {status}"


async def list_sessions(args: argparse.Namespace, ctx: Context) -> int:
    store = await ctx.store()
    sessions = await store.sessions.list(archived=args.archived, limit=args.limit)
    if args.json:
        print_json([_session_json(s) for s in sessions])
        return 0
    print_table([Col("id", right=True, keep=9), Col("updated (UTC)", keep=3), Col("messages", right=True, keep=2),
                 Col("engine", "middle", keep=4, min=12), Col("model", "middle", keep=6, min=16),
                 Col("title", "end", keep=8, min=16)],
                [(s.id, _when(s.updated_at), s.message_count, s.engine, s.model, s.title) for s in sessions])
    return 0


async def show(args: argparse.Namespace, ctx: Context) -> int:
    store = await ctx.store()
    session = await store.sessions.require(args.id)
    messages = await store.sessions.messages(args.id)
    if args.json:
        print_json({"session": _session_json(session), "messages": [_message_json(m) for m in messages]})
        return 0
    out = sys.stdout
    out.write(f"session {session.id}: {session.title}\n")
    out.write(f"{session.engine or '—'} · {session.model or '—'} · "
              f"{json.dumps(dict(session.params)) if session.params else 'default parameters'}\n")
    if session.system_prompt:
        out.write(f"system: {session.system_prompt}\n")
    for m in messages:
        out.write(f"\n[{m.role} · {_when(m.created_at)}]\n")
        if m.reasoning:
            out.write(f"(reasoning) {m.reasoning}\n")
        out.write(m.content.rstrip("\n") + "\n")
        if m.role == "assistant":
            out.write(f"  {figures_line(m)}\n")
            if m.error:
                out.write(f"  error: {one_line(m.error)}\n")
    return 0


def marked(hit: SearchHit, width: int | None) -> list[tuple[str, bool]]:
    """The snippet on one line as (text, is a hit) pieces, cut to `width` columns (None: whole): the start gives
    way first when the first hit would not show, then the end."""
    pieces: list[tuple[str, bool]] = []
    pos = 0
    for start, end in hit.hits:
        pieces += [(hit.snippet[pos:start], False), (hit.snippet[start:end], True)]
        pos = end
    pieces.append((hit.snippet[pos:], False))
    pieces = [(_SPACES.sub(" ", cell(text)), is_hit) for text, is_hit in pieces]
    if width is None or sum(cell_width(text) for text, _ in pieces) <= width:
        return pieces
    if len(pieces) > 1:  # pieces[1] is the first hit: keep it and a little of what follows in view
        lead, first = cell_width(pieces[0][0]), cell_width(pieces[1][0])
        excess = lead + first + min(AFTER_HIT, width // 4) - width
        if excess > 0:
            pieces[0] = ("…" + _take_end(pieces[0][0], max(0, lead - excess - 1)), False)
    kept: list[tuple[str, bool]] = []
    room = width - 1  # for the … that says the snippet goes on
    for text, is_hit in pieces:
        if cell_width(text) > room:
            kept.append((elide_end(text, room + 1)[:-1], is_hit))
            return [*kept, ("…", False)]
        kept.append((text, is_hit))
        room -= cell_width(text)
    return kept


def _take_end(text: str, width: int) -> str:
    """The end of `text` that fits `width` columns."""
    while cell_width(text) > width:
        text = text[max(1, len(text) - width):] if text.isascii() else text[1:]
    return text


def _write_marked(out: TextIO, pieces: list[tuple[str, bool]], *, bold: bool) -> None:
    """Hits in bold on a terminal (our own two codes, the text stays inert), «guillemets» otherwise."""
    for text, is_hit in pieces:
        if not is_hit:
            out.write(text)
        elif bold:
            styled(out, BOLD)
            out.write(text)
            styled(out, PLAIN)
        else:
            out.write(HIT_MARKS[0] + text + HIT_MARKS[1])


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


async def search(args: argparse.Namespace, ctx: Context) -> int:
    store = await ctx.store()
    hits = await store.sessions.search(args.query, limit=args.limit, time_limit_s=args.time_limit)
    if args.json:
        print_json([{"message_id": h.message_id, "session_id": h.session_id, "session_title": h.session_title,
                     "role": h.role, "created_at": _iso(h.created_at), "snippet": h.snippet,
                     "hits": [list(span) for span in h.hits]} for h in hits])
    else:
        out = sys.stdout
        width = table_width()
        bold = out.isatty() and not os.environ.get("NO_COLOR")
        for h in hits:
            where = f"{h.session_id}/{h.message_id}  {_when(h.created_at)}  {h.role:<9}  "
            title = cell(h.session_title)
            if width is not None:
                title = elide_end(title, max(10, width - cell_width(where)))
            out.write(f"{where}{title}\n    ")
            # Marks take room too: 2 columns per hit when they are guillemets.
            _write_marked(out, marked(h, None if width is None else max(10, width - 4 - 2 * (not bold) * len(h.hits))),
                          bold=bold)
            out.write("\n")
        if not hits and hits.complete:
            print("no match", file=sys.stderr)
    if not hits.complete:
        print(f"enginedeck: the search stopped at its time limit with {len(hits)} hits; narrow the query, "
              "or give it more time with --time-limit SECONDS", file=sys.stderr)
        return 1
    return 0


def to_markdown(doc: dict[str, Any]) -> str:
    """A session export as Markdown with front-matter. Values are JSON, which YAML reads as well."""
    s = doc["session"]
    front = {"enginedeck_export": doc["version"], "session": s["id"], "title": s["title"], "engine": s["engine"],
             "model": s["model"], "system_prompt": s["system_prompt"], "parameters": s["params"],
             "created_at": _iso(s["created_at"]), "updated_at": _iso(s["updated_at"])}
    lines = ["---", *(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in front.items()), "---", "",
             f"# {s['title'] or 'Untitled session'}", ""]
    for m in doc["messages"]:
        who = m["role"]
        if m["role"] == "assistant" and m.get("model"):
            who += f" · {m['model']} on {m.get('engine') or '?'}"
        lines += [f"## {who} · {_when(m['created_at'])}", ""]
        if m.get("reasoning"):
            lines += ["<details><summary>reasoning</summary>", "", m["reasoning"], "", "</details>", ""]
        lines += [m.get("content") or "", ""]
        if m["role"] == "assistant":
            from console.store.sessions import Message

            msg = Message(id=0, session_id=0, **{k: v for k, v in m.items()})
            lines += [f"> {figures_line(msg)}" + (f" · parameters {json.dumps(m['params'])}" if m.get("params")
                                                   else ""), ""]
            if m.get("error"):
                lines += [f"> error: {one_line(m['error'])}", ""]
    # What a model wrote stays as text, but its control characters are written out (`\x1b`): a reader who
    # `cat`s the file sees that something was there, and the terminal acts on none of it.
    return visible("\n".join(lines))


async def export(args: argparse.Namespace, ctx: Context) -> int:
    store = await ctx.store()
    doc = await store.sessions.export(args.id)
    as_json = args.format == "json" or args.json
    text = json_text(doc) + "\n" if as_json else to_markdown(doc)
    if args.output is not None:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise EngineDeckError(f"cannot write {args.output}: {exc.strerror}") from None
        print(f"exported session {args.id} to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


async def import_(args: argparse.Namespace, ctx: Context) -> int:
    try:
        data = json.loads(args.file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EngineDeckError(f"cannot read {args.file}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"cannot import {args.file}: not JSON ({exc})") from None
    store = await ctx.store()
    session_id = await store.sessions.import_session(data)
    if args.json:
        print_json({"session_id": session_id})
    else:
        print(f"imported as session {session_id}")
    return 0


async def rename(args: argparse.Namespace, ctx: Context) -> int:
    store = await ctx.store()
    await store.sessions.rename(args.id, args.title)
    return _done(args, f"renamed session {args.id}")


async def archive(args: argparse.Namespace, ctx: Context) -> int:
    store = await ctx.store()
    await store.sessions.set_archived(args.id, args.archived)
    return _done(args, f"{'archived' if args.archived else 'unarchived'} session {args.id}")


async def delete(args: argparse.Namespace, ctx: Context) -> int:
    if not args.yes:
        print(f"enginedeck: refusing to delete session {args.id} without --yes (there is no undo)",
              file=sys.stderr)
        return 2
    store = await ctx.store()
    await store.sessions.delete(args.id)
    return _done(args, f"deleted session {args.id}")


def _done(args: argparse.Namespace, what: str) -> int:
    if args.json:
        print_json({"ok": True, "id": args.id})
    else:
        print(what)
    return 0
