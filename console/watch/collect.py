"""One collection of what enginedeck knows about this box, bounded in time: the exporter serves it on each
scrape, `watch` judges its rules over it, and the fleet view reads it back through Prometheus.

A `Snapshot` holds, each part read concurrently under one deadline:
- engines: one bounded poll each (`console.engines.poll.poll_engine`: health, latency, loaded models, /metrics);
- pressure per engine: `pressure_of(status)`, today from the engine's /metrics (running, waiting, KV-cache use);
- GPUs: one NVML sample (`console.telemetry.gpu.GpuMonitor`, in a thread);
- probe results: the newest finished probe run per engine and model, from the store;
- findings and gateway traffic: hooks (`FindingsSource`, `TrafficSource`), empty until something supplies them.

A part that misses the deadline is left out of that snapshot and named in `late`; a slow engine reads as down
with "no answer within N s", never as a scrape that hangs. Nothing here raises for an engine's failure.

Where the pressure and findings of issue 15 plug in: `pressure_of` (one function: replace its body with the
engines' pressure reader, keeping the `Pressure` fields, and add fields there for slots and prompt-cache hits),
and a `FindingsSource` passed to `Collector(findings=...)` (anything with `async def findings()` returning objects
that have `kind`, `engine` and `since`); the gateway's counters come through `Collector(traffic=...)`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol, TypeVar

from console.engines.poll import EngineStatus, poll_engine
from console.errors import EngineDeckError
from console.fitting import attributed, gpu_owners

if TYPE_CHECKING:
    from console.engines.base import Engine
    from console.engines.pressure import InFlight
    from console.engines.registry import Registry
    from console.store.db import Store
    from console.telemetry.gpu import GpuMonitor, GpuSample, GpuSnapshot

T = TypeVar("T")

# What one collection may take, end to end; the exporter's default scrape deadline (Prometheus's own scrape
# timeout defaults to 10 s, so an answer within 4 s always arrives).
DEFAULT_DEADLINE_S = 4.0
# Each engine's poll gets this share of the deadline, so its own error ("no answer within ...") arrives in time.
ENGINE_SHARE = 0.8
# Probe results change when a probe finishes: read the store at most this often.
PROBES_MAX_AGE_S = 60.0
PROBE_RUNS_READ = 200  # the newest runs read for the newest result per engine and model


@dataclass(frozen=True)
class Pressure:
    """How loaded an engine is now. None: the engine does not say (or was not asked)."""

    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None  # 0..1
    slots_busy: float | None = None
    slots_total: float | None = None
    prompt_cache_hit_ratio: float | None = None  # 0..1, since the engine started


def pressure_of(status: EngineStatus, in_flight: InFlight | None = None) -> Pressure:
    """The engine's pressure from its last poll, as console/engines/pressure.py reads it (the figures and names of
    `ps --json` and the dashboard; a figure the engine does not give is None here, with its reason there), with
    a gateway's count of requests in flight where the engine counts none."""
    from console.engines.pressure import pressure_of as figures

    p = figures(status, in_flight)

    def ratio(name: str) -> float | None:
        value = p.value(name)
        return None if value is None else value / 100

    return Pressure(running=p.value("running"), waiting=p.value("waiting"), kv_cache_usage=ratio("kv_cache_pct"),
                    slots_busy=p.value("slots_busy"), slots_total=p.value("slots_total"),
                    prompt_cache_hit_ratio=ratio("prompt_cache_hit_pct"))


def gpu_energy_joules(sample: GpuSample) -> float | None:
    """A GPU's total-energy counter in joules since the driver loaded (NVML nvmlDeviceGetTotalEnergyConsumption);
    None where the GPU has none."""
    return None if sample.energy_mj is None else sample.energy_mj / 1000


class Finding(Protocol):
    """What the exporter and the rules need of a finding (issue 15's findings satisfy it)."""

    @property
    def kind(self) -> str: ...

    @property
    def engine(self) -> str | None: ...

    @property
    def since(self) -> float | None: ...


class FindingsSource(Protocol):
    async def findings(self) -> Sequence[Finding]: ...


