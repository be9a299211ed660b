"""Run a gateway in the foreground: its settings resolved from the config, its sinks opened, its socket bound, and
uvicorn serving it in this process (console/gateway/server.py) or in its workers (console/gateway/workers.py).
The log is closed last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from console.config import Config, EngineConfig, GatewayConfig, is_loopback, split_listen
from console.errors import ConfigError
from console.gateway.events import emit
from console.gateway.keys import ClientKeys
from console.gateway.server import Settings, bind, learn_kind, serve_on, server_for, until_idle
from console.gateway.sinks import Sinks


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
    if gateway.workers > 1 and gateway.capture_bytes:
        raise ConfigError(f"gateway {gateway.name!r}: capture needs workers = 1 (one process writes the ring)",
                          hint="drop --capture, or run the gateway with --workers 1")
    log_dir = gateway.log_dir or config.data_dir / "gateway" / gateway.name
    return Settings(name=gateway.name, host=host, port=port, engine=upstream_engine(config, gateway.upstream),
                    log_dir=log_dir, key_file=gateway.key_file or log_dir / "request-log.key", keys=keys,
                    max_request_bytes=gateway.max_request_bytes, drain_timeout_s=gateway.drain_timeout_s,
                    max_head_bytes=gateway.max_head_bytes, head_timeout_s=gateway.head_timeout_s,
                    ask_usage=gateway.ask_usage, workers=gateway.workers,
                    log_max_bytes=gateway.log_max_bytes, log_max_age_s=gateway.log_max_age_s,
                    db_path=config.db_path, capture_bytes=gateway.capture_bytes,
                    capture_replies=gateway.capture_replies,
                    capture_redact=tuple(f.strip() for f in gateway.capture_redact.split(",") if f.strip()))


def listening(settings: Settings, port: int, sinks: Sinks) -> None:
    emit("listening", gateway=settings.name, listen=f"{settings.host}:{port}", port=port,
         upstream=settings.engine.url, keys=len(settings.keys), log=str(sinks.log.path),
         capture=str(sinks.capture.directory) if sinks.capture is not None else None, live=str(sinks.live_path),
         workers=settings.workers)


async def serve(settings: Settings, *, extra_sinks: tuple[Callable[..., None], ...] = ()) -> int:
    from console.engines.passthrough import Upstream
    from console.gateway.app import Gateway

    sinks = Sinks(settings, extra_sinks)
    await sinks.open()
    workers = settings.workers > 1
    try:
        sock = bind(settings.host, settings.port, shared=workers, listen=not workers)
    except BaseException:
        await sinks.close()
        raise
    port = sock.getsockname()[1]
    if workers:
        from console.gateway.workers import supervise

        try:
            return await supervise(replace(settings, port=port), sinks,
                                   on_ready=lambda: listening(settings, port, sinks))
        finally:
            await sinks.close()
            sock.close()
    upstream = Upstream(settings.engine)

    async def drained() -> None:
        await until_idle(app)
        await sinks.ledger.flush()

    app = Gateway(upstream, keys=settings.keys, max_request_bytes=settings.max_request_bytes,
                  sinks=sinks.records, on_close=drained, capture=sinks.capture,
                  on_start=sinks.live.start, on_chunk=sinks.live.chunk)
    kind_task = await learn_kind(app, settings)
    server = server_for(app, settings)
    listening(settings, port, sinks)
    try:
        await serve_on(server, sock)
    finally:
        if kind_task is not None:
            kind_task.cancel()
        upstream.close()
        await sinks.close()
        sock.close()
    emit("stopped", gateway=settings.name)
    return 0


def with_overrides(gateway: GatewayConfig, **changes: Any) -> GatewayConfig:
    return replace(gateway, **{k: v for k, v in changes.items() if v is not None})
