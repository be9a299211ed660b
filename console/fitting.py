"""Will it fit, with this box's own records: the answer before a load, and the record after one.

`will_it_fit` reads the model's shape where the engine keeps it (console/fit/plan.py), fits the overhead term from
the store's load records of that engine kind (console/fit/calibrate.py), and judges the prediction against the free
VRAM (NVML) or the available RAM. `record_load` runs after every successful load (console/actions.py): it measures
what the model took (Ollama's own figure; else NVML's memory of the engine's process, attributed to the model; else
the resident set on a CPU-only engine) and stores it beside the prediction for the same setting. NVML and /proc
block, so both run their sampling in a thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

from console.engines.base import LoadedModel
from console.errors import EngineDeckError
from console.fit.attribute import assign, attribute, names_in
from console.fit.calibrate import Overhead, default_overhead, fit_overhead
from console.fit.measure import Measured, gpu_use, local_url, rss_of
from console.fit.plan import Answer, answer, model_setting, with_overrides
from console.fit.predict import predict
from console.telemetry.gpu import GpuMonitor, GpuSnapshot
from console.telemetry.processes import EngineProcess, engine_processes, ports_by_engine

if TYPE_CHECKING:
    from console.engines.base import Engine
    from console.store.db import Store

OLLAMA_SOURCE = "ollama /api/ps"


@dataclass(frozen=True)
class Memory:
    """What is free now: the GPU snapshot (None: not sampled) and the host's available RAM."""

    gpu: GpuSnapshot
    host_available: int


def _sample_memory() -> Memory:
    monitor = GpuMonitor()
    try:
        gpu = monitor.sample()
    finally:
        monitor.close()
    return Memory(gpu, psutil.virtual_memory().available)


async def overhead_for(store: Store | None, engine_kind: str, memory: str) -> Overhead:
    """The overhead fitted from the store's newest records of this kind; the default without a store."""
    if store is None:
        return default_overhead(engine_kind, memory)
    try:
        rows = await store.fit_records.recent(engine_kind=engine_kind, memory=memory)
    except EngineDeckError:
        return default_overhead(engine_kind, memory)
    return fit_overhead(engine_kind, memory, rows)


async def will_it_fit(engine: Engine, model: str, store: Store | None, *, context: int | None = None,
                      slots: int | None = None, cache: str | None = None, device: str | None = None) -> Answer:
    """The answer for loading `model` on `engine`; raises CannotPredict (one line) when the model cannot be read.

    `device` "gpu" or "cpu" says where the model will live; by default the GPU when NVML sees one."""
    shape, setting = await model_setting(engine, model)
    setting = with_overrides(setting, context=context, slots=slots, cache=cache)
    now = await asyncio.to_thread(_sample_memory)
    memory = {"gpu": "gpu", "cpu": "host"}.get(device or "", "gpu" if now.gpu.available else "host")
    overhead = await overhead_for(store, engine.kind, memory)
    free = now.gpu.free_vram if memory == "gpu" else now.host_available
    return answer(engine, model, shape, setting, overhead, free=free, host_available=now.host_available)


def _measure_local(engine: Engine, model: str, loaded: list[LoadedModel]) -> Measured | None:
    """NVML's memory attributed to `model`, else the RSS of the process that serves it. Blocking."""
    processes = engine_processes(ports_by_engine({engine.name: engine.base_url}))
    mine = [p for p in processes if p.engine == engine.name]
    if not mine:
        return None
    on_gpu = gpu_use(engine.name, _sample_memory().gpu, processes)
    for i, pids in assign(loaded, on_gpu).items():
        if loaded[i].name == model:
            return Measured(sum(on_gpu[p] for p in pids), "gpu", pids)
    if on_gpu:
        return None  # on the GPU, but not to be told apart from the engine's other models
    return _host_measure(model, mine, len(loaded))