@dataclass(frozen=True)
class Traffic:
    """A gateway's counters for one engine and model since the gateway started."""

    engine: str
    model: str
    requests: int
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    ttft_p90_s: float | None = None  # over the gateway's recent window


class TrafficSource(Protocol):
    """Gateways' counters. A source that also has `in_flight` (a mapping of engine name to `InFlight`, from the
    same read) gives the running/waiting of engines that count none themselves (console/gateway_feed.py)."""

    async def traffic(self) -> Sequence[Traffic]: ...


@dataclass(frozen=True)
class ProbeResult:
    engine: str
    model: str
    finished_at: float
    max_usable_concurrency: int | None
    knee: int | None


@dataclass(frozen=True)
class Snapshot:
    taken_at: float
    engines: tuple[EngineStatus, ...] = ()
    gpus: GpuSnapshot | None = None  # None: not sampled (no monitor, or late)
    probes: tuple[ProbeResult, ...] = ()
    findings: tuple[Finding, ...] = ()
    traffic: tuple[Traffic, ...] = ()
    late: tuple[str, ...] = ()  # parts that missed the deadline: "engines", "gpu", "probes", ...
    errors: tuple[str, ...] = ()  # parts that failed, in words
    duration_s: float = 0.0
    pressure: dict[str, Pressure] = field(default_factory=dict)  # by engine name


