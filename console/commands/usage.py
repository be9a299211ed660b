"""`enginedeck usage`: what the gateways' clients used, from the usage ledger (docs/gateway.md).

    enginedeck usage [--since 24h|7d|2026-12-01] [--by client|model|client-model|hour|gateway] [--gateway NAME]
                     [--json | --csv]
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from console.commands.output import Col, print_json, print_table

if TYPE_CHECKING:
    from console.services import Context

UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
FIELDS = ("requests", "errors", "tokens_in", "tokens_out", "busy_s")


def since(text: str) -> float:
    """`30m`, `24h`, `7d`, `2w` ago, or a date / time (ISO 8601, UTC unless it says otherwise)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*", text)
    if match:
        return time.time() - float(match.group(1)) * UNITS[match.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a span such as 24h or 7d, or a date such as 2026-12-01, "
                                         f"not {text!r}") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("usage", parents=[common], help="requests, tokens, errors and busy time per gateway client",
                       description="Usage through enginedeck's gateways, from the usage ledger.")
    p.add_argument("--since", type=since, metavar="WHEN", help="24h, 7d, or a date (default: everything kept)")
    p.add_argument("--by", choices=("client", "model", "client-model", "hour", "gateway"), default="client")
    p.add_argument("--gateway", metavar="NAME", help="one gateway's usage only")
    p.add_argument("--csv", action="store_true", help="CSV with a header row")
    p.set_defaults(handler=run)


def _key_text(key: str, value: object) -> str:
    if key == "hour" and isinstance(value, int):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:00Z")
    return str(value) if value != "" else "(none)"


async def run(args: argparse.Namespace, ctx: Context) -> int:
    store = await ctx.store()
    rows = await store.usage.summary(by=args.by, since=args.since, gateway=args.gateway)
    keys = list(rows[0].key) if rows else args.by.split("-")
    if args.json:
        print_json({"by": args.by, "since": args.since, "rows": [
            {**r.key, "requests": r.requests, "errors": r.errors, "tokens_in": r.tokens_in,
             "tokens_out": r.tokens_out, "busy_s": round(r.busy_s, 3)} for r in rows]})
        return 0
    table = [[*(_key_text(k, r.key[k]) for k in keys), r.requests, r.errors, r.tokens_in, r.tokens_out,
              f"{r.busy_s:.1f}"] for r in rows]
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow([*keys, *FIELDS])
        writer.writerows(table)
        return 0
    if not rows:
        print("no usage recorded yet (the gateway writes it: enginedeck gateway, docs/gateway.md)")
        return 0
    columns = [*(Col(k, "middle", keep=9, min=10) for k in keys), Col("requests", keep=8, right=True),
               Col("errors", keep=6, right=True), Col("tokens in", keep=7, right=True),
               Col("tokens out", keep=7, right=True), Col("busy s", keep=5, right=True)]
    print_table(columns, table)
    return 0
