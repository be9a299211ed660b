"""Run a gateway in the foreground: its settings resolved, its socket bound, uvicorn serving the ASGI app.

Why uvicorn (docs/gateway.md): the ASGI server most of the Python ecosystem runs in production, kept up by the
Encode team, with httptools (llhttp, Node's parser) under it; it brings graceful shutdown with a bound
(`timeout_graceful_shutdown`), and nothing else the gateway does not need. The app is a bare ASGI callable
(console/gateway/app.py).

SIGTERM (or Ctrl-C): the socket stops accepting, requests in flight finish within `drain_timeout_s`, then the ones
left are cancelled, and each of those still gets its record (outcome `timeout`); the log is closed last.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.config import Config, EngineConfig, GatewayConfig, is_loopback, split_listen
from console.errors import ConfigError, EngineDeckError
from console.gateway.events import JsonLines, emit
from console.gateway.head import bounded
from console.gateway.keys import ClientKeys

if TYPE_CHECKING:
    from console.gateway.app import Gateway

# Connections and requests at once; beyond it uvicorn answers 503 itself (and no record is written for those): the
# bound on what a flood of clients can make the gateway hold.
MAX_CONCURRENCY = 4096
KIND_RETRY_S = 30.0  # an engine that was down when the gateway started: how often to ask it what it is


@dataclass(frozen=True)
class Settings:
    """A gateway ready to run: where it listens, the engine behind it, where its records go."""

    name: str
    host: str
    port: int
    engine: EngineConfig
    log_dir: Path
    key_file: Path
    keys: ClientKeys
    max_request_bytes: int
    drain_timeout_s: float
    max_head_bytes: int
    head_timeout_s: float
    ask_usage: bool
    log_max_bytes: int
    log_max_age_s: float
    db_path: Path  # the usage ledger's database
    capture_bytes: int = 0
    capture_replies: bool = False
    capture_redact: tuple[str, ...] = ()



def upstream_engine(config: Config, ref: str) -> EngineConfig:
    """A configured engine by name, or an engine at a URL (with the config's deadlines and limits)."""
    engine = config.engine(ref)
    if engine is not None:
        return engine
    if ref.startswith(("http://", "https://")):
        return EngineConfig(name=ref.rstrip("/").split("://", 1)[1], url=ref.rstrip("/"),
                            timeouts=config.timeouts, limits=config.limits)
    raise ConfigError(f"upstream {ref!r} is neither a configured engine nor an http:// or https:// URL",
                      hint="name an [[engines]] entry or give its URL")


def resolve(config: Config, gateway: GatewayConfig) -> Settings:
    where = split_listen(gateway.listen)
    if where is None:
        raise ConfigError(f"gateway {gateway.name!r}: listen must be HOST:PORT, not {gateway.listen!r}")
    host, port = where
    keys = ClientKeys.load(keys_file=gateway.keys_file, keys_env=gateway.keys_env)
    if not is_loopback(host) and not keys:
        raise ConfigError(f"gateway {gateway.name!r} would listen on {gateway.listen} (reachable from other hosts) "
                          "without client keys",
                          hint="listen on 127.0.0.1, or give keys_file / keys_env (--keys-file, --keys-env)")
    log_dir = gateway.log_dir or config.data_dir / "gateway" / gateway.name
    return Settings(name=gateway.name, host=host, port=port, engine=upstream_engine(config, gateway.upstream),
                    log_dir=log_dir, key_file=gateway.key_file or log_dir / "request-log.key", keys=keys,
                    max_request_bytes=gateway.max_request_bytes, drain_timeout_s=gateway.drain_timeout_s,
                    max_head_bytes=gateway.max_head_bytes, head_timeout_s=gateway.head_timeout_s,
                    ask_usage=gateway.ask_usage,
                    log_max_bytes=gateway.log_max_bytes, log_max_age_s=gateway.log_max_age_s,
                    db_path=config.db_path, capture_bytes=gateway.capture_bytes,
                    capture_replies=gateway.capture_replies,
                    capture_redact=tuple(f.strip() for f in gateway.capture_redact.split(",") if f.strip()))


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise EngineDeckError(f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                              hint="pick another port, or stop what holds this one") from None
    sock.setblocking(False)
    return sock


@contextmanager
def _signals_absorbed() -> Iterator[None]:
    """uvicorn raises the signal that stopped it once it is done; the command then ends with its own status."""
    def ignore(signum: int, frame: Any) -> None:
        pass

    previous = {sig: signal.signal(sig, ignore) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _quiet_uvicorn() -> None:
    handler = JsonLines()
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        log = logging.getLogger(name)
        log.handlers = [handler]
        log.propagate = False
        log.setLevel(logging.WARNING)


async def serve(settings: Settings, *, extra_sinks: tuple[Callable[..., None], ...] = ()) -> int:
    import uvicorn

    from console.audit.keys import load_or_create_key
    from console.engines.passthrough import Upstream
    from console.gateway.app import Gateway
    from console.gateway.ledger import Ledger
    from console.gateway.log import RequestLog
    from console.store.db import Store

    key = load_or_create_key(settings.key_file)
    log = RequestLog(settings.log_dir, key, max_bytes=settings.log_max_bytes, max_age_s=settings.log_max_age_s)
    if log.repaired:
        emit("log_repaired", level="warning", file=str(log.path), removed_bytes=log.repaired,
             reason="the last line was cut short (a crash while writing it); removed")
    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    upstream = Upstream(settings.engine)
    store = await Store.open(settings.db_path)
    ledger = Ledger(store.usage, settings.name)

    def write(rec: Any) -> None:
        log.write(rec.entry())

    async def drained() -> None:
        # Requests the drain cut off write their records as their tasks unwind: wait for them (briefly).
        for _ in range(200):
            if not app.in_flight:
                break
            await asyncio.sleep(0.01)
        await ledger.flush()

    capture = None
    if settings.capture_bytes:
        from console.gateway.capture import Capture

        capture = Capture(settings.log_dir / "capture", settings.capture_bytes, replies=settings.capture_replies,
                          redact_fields=settings.capture_redact)
    from console.gateway.live import SOCKET, Live

    live = Live(settings.name, settings.engine.url)
    try:
        live_server: asyncio.Server | None = await live.serve(settings.log_dir / SOCKET)
    except OSError as exc:  # a path too long for a unix socket (108 bytes), a read-only directory
        live_server = None
        emit("live_unavailable", level="warning", socket=str(settings.log_dir / SOCKET), error=str(exc))
    app = Gateway(upstream, keys=settings.keys, max_request_bytes=settings.max_request_bytes,
                  sinks=(write, ledger, live.end, *extra_sinks), on_close=drained, capture=capture,
                  on_start=live.start, on_chunk=live.chunk)
    kind_task: asyncio.Task[None] | None = None
    # Known before the first request when the engine is up: detection is bounded (about 1.5 s at most).
    if settings.ask_usage and not await _learn_kind(app, settings.engine):
        kind_task = asyncio.create_task(_keep_learning_kind(app, settings.engine))
    _quiet_uvicorn()
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, server_header=False,
                            date_header=False, timeout_graceful_shutdown=int(settings.drain_timeout_s + 0.999),
                            ws="none", proxy_headers=False, backlog=2048, limit_concurrency=MAX_CONCURRENCY,
                            http=bounded(settings.max_head_bytes, settings.head_timeout_s))
    server = uvicorn.Server(config)
    emit("listening", gateway=settings.name, listen=f"{settings.host}:{port}", port=port,
         upstream=settings.engine.url, keys=len(settings.keys), log=str(log.path),
         capture=str(capture.directory) if capture is not None else None, live=str(settings.log_dir / SOCKET))
    flusher = asyncio.create_task(ledger.run())
    with _signals_absorbed():
        try:
            await server.serve(sockets=[sock])
        finally:
            flusher.cancel()
            if kind_task is not None:
                kind_task.cancel()
            live.close()
            if live_server is not None:
                live_server.close()
                (settings.log_dir / SOCKET).unlink(missing_ok=True)
            upstream.close()
            await ledger.flush()
            await store.close()
            log.close()
            if capture is not None:
                capture.close()
            sock.close()
    emit("stopped", gateway=settings.name)
    return 0


async def _learn_kind(app: Gateway, engine: EngineConfig) -> bool:
    """Whether the engine's kind is settled (and `app.ask_usage` set from it); False while it cannot be reached."""
    from console.engines.detect import detect
    from console.errors import UnreachableError
    from console.gateway.usage import KINDS

    kind = engine.kind
    if kind == "auto":
        try:
            kind = (await detect(engine.url, cfg=engine)).kind
        except UnreachableError:
            return False
        except EngineDeckError:  # answers, but as no engine enginedeck knows (or refuses): its streams stay as sent
            kind = "unknown"
    app.ask_usage = kind in KINDS
    emit("engine_kind", kind=kind, ask_usage=app.ask_usage)
    return True


async def _keep_learning_kind(app: Gateway, engine: EngineConfig) -> None:
    while True:
        await asyncio.sleep(KIND_RETRY_S)
        if await _learn_kind(app, engine):
            return


def with_overrides(gateway: GatewayConfig, **changes: Any) -> GatewayConfig:
    return replace(gateway, **{k: v for k, v in changes.items() if v is not None})