class Collector:
    """Collects a `Snapshot` on demand. Concurrent callers share the collection in flight (a scrape storm costs
    one collection). Engines come from `registry`; the store is opened on first use by `store`."""

    def __init__(self, registry: Registry | None, *, gpu: GpuMonitor | None = None,
                 store: Callable[[], Awaitable[Store]] | None = None, deadline_s: float = DEFAULT_DEADLINE_S,
                 findings: FindingsSource | None = None, traffic: TrafficSource | None = None) -> None:
        self.registry = registry
        self.gpu = gpu
        self.store = store
        self.deadline_s = deadline_s
        self.findings = findings
        self.traffic = traffic
        self._previous: dict[str, EngineStatus] = {}
        self._probes: tuple[float, tuple[ProbeResult, ...]] | None = None
        self._gpu_thread: asyncio.Future[GpuSnapshot] | None = None  # an NVML call is never started twice
        self._in_flight: asyncio.Task[Snapshot] | None = None

    async def collect(self) -> Snapshot:
        if self._in_flight is None or self._in_flight.done():
            self._in_flight = asyncio.create_task(self._collect(), name="watch collect")
        return await asyncio.shield(self._in_flight)

    async def _collect(self) -> Snapshot:
        started = time.perf_counter()
        engines = asyncio.create_task(self._engines())
        gpu = asyncio.create_task(self._gpu()) if self.gpu is not None else None
        probes = asyncio.create_task(self._probe_results()) if self.store is not None else None
        findings = asyncio.create_task(_listed(self.findings.findings())) if self.findings is not None else None
        traffic = asyncio.create_task(_listed(self.traffic.traffic())) if self.traffic is not None else None
        tasks: list[asyncio.Task[object]] = [t for t in (engines, gpu, probes, findings, traffic) if t is not None]
        await asyncio.wait(tasks, timeout=self.deadline_s)
        late: list[str] = []
        errors: list[str] = []

        def take(name: str, task: asyncio.Task[T] | None, default: T) -> T:
            if task is None:
                return default
            if not task.done():
                task.cancel()
                late.append(name)
                return default
            if (exc := task.exception()) is not None:
                errors.append(f"{name}: {exc}" if isinstance(exc, EngineDeckError | OSError)
                              else f"{name}: {type(exc).__name__}: {exc}")
                return default
            return task.result()

        statuses = take("engines", engines, ())
        traffic_rows = take("traffic", traffic, ())
        # The gateways' in-flight counts only from a read that finished in this collection (never a stale one).
        read = traffic is not None and traffic.done() and not traffic.cancelled() and traffic.exception() is None
        in_flight: Mapping[str, InFlight] = (getattr(self.traffic, "in_flight", None) or {}) if read else {}
        gpus = take("gpu", gpu, None)
        if gpus is not None and gpus.available:
            statuses = await self._attributed(statuses, gpus, self.deadline_s - (time.perf_counter() - started),
                                              late)
        snapshot = Snapshot(
            taken_at=time.time(), engines=statuses, gpus=gpus,
            probes=take("probes", probes, ()), findings=take("findings", findings, ()),
            traffic=traffic_rows, late=tuple(late), errors=tuple(errors), duration_s=time.perf_counter() - started,
            pressure={s.name: pressure_of(s, in_flight.get(s.name)) for s in statuses},
        )
        # A findings source that judges collections (console/watch/truth_feed.py) gets this one for the next.
        if (seen := getattr(self.findings, "seen", None)) is not None:
            seen(snapshot)
        return snapshot

    async def _engines(self) -> tuple[EngineStatus, ...]:
        if self.registry is None:
            return ()
        entries = await self.registry.refresh()
        limit = self.deadline_s * ENGINE_SHARE

        async def one(engine: Engine) -> EngineStatus:
            # poll_engine bounds each of its calls; this bounds the whole poll (health, models, /metrics), so one
            # slow engine costs its own row, never the whole part.
            try:
                async with asyncio.timeout(limit):
                    return await poll_engine(engine, deadline_s=limit, previous=self._previous.get(engine.name))
            except TimeoutError:
                return EngineStatus(name=engine.name, url=engine.base_url, kind=engine.kind,
                                    error=f"no answer within {limit:g} s")

        statuses = await asyncio.gather(*(one(e.engine) for e in entries if e.engine is not None))
        self._previous = {s.name: s for s in statuses}
        broken = [EngineStatus(name=e.name, url=e.url, kind=e.kind or "unknown", error=e.error or "not available")
                  for e in entries if e.engine is None]
        return (*statuses, *broken)

    @staticmethod
    async def _attributed(statuses: tuple[EngineStatus, ...], gpus: GpuSnapshot, left_s: float,
                          late: list[str]) -> tuple[EngineStatus, ...]:
        """The loaded models of engines that do not report their VRAM (llama.cpp, vLLM) given NVML's memory of the
        process that serves them (console/fit/attribute.py), within what is left of the deadline."""
        urls = {s.name: s.url for s in statuses if any(m.size_vram is None for m in s.loaded)}
        if not urls:
            return statuses
        try:
            async with asyncio.timeout(max(0.1, left_s)):
                owners = await asyncio.to_thread(gpu_owners, urls, gpus)
        except TimeoutError:
            late.append("vram attribution")
            return statuses
        return tuple(replace(s, loaded=tuple(attributed(s.name, list(s.loaded), owners))) if s.name in urls else s
                     for s in statuses)

    async def _gpu(self) -> GpuSnapshot:
        assert self.gpu is not None
        if self._gpu_thread is None or self._gpu_thread.done():
            # A hung NVML call keeps its thread; the next scrape waits on the same one instead of starting more.
            self._gpu_thread = asyncio.ensure_future(asyncio.to_thread(self.gpu.sample))
        return await asyncio.shield(self._gpu_thread)

    async def _probe_results(self) -> tuple[ProbeResult, ...]:
        if self._probes is not None and time.monotonic() - self._probes[0] < PROBES_MAX_AGE_S:
            return self._probes[1]
        assert self.store is not None
        store = await self.store()
        newest: dict[tuple[str, str], ProbeResult] = {}
        for run in await store.probes.recent(limit=PROBE_RUNS_READ):
            if run.finished_at is None or run.verdict is None or (run.engine, run.model) in newest:
                continue
            newest[(run.engine, run.model)] = ProbeResult(
                engine=run.engine, model=run.model, finished_at=run.finished_at,
                max_usable_concurrency=_int(run.verdict.get("max_usable_concurrency")),
                knee=_int(run.verdict.get("knee")))
        self._probes = (time.monotonic(), tuple(newest.values()))
        return self._probes[1]

    def close(self) -> None:
        if self._in_flight is not None:
            self._in_flight.cancel()


async def _listed(awaitable: Awaitable[Sequence[T]]) -> tuple[T, ...]:
    return tuple(await awaitable)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


__all__ = ["Collector", "Finding", "FindingsSource", "Pressure", "ProbeResult", "Snapshot", "Traffic",
           "TrafficSource", "gpu_energy_joules", "pressure_of"]
