"""`enginedeck exporter [--listen HOST:PORT]`: a Prometheus exporter of this box's engines, models, pressure,
GPUs, findings, gateway traffic and probe results, collected on each scrape (docs/exporter.md).

Loopback by default. Runs until SIGINT or SIGTERM; exit 0 then, 2 for a bad --listen or a port in use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING, Any

from console.argtypes import seconds

if TYPE_CHECKING:
    from console.services import Context
    from console.watch.collect import Collector


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("exporter", parents=[common], help="serve Prometheus metrics of this box's engines and GPUs",
                       description="A Prometheus exporter: each scrape polls the engines, samples the GPUs and "
                                   "reads the newest probe results, within --deadline. Loopback by default.")
    p.add_argument("--listen", default=None, metavar="HOST:PORT", help="where to listen (default 127.0.0.1:9464)")
    p.add_argument("--deadline", type=seconds, default=None, metavar="SECONDS",
                   help="the most one scrape's collection may take (default 4 s)")
    p.add_argument("--host-name", default=None, metavar="NAME",
                   help="the host name the metrics report (default: [fleet] host_name, else the system's)")
    p.set_defaults(handler=run)


def host_name(args: argparse.Namespace, ctx: Context) -> str:
    import socket

    return getattr(args, "host_name", None) or ctx.config.fleet.host_name or socket.gethostname()


def build_collector(ctx: Context, deadline_s: float | None) -> Collector:
    """The one collector the exporter and `watch` use (console/watch/collect.py)."""
    from console.gateway_feed import GatewayTraffic
    from console.telemetry.gpu import GpuMonitor
    from console.watch.collect import DEFAULT_DEADLINE_S, Collector
    from console.watch.truth_feed import TruthFindings

    return Collector(ctx.registry(), gpu=GpuMonitor(), store=ctx.store,
                     deadline_s=deadline_s if deadline_s is not None else DEFAULT_DEADLINE_S,
                     findings=TruthFindings(ctx.config, ctx.store),
                     traffic=GatewayTraffic(ctx.config) if ctx.config.gateways else None)


async def run(args: argparse.Namespace, ctx: Context) -> int:
    from console.config import is_loopback
    from console.errors import ConfigError
    from console.logs.sanitize import one_line
    from console.watch.exporter import DEFAULT_LISTEN, parse_listen, serve

    collector = build_collector(ctx, args.deadline)
    loop = asyncio.get_running_loop()
    try:
        host, port = parse_listen(args.listen or DEFAULT_LISTEN)
        server, thread = serve(collector, loop, host=host, port=port, host_name=host_name(args, ctx))
    except ConfigError as exc:  # nothing was served: a usage error
        print(f"enginedeck: {one_line(str(exc), 600)}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    shown = f"[{host}]" if ":" in host else host
    where = "" if is_loopback(host) else " (not loopback: every host that reaches it can read these metrics)"
    print(f"enginedeck exporter: serving http://{shown}:{server.server_port}/metrics{where}", file=sys.stderr,
          flush=True)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        thread.join(timeout=5)
        collector.close()
        if collector.gpu is not None:
            with contextlib.suppress(Exception):
                collector.gpu.close()
    return 0
