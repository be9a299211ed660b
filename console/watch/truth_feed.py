"""The findings of console/truth for the collector (`Collector(findings=TruthFindings(...))`): the exporter counts
them, `watch`'s `finding` rules judge them, the fleet shows them.

They are judged over the collector's previous collection (its engines and GPU sample, handed over by
`Collector` through `seen`), so a scrape never polls an engine twice; a finding therefore shows one collection
after the figures that make it. The engine processes are scanned at most every PROCESS_SCAN_EVERY_S.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from console.truth.watch import TruthWatch

if TYPE_CHECKING:
    from console.config import Config
    from console.store.db import Store
    from console.telemetry.processes import EngineProcess
    from console.truth.findings import Finding
    from console.watch.collect import Snapshot

PROCESS_SCAN_EVERY_S = 60.0


class TruthFindings:
    def __init__(self, config: Config, store: Callable[[], Awaitable[Store]] | None = None) -> None:
        self._config = config
        self._open_store = store
        self._truth = TruthWatch()
        self._last: Snapshot | None = None
        self._processes: list[EngineProcess] = []
        self._scanned: tuple[float, frozenset[tuple[str, str]]] | None = None

    def seen(self, snapshot: Snapshot) -> None:
        """The collection just made: the next `findings()` judges it."""
        self._last = snapshot
        for status in snapshot.engines:
            self._truth.observe(status)

    async def findings(self) -> Sequence[Finding]:
        from console.errors import StoreError
        from console.truth.gather import gpu_owners

        snap = self._last
        if snap is None:
            return []
        processes = await self._scan(snap)
        owners = await asyncio.to_thread(gpu_owners, snap.gpus, processes) if snap.gpus and snap.gpus.available \
            else {}
        store = None
        if self._open_store is not None:
            try:
                store = await self._open_store()
            except StoreError:
                store = None  # the history-based findings wait until it opens
        return self._truth.check(snap.engines, self._config, snap.gpus, owners, processes, store)

    async def _scan(self, snap: Snapshot) -> list[EngineProcess]:
        from console.telemetry.processes import engine_processes, ports_by_engine

        urls = frozenset((s.name, s.url) for s in snap.engines)
        now = time.monotonic()
        if self._scanned is None or self._scanned[1] != urls or now - self._scanned[0] > PROCESS_SCAN_EVERY_S:
            self._processes = await asyncio.to_thread(engine_processes, ports_by_engine(dict(urls)))
            self._scanned = (now, urls)
        return self._processes
