"""`enginedeck gateway`: run a pass-through gateway in front of an engine, in the foreground (docs/gateway.md).

    enginedeck gateway --listen 127.0.0.1:8181 --upstream ENGINE
    enginedeck gateway NAME            # a [[gateways]] entry of the config; flags override its keys
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.argtypes import positive_int, seconds


def size(text: str) -> int:
    """A byte count: 67108864, "64MiB", "64 MiB"."""
    from console.config import parse_size

    value = parse_size(text)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"must be a size such as 64MiB, not {text!r}")
    return value

if TYPE_CHECKING:
    from console.services import Context


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("gateway", parents=[common], help="run a pass-through gateway with a signed request log",
                       description="Pass every request to one engine and write a signed JSONL record of each. "
                                   "Runs in the foreground; SIGTERM drains requests in flight.")
    p.add_argument("name", nargs="?", metavar="NAME", help="a [[gateways]] entry of the config")
    p.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (loopback unless keys are given)")
    p.add_argument("--upstream", metavar="ENGINE", help="a configured engine's name, or its URL")
    p.add_argument("--log-dir", type=Path, metavar="DIR", help="where the signed request log goes")
    p.add_argument("--key-file", type=Path, metavar="FILE", help="the log's HMAC key (0600; created if missing)")
    p.add_argument("--keys-file", type=Path, metavar="FILE", help="clients' API keys, one `ID KEY` a line (0600)")
    p.add_argument("--keys-env", metavar="VAR", help="a variable holding the clients' keys (`ID KEY`, comma-separated)")
    p.add_argument("--drain", type=seconds, metavar="SECONDS", help="how long SIGTERM waits for requests in flight")
    p.add_argument("--capture", type=size, metavar="SIZE",
                   help="keep request bodies in a ring of SIZE (e.g. 64MiB) for replay; off by default")
    p.add_argument("--capture-replies", action="store_true", default=None, help="with --capture: keep replies too")
    p.add_argument("--capture-redact", metavar="FIELDS",
                   help="JSON fields and headers to redact from the capture, comma-separated")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="processes serving the socket (default 1; docs/gateway.md says when more help)")
    p.add_argument("--no-ask-usage", dest="ask_usage", action="store_false", default=None,
                   help="never add stream_options.include_usage to a client's OpenAI stream (docs/gateway.md)")
    p.set_defaults(handler=run)


def gateway_config(args: argparse.Namespace, ctx: Context) -> Any:
    from console.config import GatewayConfig
    from console.errors import ConfigError
    from console.gateway.serve import with_overrides

    if args.name is not None:
        base = ctx.config.gateway(args.name)
        if base is None:
            known = ", ".join(g.name for g in ctx.config.gateways) or "none"
            raise ConfigError(f"no gateway named {args.name!r} in the config (configured: {known})",
                              hint="add a [[gateways]] entry, or give --listen and --upstream")
    else:
        if not args.listen or not args.upstream:
            raise ConfigError("a gateway needs --listen HOST:PORT and --upstream ENGINE (or a configured NAME)",
                              hint="enginedeck gateway --listen 127.0.0.1:8181 --upstream http://127.0.0.1:11434")
        port = args.listen.rpartition(":")[2]
        base = GatewayConfig(name=f"port-{port}", listen=args.listen, upstream=args.upstream)
    return with_overrides(base, listen=args.listen, upstream=args.upstream, log_dir=args.log_dir,
                          key_file=args.key_file, keys_file=args.keys_file, keys_env=args.keys_env,
                          drain_timeout_s=args.drain, capture_bytes=args.capture, capture_replies=args.capture_replies,
                          capture_redact=args.capture_redact, ask_usage=args.ask_usage,
                          workers=args.workers)


async def run(args: argparse.Namespace, ctx: Context) -> int:
    from console.gateway.serve import resolve, serve

    return await serve(resolve(ctx.config, gateway_config(args, ctx)))
