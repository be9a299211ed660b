"""Services for one run of enginedeck, built from the command line and the config, closed at the end.

The one container of a process's services (registry, store, audit trail, actions): the headless commands and the
TUI both get theirs from here, so both behave the same way, and neither imports the other. Each service is built
on first use, so opening the TUI or running `enginedeck ps` pays only for what it touches.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from console.config import Config, Timeouts, load_config

if TYPE_CHECKING:
    from console.actions import Actions
    from console.audit.trail import AuditTrail
    from console.engines.base import Engine
    from console.engines.registry import Registry
    from console.store.db import Store


def with_flags(config: Config, args: argparse.Namespace) -> Config:
    """The last layer of the config: each flag given wins over the file and the environment."""
    changes: dict[str, Any] = {}
    if getattr(args, "no_discover", False):
        changes["discover"] = False
    if getattr(args, "read_only", False):
        changes["read_only"] = True
    ui = {name: value for name, value in (("theme", getattr(args, "theme", None)),
                                          ("ascii", getattr(args, "ascii", None))) if value is not None}
    if ui:
        changes["ui"] = replace(config.ui, **ui)
    timeout = getattr(args, "timeout", None)
    if timeout is not None:
        # Each engine keeps its own connect and load deadlines; connecting never takes longer than --timeout.
        changes["timeouts"] = _within(timeout, config.timeouts)
        changes["engines"] = tuple(replace(e, timeouts=_within(timeout, e.timeouts)) for e in config.engines)
    return replace(config, **changes) if changes else config


def _within(seconds: float, timeouts: Timeouts) -> Timeouts:
    return Timeouts.within(seconds, connect_s=timeouts.connect_s, load_s=timeouts.load_s)


class Context:
    def __init__(self, config: Config, *, engine_urls: tuple[str, ...] = (), theme: str | None = None,
                 ascii: bool | None = None) -> None:
        self.config = config
        self.engine_urls = engine_urls
        self.theme = theme
        self.ascii = ascii
        self._registry: Registry | None = None
        self._store: Store | None = None
        self._audit: AuditTrail | None = None
        self._store_lock = asyncio.Lock()  # the TUI may ask for the store from two workers at once

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Context:
        """The config (defaults < file < environment) with the command line's flags over it."""
        return cls(with_flags(load_config(getattr(args, "config", None)), args),
                   engine_urls=tuple(getattr(args, "engine_urls", None) or ()))

    async def run(self, coro: Coroutine[Any, Any, int]) -> int:
        try:
            return await coro
        finally:
            await self.aclose()

    def registry(self) -> Registry:
        if self._registry is None:
            from console.engines.registry import Registry

            self._registry = Registry(self.config, extra_urls=self.engine_urls)
        return self._registry

    async def engine(self, ref: str) -> Engine:
        """A configured engine name or a URL (kind detected)."""
        return await self.registry().resolve(ref)

    async def store(self) -> Store:
        async with self._store_lock:
            if self._store is None:
                from console.store.db import Store

                self._store = await Store.open(self.config.db_path)
        return self._store

    async def audit(self) -> AuditTrail:
        if self._audit is None:
            from console.audit.trail import AuditTrail

            self._audit = AuditTrail.for_config(self.config, (await self.store()).audit)
        return self._audit

    async def actions(self) -> Actions:
        from console.actions import Actions
        from console.engine_lock import LOCKS_DIR

        return Actions(store=await self.store(), audit=await self.audit(), read_only=self.config.read_only,
                       lock_dir=self.config.data_dir / LOCKS_DIR)

    async def aclose(self) -> None:
        if self._registry is not None:
            await self._registry.aclose()
            self._registry = None
        if self._store is not None:
            await self._store.close()
            self._store = None
