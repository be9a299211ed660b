"""What every process that serves a gateway's port needs: the gateway's settings, its socket, and uvicorn running
the ASGI app with the gateway's bounds. Used by a lone gateway (console/gateway/serve.py) and by each of a
gateway's workers (console/gateway/workers.py).

Why uvicorn (docs/gateway.md): the ASGI server most of the Python ecosystem runs in production, kept up by the
Encode team, with httptools (llhttp, Node's parser) under it; it brings graceful shutdown with a bound
(`timeout_graceful_shutdown`), and nothing else the gateway does not need. The app is a bare ASGI callable
(console/gateway/app.py).

SIGTERM (or Ctrl-C): the socket stops accepting, requests in flight finish within `drain_timeout_s`, then the ones
left are cancelled, and each of those still gets its record (outcome `timeout`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.config import EngineConfig
from console.errors import EngineDeckError
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
    workers: int
    log_max_bytes: int
    log_max_age_s: float
    db_path: Path  # the usage ledger's database
    capture_bytes: int = 0
    capture_replies: bool = False
    capture_redact: tuple[str, ...] = ()



def bind(host: str, port: int, *, shared: bool = False, listen: bool = True) -> socket.socket:
    """The gateway's socket. `shared`: SO_REUSEPORT, so each worker listens on a socket of its own at one port and
    the kernel spreads new connections over them (only processes of the same user may join); the supervisor binds
    one without listening, to hold the port and learn it (console/gateway/workers.py)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
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


def server_for(app: Any, settings: Settings) -> Any:
    """uvicorn serving `app` with the gateway's bounds (a uvicorn.Server; `await serve_on(server, sock)`)."""
    import uvicorn

    _quiet_uvicorn()
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, server_header=False,
                            date_header=False, timeout_graceful_shutdown=int(settings.drain_timeout_s + 0.999),
                            ws="none", proxy_headers=False, backlog=2048, limit_concurrency=MAX_CONCURRENCY,
                            http=bounded(settings.max_head_bytes, settings.head_timeout_s))
    return uvicorn.Server(config)


async def until_idle(app: Gateway) -> None:
    """At the drain's end: requests it cut off write their records as their tasks unwind; wait for them (briefly)."""
    for _ in range(200):
        if not app.in_flight:
            break
        await asyncio.sleep(0.01)


async def serve_on(server: Any, sock: socket.socket) -> None:
    with _signals_absorbed():
        await server.serve(sockets=[sock])


async def learn_kind(app: Gateway, settings: Settings) -> asyncio.Task[None] | None:
    """Turn `app.ask_usage` on when the engine's kind takes the question; known before the first request when the
    engine is up (detection is bounded: about 1.5 s at most), else asked again in the background (the task)."""
    if settings.ask_usage and not await _learn_kind(app, settings.engine):
        return asyncio.create_task(_keep_learning_kind(app, settings.engine))
    return None


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
