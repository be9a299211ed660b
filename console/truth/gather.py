"""Collect what the detectors read: the engines' polls, NVML, the engine processes, the store.

`collect` is async (the store) and runs the blocking parts (NVML, /proc, GGUF headers) in threads. The
dashboard, which already has polls, a GPU snapshot and the process list, passes them in; `enginedeck findings`
and `doctor` let it read them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from console.truth.args import parse_args
from console.truth.findings import AskedContext, Inputs, LoadSeen, ProbeRate

if TYPE_CHECKING:
    from console.config import Config
    from console.engines.poll import EngineStatus
    from console.store.db import Store
    from console.telemetry.gpu import GpuSnapshot
    from console.telemetry.processes import EngineProcess

MODEL_EVENTS_READ = 200  # the newest model events looked at for reload loops


def keyed_ports(config: Config) -> frozenset[int]:
    """Ports of the configured engines that have an API key set."""
    from console.telemetry.processes import ports_by_engine

    return frozenset(ports_by_engine({e.name: e.url for e in config.engines if e.api_key_env or e.api_key_file}))


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def layer_counts(statuses: Sequence[EngineStatus], processes: Sequence[EngineProcess]) -> dict[str, tuple[int, str]]:
    """The layer count of each llama.cpp engine's model file on this host. Blocking (reads GGUF headers)."""
    from console.fit.gguf import GgufError, read_header

    paths: set[str] = set()
    for s in statuses:
        if s.kind != "llamacpp":
            continue
        path = s.info.extra.get("model_path") if s.info else None
        if isinstance(path, str):
            paths.add(path)
        for p in processes:
            if p.engine == s.name and (arg := parse_args(p.cmdline).model_path):
                paths.add(arg)
    counts: dict[str, tuple[int, str]] = {}
    for path in paths:
        if not os.path.isfile(path):
            continue
        try:
            blocks = read_header(path).get("block_count")  # bounded: a hostile header costs a bounded read
        except GgufError:
            continue
        if isinstance(blocks, int) and not isinstance(blocks, bool):
            counts[path] = (blocks, f"GGUF block_count + output layer of {path}")
    return counts


def gpu_owners(gpu: GpuSnapshot, processes: Sequence[EngineProcess]) -> dict[int, str]:
    """GPU process pid -> the engine whose process tree holds it. Blocking (reads /proc)."""
    from console.telemetry.processes import owner_of

    owners: dict[int, str] = {}
    for g in gpu.gpus:
        for p in g.processes:
            owner = owner_of(p.pid, processes)
            if owner is not None and owner.engine:
                owners[p.pid] = owner.engine
    return owners


async def from_store(store: Store | None) -> tuple[list[LoadSeen], dict[tuple[str, str], AskedContext],
                                                  dict[tuple[str, str], ProbeRate]]:
    """Loads done through enginedeck, the contexts chat turns asked for, and each model's last probe at
    concurrency 1."""
    if store is None:
        return [], {}, {}
    loads = [LoadSeen(e.ts, e.engine, e.model, "model events")
             for e in await store.model_events.recent(limit=MODEL_EVENTS_READ)
             if e.ok and e.model and e.op in ("load", "swap")]
    asked = {key: AskedContext(tokens, f"num_ctx of the chat turn at {_when(ts)} (enginedeck history)")
             for key, (tokens, ts) in (await store.sessions.asked_contexts()).items()}
    rates: dict[tuple[str, str], ProbeRate] = {}
    for run in await store.probes.recent(limit=50):
        level = next((lv for lv in run.levels if lv.get("concurrency") == 1), None)
        decode = level.get("decode_tok_s") if level else None
        p50 = decode.get("p50") if isinstance(decode, Mapping) else None
        if isinstance(p50, int | float) and (run.engine, run.model) not in rates:
            rates[(run.engine, run.model)] = ProbeRate(
                float(p50), f"probe run #{run.id} ({_when(run.started_at)}), concurrency 1, median decode")
    return loads, asked, rates


async def collect(statuses: Sequence[EngineStatus], config: Config, *, store: Store | None = None,
                  gpu: GpuSnapshot | None = None, processes: Sequence[EngineProcess] | None = None,
                  polled_loads: Sequence[LoadSeen] = ()) -> Inputs:
    """Everything the detectors read. What is not passed in is read here (NVML and /proc in a thread)."""
    from console.telemetry.processes import engine_processes, ports_by_engine

    if gpu is None:
        gpu = await asyncio.to_thread(_sample_gpu)
    if processes is None:
        ports = ports_by_engine({s.name: s.url for s in statuses})
        processes = await asyncio.to_thread(engine_processes, ports)
    procs = list(processes)
    owners = await asyncio.to_thread(gpu_owners, gpu, procs) if gpu.available else {}
    layers = await asyncio.to_thread(layer_counts, statuses, procs)
    loads, asked, rates = await from_store(store)
    return Inputs(statuses=tuple(statuses), gpu=gpu, processes=tuple(procs), owners=owners,
                  loads=(*loads, *polled_loads), asked_contexts=asked, layer_counts=layers, probe_rates=rates,
                  keyed_ports=keyed_ports(config), now=time.time())


def _sample_gpu() -> GpuSnapshot:
    from console.telemetry.gpu import GpuMonitor

    monitor = GpuMonitor()
    try:
        return monitor.sample()
    finally:
        monitor.close()


class LoadWatch:
    """Loads seen between polls: a model that was not in an engine's loaded list and is now. Catches the loads
    enginedeck did not do (Ollama loading on demand, evicting and loading again). Bounded: MAX_SEEN newest."""

    MAX_SEEN = 500

    def __init__(self) -> None:
        self._loaded: dict[str, frozenset[str]] = {}
        self.seen: list[LoadSeen] = []

    def observe(self, status: EngineStatus) -> None:
        if status.info is None or (status.error and status.error.startswith("loaded models:")):
            return  # not read this time: no news either way
        now = frozenset(lm.name for lm in status.loaded)
        before = self._loaded.get(status.name)
        self._loaded[status.name] = now
        if before is None:
            return  # the first look says what is loaded, not what was loaded just now
        for model in sorted(now - before):
            self.seen.append(LoadSeen(status.polled_at, status.name, model, "polls"))
        del self.seen[:-self.MAX_SEEN]
