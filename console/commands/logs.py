"""`enginedeck logs SOURCE...`: show and follow log sources like `tail -F`, filtered by level and regex.

SOURCE is a file path, journal:UNIT, cmd:COMMAND, audit:PATH (signed JSONL), audit: (enginedeck's own trail)
or engine:NAME (see console/logs/spec.py). With --json the output is JSON Lines: one object per log line or
notice, flushed as it comes, because a followed log never ends and a single JSON document could never close.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from console.commands.output import stdout_closed
from console.logs.sanitize import neutralise

# The log and audit modules are imported when the command runs: `enginedeck` builds every parser at start-up.
if TYPE_CHECKING:
    from console.logs.line import LogLine
    from console.logs.sources import Notice
    from console.services import Context

MARK_TEXT = {"valid": "[valid]", "invalid": "[INVALID]", "unsigned": "[unsigned]"}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "logs", parents=[common], help="show and follow log sources (files, journald units, commands, audit files)",
        description="Follow log sources like tail -F (rotation and truncation handled). SOURCE: a file path, "
                    "journal:UNIT, cmd:COMMAND, audit:PATH (signed JSONL, needs --key-file/--key-env), audit: "
                    "(enginedeck's own trail) or engine:NAME. --json prints JSON Lines (one object per line).")
    p.add_argument("sources", nargs="+", metavar="SOURCE")
    p.add_argument("--level", metavar="LEVEL", help="show this level and above (trace debug info warn error fatal)")
    p.add_argument("--grep", metavar="REGEX", help="show lines whose text matches this regular expression")
    p.add_argument("-i", "--ignore-case", action="store_true", help="--grep ignores case")
    p.add_argument("--no-follow", action="store_true", help="print and exit instead of following")
    p.add_argument("-n", "--lines", type=int, default=10, metavar="N",
                   help="start with the last N lines of each file or unit, counted before filtering (default 10)")
    add_key_options(p)
    p.set_defaults(handler=run)


def add_key_options(p: argparse.ArgumentParser) -> None:
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("--key-file", type=lambda t: Path(t).expanduser(), metavar="FILE",
                      help="HMAC key of signed JSONL (mode 600)")
    keys.add_argument("--key-env", metavar="VAR", help="environment variable holding the HMAC key")
    p.add_argument("--key-encoding", choices=("utf8", "hex"), default="utf8",
                   help="the key is used as its UTF-8 text (default) or hex-decoded")


def read_key(args: argparse.Namespace) -> bytes | None:
    """The key named by --key-file / --key-env, or None when neither was given."""
    from console.audit.keys import decode_key, key_from_env
    from console.config import read_secret_file

    if args.key_file is not None:
        text = read_secret_file(args.key_file, what="key file").encode("utf-8")
    elif args.key_env:
        text = key_from_env(args.key_env)
    else:
        return None
    return decode_key(text, args.key_encoding)


async def run(args: argparse.Namespace, ctx: Context) -> int:
    from console.errors import LogSourceError
    from console.logs.filter import LogFilter
    from console.logs.sources import Notice, NoticeKind, merged
    from console.logs.spec import build_source, parse_spec

    if args.lines < 0:
        raise LogSourceError("-n must be 0 or more")
    flt = LogFilter.build(args.level, args.grep, ignore_case=args.ignore_case)
    key = read_key(args)
    specs = [parse_spec(s) for s in args.sources]
    sources = [build_source(spec, config=ctx.config, lines=args.lines, follow=not args.no_follow, key=key)
               for spec in specs]
    show_source = len(sources) > 1
    failed = False
    out = sys.stdout
    async for event in merged(sources):
        if isinstance(event, Notice):
            failed |= event.kind is NoticeKind.ERROR or bool(event.exit_code)
            _notice(event, args.json, out)
        elif flt.matches(event):
            out.write(_json_line(event) if args.json else _text_line(event, show_source))
        if not args.no_follow:
            out.flush()
        if stdout_closed():  # `enginedeck logs -f ... | head`: nobody reads any more
            break
    return 1 if failed else 0


def _notice(event: Notice, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps({"source": event.source, "event": event.kind.value, "message": event.message,
                              "exit_code": event.exit_code}) + "\n")
    else:
        out.flush()
        print(f"enginedeck: {neutralise(event.source)}: {neutralise(event.message)}", file=sys.stderr)


def _text_line(line: LogLine, show_source: bool) -> str:
    parts = []
    if show_source:
        parts.append(f"{neutralise(line.source)}:")
    if line.mark is not None:
        parts.append(MARK_TEXT[line.mark.value])
    if line.ts is not None:
        parts.append(line.ts.astimezone().strftime("%Y-%m-%d %H:%M:%S"))
    if line.level is not None:
        parts.append(f"{line.level.name:<5}")
    parts.append(line.text)
    return " ".join(parts) + "\n"


def _json_line(line: LogLine) -> str:
    # ensure_ascii: the raw line may hold C1 controls, which JSON would otherwise pass through to the terminal.
    return json.dumps({
        "source": line.source, "lineno": line.lineno, "ts": line.ts.isoformat() if line.ts else None,
        "level": line.level.label if line.level is not None else None, "text": line.text,
        "fields": dict(line.fields), "mark": line.mark.value if line.mark else None, "format": line.fmt,
        "raw": line.raw,
    }) + "\n"
