"""Where a gateway's records go: one set per gateway, in the one process that owns them (a lone gateway, or the
supervisor of a gateway's workers)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from console.gateway.events import emit
from console.gateway.server import Settings


class Sinks:
    """Where records go, opened before the socket serves and closed after it drained: the signed log, the usage
    ledger, the live socket, the capture ring, and `extra` sinks. One set per gateway, in the process that owns
    them: the only one, or the supervisor of its workers (console/gateway/workers.py)."""

    def __init__(self, settings: Settings, extra: tuple[Callable[..., None], ...] = ()) -> None:
        self.settings = settings
        self.extra = extra

    async def open(self) -> None:
        from console.audit.keys import load_or_create_key
        from console.gateway.ledger import Ledger
        from console.gateway.live import SOCKET, Live
        from console.gateway.log import RequestLog
        from console.store.db import Store

        settings = self.settings
        key = load_or_create_key(settings.key_file)
        self.log = RequestLog(settings.log_dir, key, max_bytes=settings.log_max_bytes,
                              max_age_s=settings.log_max_age_s)
        if self.log.repaired:
            emit("log_repaired", level="warning", file=str(self.log.path), removed_bytes=self.log.repaired,
                 reason="the last line was cut short (a crash while writing it); removed")
        self.store = await Store.open(settings.db_path)
        self.ledger = Ledger(self.store.usage, settings.name)
        self.capture = None
        if settings.capture_bytes:
            from console.gateway.capture import Capture

            self.capture = Capture(settings.log_dir / "capture", settings.capture_bytes,
                                   replies=settings.capture_replies, redact_fields=settings.capture_redact)
        self.live = Live(settings.name, settings.engine.url)
        self.live_path = settings.log_dir / SOCKET
        try:
            self.live_server: asyncio.Server | None = await self.live.serve(self.live_path)
        except OSError as exc:  # a path too long for a unix socket (108 bytes), a read-only directory
            self.live_server = None
            emit("live_unavailable", level="warning", socket=str(self.live_path), error=str(exc))
        self.flusher = asyncio.create_task(self.ledger.run())

    def write(self, rec: Any) -> None:
        self.log.write(rec.entry())

    @property
    def records(self) -> tuple[Callable[..., None], ...]:
        """Every sink a finished request's record goes to."""
        return (self.write, self.ledger, self.live.end, *self.extra)

    async def close(self) -> None:
        self.flusher.cancel()
        self.live.close()
        if self.live_server is not None:
            self.live_server.close()
            self.live_path.unlink(missing_ok=True)
        await self.ledger.flush()
        await self.store.close()
        self.log.close()
        if self.capture is not None:
            self.capture.close()
