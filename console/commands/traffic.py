"""`enginedeck traffic`: the requests going through the local gateways now (docs/gateway.md, "Live view").

    enginedeck traffic [NAME] [--socket PATH] [--json]      one snapshot of each gateway
    enginedeck traffic [NAME] --follow [--json]             the events as they happen (NDJSON with --json)
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.commands.output import Col, json_text, print_json, print_table

if TYPE_CHECKING:
    from console.services import Context

FINISHED_SHOWN = 10


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("traffic", parents=[common], help="requests in flight and just finished, through the gateways",
                       description="Live traffic of the gateways on this box (their 0600 unix sockets).")
    p.add_argument("name", nargs="?", metavar="NAME", help="one configured gateway")
    p.add_argument("--socket", type=Path, metavar="PATH", help="a gateway's live socket (<log dir>/live.sock)")
    p.add_argument("--follow", action="store_true", help="print events as they happen until interrupted")
    p.set_defaults(handler=run)


def _paths(args: argparse.Namespace, ctx: Context) -> list[Path]:
    from console.errors import EngineDeckError
    from console.gateway.live import SOCKET, sockets

    config = ctx.config
    if args.socket is not None:
        return [args.socket]
    gateways = config.gateways
    if args.name is not None:
        gateways = tuple(g for g in gateways if g.name == args.name)
        if not gateways:
            raise EngineDeckError(f"no gateway named {args.name!r} in the config")
    dirs = [g.log_dir or config.data_dir / "gateway" / g.name for g in gateways]
    found = sockets(dirs, config.data_dir) if args.name is None else [d / SOCKET for d in dirs if (d / SOCKET).exists()]
    if not found:
        raise EngineDeckError("no running gateway found (none of their live sockets exists)",
                              hint="start one with `enginedeck gateway`, or give --socket PATH")
    return found


def _ms(value: object) -> str:
    return "—" if not isinstance(value, int | float) else f"{value:.0f}"


def _print_snapshot(snap: dict[str, Any]) -> None:
    print(f"gateway {snap.get('gateway')} → {snap.get('upstream')}: {len(snap.get('in_flight', []))} in flight")
    flights = snap.get("in_flight", [])
    if flights:
        print_table([Col("client", "middle", keep=8), Col("model", "middle", keep=7), Col("phase", keep=9),
                     Col("elapsed s", keep=8, right=True), Col("ttft ms", keep=6, right=True),
                     Col("chunks", keep=5, right=True), Col("chunks/s", keep=4, right=True)],
                    [(f["client"], f["model"] or "—", f["phase"], f"{f['elapsed_s']:.1f}", _ms(f["ttft_ms"]),
                      f["chunks"], _ms(f["chunks_per_s"])) for f in flights])
    done = snap.get("finished", [])[-FINISHED_SHOWN:]
    if done:
        print("last finished:")
        print_table([Col("time", keep=6), Col("client", "middle", keep=8), Col("model", "middle", keep=7),
                     Col("status", keep=8, right=True), Col("outcome", keep=9), Col("ttft ms", keep=6, right=True),
                     Col("ms", keep=7, right=True), Col("tokens", keep=5, right=True)],
                    [(d["timestamp"][11:19], d["client"], d["model"] or "—", d["status_code"] or "—", d["outcome"],
                      _ms(d["ttft_ms"]), _ms(d["latency_ms"]),
                      "—" if d["tokens_out"] is None else f"{d['tokens_in'] or 0}/{d['tokens_out']}")
                     for d in reversed(done)])
    rates = snap.get("requests_last_minute", {})
    if rates:
        print("requests in the last minute: " + ", ".join(f"{c} {n}" for c, n in sorted(rates.items())))


def _event_line(event: dict[str, Any]) -> str:
    kind = event.get("event")
    now = datetime.fromtimestamp(time.time()).strftime("%H:%M:%S")
    if kind == "start":
        return f"{now} start  {event['request_id']} {event['client']} {event['model'] or '—'} {event['path']}"
    if kind == "first_byte":
        return f"{now} first  {event['request_id']} ttft {event['ttft_ms']:.0f} ms"
    if kind == "end":
        return (f"{now} end    {event['request_id']} {event['status_code'] or '—'} {event['outcome']} "
                f"{_ms(event['latency_ms'])} ms tokens {event['tokens_in']}/{event['tokens_out']}")
    if kind == "progress":
        return f"{now} flow   " + ", ".join(f"{f['request_id']} {f['chunks']} chunks" for f in event["in_flight"])
    return f"{now} {kind}"


async def run(args: argparse.Namespace, ctx: Context) -> int:
    from console.errors import EngineDeckError
    from console.gateway.live import ask

    paths = _paths(args, ctx)
    if args.follow:
        if len(paths) > 1:
            raise EngineDeckError(f"--follow reads one gateway; {len(paths)} are running",
                                  hint="name one (NAME or --socket PATH)")
        try:
            async for event in ask(paths[0], follow=True):
                if args.json:
                    print(json_text(event, indent=None))
                elif event.get("event") == "snapshot":
                    _print_snapshot(event)
                else:
                    print(_event_line(event))
                sys.stdout.flush()
        except OSError as exc:
            raise EngineDeckError(f"cannot read the gateway's live socket {paths[0]}: {exc}") from None
        return 0
    snaps = []
    for path in paths:
        try:
            async for snap in ask(path):
                snaps.append(snap)
        except OSError as exc:
            raise EngineDeckError(f"cannot read the gateway's live socket {path}: {exc}") from None
    if args.json:
        print_json({"gateways": snaps})
    else:
        for snap in snaps:
            _print_snapshot(snap)
    return 0