def _host_measure(model: str, mine: list[EngineProcess], n_loaded: int) -> Measured | None:
    """The resident set of the process whose command line names `model` (a router's child); else, when the engine
    serves one model, of its whole process tree."""
    tree: list[psutil.Process] = []
    for p in mine:
        try:
            root = psutil.Process(p.pid)
            tree += [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    named = []
    for proc in tree:
        try:
            if model in names_in(proc.cmdline()):
                named.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    pids = sorted(set(named)) if named else sorted({proc.pid for proc in tree}) if n_loaded <= 1 else []
    return Measured(rss_of(pids), "host", tuple(pids)) if pids else None


async def measure_model(engine: Engine, model: str) -> Measured | None:
    """What `model` holds on `engine` now; None when it cannot be told (remote engine, split across GPU and CPU)."""
    loaded = await engine.loaded_models()
    row = next((m for m in loaded if m.name == model or m.name == f"{model}:latest"), None)
    if row is None:
        return None
    if row.size_vram is not None and row.size:  # Ollama says what each model holds, and where
        if row.size_vram not in (0, row.size):
            return None  # split between GPU and CPU: neither figure is the whole need
        return Measured(row.size, "gpu" if row.size_vram else "host", ())
    if not local_url(engine.base_url):
        return None
    return await asyncio.to_thread(_measure_local, engine, model, loaded)


async def record_load(engine: Engine, model: str, store: Store) -> str | None:
    """After a load: measure, predict for the same setting and memory, store both. Returns a warning, or None.

    A model whose shape or memory cannot be read is not recorded (there is nothing to compare), silently: the
    load itself succeeded and its record is the model event."""
    try:
        measured = await measure_model(engine, model)
        if measured is None:
            return None
        shape, setting = await model_setting(engine, model)
    except EngineDeckError:
        return None
    overhead = await overhead_for(store, engine.kind, measured.memory)
    p = predict(shape, engine_kind=engine.kind, context=setting.context, slots=setting.slots,
                memory=measured.memory, overhead=overhead.bytes, overhead_source=overhead.source,
                cache_k=setting.cache_k, cache_v=setting.cache_v)
    source = measured.source if measured.pids else OLLAMA_SOURCE
    try:
        await store.fit_records.record(
            engine=engine.name, engine_kind=engine.kind, model=model, memory=measured.memory,
            context=setting.context, slots=setting.slots, predicted_model=p.model_part, overhead=p.overhead,
            measured=measured.bytes, measured_source=source,
            detail={"weights": p.weights, "kv": p.kv, "output": p.output, "shape": shape.source,
                    "overhead_source": p.overhead_source, "cache": [setting.cache_k, setting.cache_v]})
    except EngineDeckError as exc:
        return f"the fit record of {model} was not stored: {exc}"
    return None


@dataclass(frozen=True)
class GpuOwners:
    """The GPU memory of each local engine's processes, and those processes' command lines: what attributing
    VRAM to models needs, sampled in one go off the event loop (NVML and /proc block)."""

    by_engine: dict[str, dict[int, int]]
    cmdlines: dict[int, list[str]]


def gpu_owners(urls: dict[str, str], gpu: GpuSnapshot | None = None,
               processes: list[EngineProcess] | None = None) -> GpuOwners:
    """Blocking. `urls` is engine name -> URL; engines not on loopback are left out. A GPU snapshot or a process
    scan the caller already has is used instead of a new one."""
    local = {name: url for name, url in urls.items() if local_url(url)}
    gpu = gpu if gpu is not None else (_sample_memory().gpu if local else GpuSnapshot(available=False))
    if not local or not gpu.available:
        return GpuOwners({}, {})
    if processes is None:
        processes = engine_processes(ports_by_engine(local))
    by_engine = {name: on_gpu for name in local if (on_gpu := gpu_use(name, gpu, processes))}
    cmdlines: dict[int, list[str]] = {}
    for on_gpu in by_engine.values():
        for pid in on_gpu:
            try:
                cmdlines[pid] = psutil.Process(pid).cmdline()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                cmdlines[pid] = []
    return GpuOwners(by_engine, cmdlines)


def attributed(engine: str, loaded: list[LoadedModel], owners: GpuOwners) -> list[LoadedModel]:
    """`loaded` with each model's VRAM and its source, from what `gpu_owners` sampled (pure: no NVML, no /proc)."""
    return attribute(loaded, owners.by_engine.get(engine, {}), cmdlines=owners.cmdlines)


async def attribute_rows(rows: list[tuple[Engine, LoadedModel]]) -> list[tuple[Engine, LoadedModel]]:
    """`enginedeck ps`: every loaded model with its VRAM's source; NVML's per-process memory where the engine
    does not say (console/fit/attribute.py)."""
    urls = {e.name: e.base_url for e, m in rows if m.size_vram is None}
    owners = await asyncio.to_thread(gpu_owners, urls) if urls else GpuOwners({}, {})
    by_engine: dict[str, list[LoadedModel]] = {}
    engines: dict[str, Engine] = {}
    for e, m in rows:
        by_engine.setdefault(e.name, []).append(m)
        engines[e.name] = e
    out: list[tuple[Engine, LoadedModel]] = []
    for name, models in by_engine.items():
        out.extend((engines[name], m) for m in attributed(name, models, owners))
    return out
