"""Findings for a long-running view (the dashboard, `watch`): fed what it already holds at every tick, it keeps
what must be read more rarely (the store, GGUF headers) and each finding's `since`.

    watch = TruthWatch()
    watch.observe(status)                     # every poll answer: loads seen between polls
    findings = watch.check(statuses, config, gpu, owners, processes, store)   # every telemetry tick; cheap

`check` never blocks: the store and the model files are read by tasks it starts on the running loop (the store
at most every STORE_EVERY_S, a model file once), and their answers join the next check.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from console.truth.findings import AskedContext, FindingsLog, Inputs, LoadSeen, ProbeRate, detect
from console.truth.gather import LoadWatch, from_store, keyed_ports, layer_counts

if TYPE_CHECKING:
    from console.config import Config
    from console.engines.poll import EngineStatus
    from console.store.db import Store
    from console.telemetry.gpu import GpuSnapshot
    from console.telemetry.processes import EngineProcess
    from console.truth.findings import Finding

STORE_EVERY_S = 60.0


class TruthWatch:
    def __init__(self) -> None:
        self.loads = LoadWatch()
        self.log = FindingsLog()
        self._stored: tuple[list[LoadSeen], dict[tuple[str, str], AskedContext], dict[tuple[str, str], ProbeRate]]
        self._stored = ([], {}, {})
        self._stored_at = float("-inf")
        self._layers: dict[str, tuple[int, str]] = {}
        self._layers_for: frozenset[str] = frozenset()
        self._tasks: set[asyncio.Task[None]] = set()

    def observe(self, status: EngineStatus) -> None:
        self.loads.observe(status)

    def check(self, statuses: Sequence[EngineStatus], config: Config, gpu: GpuSnapshot | None,
              owners: Mapping[int, str], processes: Sequence[EngineProcess], store: Store | None) -> list[Finding]:
        self._refresh(statuses, processes, store)
        loads, asked, rates = self._stored
        inputs = Inputs(statuses=tuple(statuses), gpu=gpu, processes=tuple(processes), owners=owners,
                        loads=(*loads, *self.loads.seen), asked_contexts=asked, layer_counts=self._layers,
                        probe_rates=rates, keyed_ports=keyed_ports(config), now=time.time())
        return self.log.stamp(detect(inputs))

    def _refresh(self, statuses: Sequence[EngineStatus], processes: Sequence[EngineProcess],
                 store: Store | None) -> None:
        if store is not None and time.monotonic() - self._stored_at > STORE_EVERY_S:
            self._stored_at = time.monotonic()
            self._start(self._read_store(store))
        llamas = frozenset(s.name for s in statuses if s.kind == "llamacpp")
        if llamas and llamas != self._layers_for:
            self._layers_for = llamas
            self._start(self._read_layers(list(statuses), list(processes)))

    def _start(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)  # held until done, so it is not collected half way
        task.add_done_callback(self._tasks.discard)

    async def _read_store(self, store: Store) -> None:
        from console.errors import StoreError

        # The history cannot be read now: the findings that need it wait for the next try.
        with contextlib.suppress(StoreError):
            self._stored = await from_store(store)

    async def _read_layers(self, statuses: list[EngineStatus], processes: list[EngineProcess]) -> None:
        self._layers = await asyncio.to_thread(layer_counts, statuses, processes)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
