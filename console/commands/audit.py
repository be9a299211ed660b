"""`enginedeck audit verify [FILE]` and `enginedeck audit list`.

verify FILE: a signed JSONL file from a proxy; each line valid / invalid / unsigned; exit 1 on any invalid line.
verify: enginedeck's own trail (data dir): hashes, HMACs, order, gaps, the signed head and the database copy;
exit 1 on any problem, each named with its kind and line.
"""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.commands.logs import add_key_options, read_key
from console.commands.output import Col, print_json, print_table, to_jsonable
from console.errors import AuditError
from console.logs.sanitize import neutralise

if TYPE_CHECKING:
    from console.services import Context

# The audit modules are imported when the command runs: `enginedeck` builds every parser at start-up.
# Line numbers listed in text output before "and N more" (all of them are in --json).
MAX_LISTED = 50
# At 80 columns: what was done to what, and how it ended, stay; where from and how long go first.
AUDIT_COLUMNS = (Col("seq", keep=9, right=True), Col("time", keep=6), Col("user", "middle", keep=5, min=8),
                 Col("from", "middle", keep=2, min=12), Col("action", keep=8), Col("engine", "middle", keep=6, min=12),
                 Col("target", "middle", keep=7, min=14), Col("result", "wrap", keep=8, min=14),
                 Col("took", keep=3, right=True))


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("audit", help="verify signed JSONL and enginedeck's own audit trail; list recent events",
                       description="Audit trails: verify a proxy's signed JSONL, or enginedeck's own trail.")
    a_sub = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    v = a_sub.add_parser("verify", parents=[common], help="verify a signed JSONL file, or enginedeck's own trail",
                         description="With FILE: check each line's HMAC-SHA256 `signature` (needs the key). "
                                     "Without: check enginedeck's own trail and its database copy.")
    v.add_argument("file", nargs="?", type=Path, metavar="FILE")
    add_key_options(v)
    v.set_defaults(handler=verify)

    ls = a_sub.add_parser("list", parents=[common], help="recent operator actions, newest first")
    ls.add_argument("--limit", type=int, default=50, metavar="N")
    ls.set_defaults(handler=list_events)


async def verify(args: argparse.Namespace, ctx: Context) -> int:
    return await (_verify_signed(args) if args.file is not None else _verify_trail(args, ctx))


def _numbers(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:MAX_LISTED])
    return shown + (f" and {len(numbers) - MAX_LISTED} more" if len(numbers) > MAX_LISTED else "")


async def _verify_signed(args: argparse.Namespace) -> int:
    from console.audit.mark import Mark
    from console.audit.signed import verify_file

    key = read_key(args)
    if key is None:
        raise AuditError("verifying a signed file needs its key", hint="--key-file FILE or --key-env VAR")
    verdicts = list(verify_file(args.file, key))
    counts = Counter(v.mark.value for v in verdicts)
    invalid = [v for v in verdicts if v.mark is Mark.INVALID]
    serialisations = Counter(v.serialisation for v in verdicts if v.serialisation)
    if args.json:
        print_json({"file": str(args.file), "ok": not invalid, "counts": {m.value: counts[m.value] for m in Mark},
                    "serialisations": dict(serialisations), "invalid_lines": [v.lineno for v in invalid],
                    "unsigned_lines": [v.lineno for v in verdicts if v.mark is Mark.UNSIGNED],
                    "lines": [{"line": v.lineno, "mark": v.mark.value, "serialisation": v.serialisation,
                               "reason": v.reason} for v in verdicts]})
    else:
        summary = ", ".join(f"{counts[m.value]} {m.value}" for m in Mark)
        print(f"{neutralise(str(args.file))}: {len(verdicts)} lines: {summary}")
        if serialisations:
            print("signatures matched: " + ", ".join(f"{k} separators ({n})" for k, n in serialisations.items()))
        for v in invalid[:MAX_LISTED]:
            print(f"  line {v.lineno}: INVALID ({v.reason})")
        if len(invalid) > MAX_LISTED:
            print(f"  ... and {len(invalid) - MAX_LISTED} more invalid lines (see --json)")
        unsigned = [v.lineno for v in verdicts if v.mark is Mark.UNSIGNED]
        if unsigned:
            print(f"  unsigned lines: {_numbers(unsigned)}")
    return 1 if invalid else 0


async def _verify_trail(args: argparse.Namespace, ctx: Context) -> int:
    from console.audit.trail import AuditTrail, trail_files
    from console.audit.verify import verify_trail

    trail = AuditTrail.for_config(ctx.config, None)
    if not trail_files(trail.directory):
        raise AuditError(f"no audit trail in {trail.directory} yet",
                         hint="it starts with the first load, unload, swap, pull, delete or probe")
    if not trail.key_file.exists():
        raise AuditError(f"the audit key {trail.key_file} is missing: the trail cannot be verified",
                         hint="restore the key file from a backup")
    store = await ctx.store()
    report = verify_trail(trail.directory, trail.key(), await store.audit.all())
    if args.json:
        print_json({**to_jsonable(report), "ok": report.ok})
    else:
        span = f"#{report.first_seq}–#{report.last_seq}" if report.records else "none"
        print(f"audit trail {trail.directory}: {report.records} records ({span}) in {len(report.files)} files")
        for issue in report.issues:
            print(f"  {issue.kind.value}: {neutralise(issue.message)}")
        print("OK: every record is intact, in order and matches the database" if report.ok
              else f"FAILED: {len(report.issues)} problems")
    return 0 if report.ok else 1


async def list_events(args: argparse.Namespace, ctx: Context) -> int:
    store = await ctx.store()
    events = await store.audit.recent(max(1, args.limit))
    if args.json:
        print_json([{**e.body(), "hash": e.hash} for e in events])
        return 0
    print_table(AUDIT_COLUMNS,
                [(e.seq, datetime.fromtimestamp(e.ts).astimezone().strftime("%Y-%m-%d %H:%M:%S"), e.os_user,
                  e.ssh_origin, e.action, e.engine, e.target, e.result,
                  None if e.duration_s is None else f"{e.duration_s:.2f}s") for e in events])
    return 0
