"""The closed-loop ladder: N streams with no think time at each level, a warm-up round, then the measured requests.

At each level every stream first sends one warm-up request (not counted: it absorbs model loads, cache
allocation and connection set-up). Streams then take numbered tickets until the level's measured requests are
all issued; a stream whose tickets are gone keeps sending filler requests until the last measured request ends,
so every measured request ran under the full load. Fillers are cancelled then and never counted.

A large level's streams are spread over worker processes when the box has the cores (console/probe/workers.py;
`ProbeParams.workers`, 0 = choose); the semantics are the same either way (console/probe/streams.py).

Before the first level, one request goes alone (the preflight; it also loads the model). If it fails for any
reason but load (429/503), no level can succeed, and the run stops at once with the engine's own error
(`result.status` "error", `result.error` its one line) instead of measuring failures: a missing model, a key, an
engine that never answers, or one whose answers break enginedeck's limits.

The ladder stops after two levels in a row fail the SLO, or when a level's error rate exceeds 10%. It stops with
the engine's own error when the engine refuses the work itself: any 404 (no such model or route), or every request
of the first level failing with one 4xx status (a 401 for a missing key, a 400 for a request it will never take).
It can be cancelled at any moment: completed levels are kept and `result.status` says "cancelled".
"""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from console.config import SLO
from console.engines.base import Engine
from console.errors import ConfigError
from console.logs.sanitize import one_line
from console.probe.figures import LevelFigures, LevelTrace, summarise
from console.probe.overhead import OverheadMeter, combine
from console.probe.params import GC_THRESHOLD_DURING_PROBE, ProbeParams
from console.probe.record import ErrorKind, RequestRecord
from console.probe.request import measure
from console.probe.sampler import MetricsSampler
from console.probe.slo import Verdict, judge, max_usable, noise_guard, verdict
from console.probe.streams import LevelStreams, build_request
from console.probe.workers import EngineSource, WorkerPool, workers_for

if TYPE_CHECKING:
    from console.telemetry.energy import EnergyMeter, Idle

STOP_AFTER_FAILING = 2
STOP_ERROR_RATE = 0.10
STOP_OPEN_ERROR_RATE = 0.50  # open loop: past capacity drops are expected; half the arrivals lost ends the ladder


@dataclass(frozen=True)
class LevelProgress:
    concurrency: int
    phase: str  # "warmup" | "measure" | "done"
    done: int
    total: int
    errors: int
    rate: float | None = None  # open loop: the level's arrival rate (concurrency is then the in-flight cap)

    @property
    def label(self) -> str:
        return f"{self.rate:g}/s" if self.rate is not None else f"c={self.concurrency}"


@dataclass
class ProbeResult:
    engine: str
    engine_kind: str
    model: str
    params: ProbeParams
    slo: SLO
    started_at: datetime
    status: str = "running"  # running | complete | cancelled | error
    finished_at: datetime | None = None
    levels: list[LevelFigures] = field(default_factory=list)
    records: dict[int, list[RequestRecord]] = field(default_factory=dict)  # measured requests per level
    verdict: Verdict | None = None
    error: str | None = None  # the engine's refusal that stopped the run (status "error"), one line
    noise: dict[str, Any] | None = None  # the noise guard's two runs of c=1 and their spread


ProgressFn = Callable[[LevelProgress], None]
LevelFn = Callable[[LevelFigures], Awaitable[None]]


class Probe:
    """The ladder against `engine`. With `source` (the engine's config and kind) a large level may run in worker
    processes that build adapters of their own; without it every level runs on this event loop."""

    def __init__(self, engine: Engine, model: str, params: ProbeParams | None = None, slo: SLO | None = None, *,
                 source: EngineSource | None = None, on_progress: ProgressFn | None = None,
                 on_level: LevelFn | None = None, energy: EnergyMeter | None = None) -> None:
        self.engine = engine
        self.energy = energy  # measures each closed-loop level's GPU energy, less the idle measured before the run
        self._idle: Idle | None = None
        self.model = model
        self.params = params or ProbeParams()
        self.slo = slo or SLO()
        self.source = source
        self.on_progress = on_progress
        self.on_level = on_level
        self.result = ProbeResult(engine=engine.name, engine_kind=engine.kind, model=model, params=self.params,
                                  slo=self.slo, started_at=datetime.now(UTC))
        self._pool: WorkerPool | None = None
        self._latency_s: float | None = None  # the preflight's, sent alone: the open loop's latency guess
        if source is None and self.params.workers > 1:
            raise ConfigError("probe workers need the engine's config to build their own clients",
                              hint="pass source=EngineSource(config, kind), or use workers=1")

    def workers_for(self, level: int) -> int:
        """Processes that run level `level`'s streams (1: this event loop)."""
        return 1 if self.source is None else workers_for(level, self.params.workers)

    def _progress(self, level: int, phase: str, done: int, total: int, errors: int,
                  rate: float | None = None) -> None:
        if self.on_progress is not None:
            self.on_progress(LevelProgress(level, phase, done, total, errors, rate))

    async def run(self) -> ProbeResult:
        result = self.result
        stopped: str | None = None
        # A full collection pauses every stream at once and shows up as a fake stall in the figures. Objects made
        # before the run are frozen out of the collector and young collections made rarer; both are undone after.
        gc_threshold = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD_DURING_PROBE, *gc_threshold[1:])
        first = self.params.levels[0]
        try:
            # Idle before anything is sent (the preflight loads the model): the baseline every level subtracts.
            if self.energy is not None:
                self._idle = await asyncio.to_thread(self.energy.measure_idle)
            if self.params.warmup and (failure := await self._preflight()) is not None:
                result.error = failure
                what = f"{self.params.rates[0]:g}/s" if self.params.open_loop else f"c={first}"
                stopped = f"stopped before {what}: {failure}"
            elif self.params.open_loop:
                stopped = await self._open_loop()
            else:
                stopped = await self._ladder()
                if result.error is None and self.params.precision > 0:
                    await self._bisect()
            result.status = "complete" if result.error is None else "error"
        except asyncio.CancelledError:
            result.status = "cancelled"
            stopped = "cancelled"
            raise
        finally:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
            gc.set_threshold(*gc_threshold)
            gc.unfreeze()
            result.finished_at = datetime.now(UTC)
            result.verdict = verdict(result.levels, self.slo, engine_kind=self.engine.kind, stopped=stopped,
                                     mode=self.params.verdict, noise=result.noise)
        return result

    async def _measured(self, figures: LevelFigures, *, first: bool) -> str | None:
        """Keep one measured level; the engine's refusal in one line when its answers say no level can succeed."""
        self.result.levels.append(figures)
        if self.on_level is not None:
            await self.on_level(figures)
        refusal = refused(self.result.records[figures.concurrency], first=first)
        if refusal is not None:
            self.result.error = refusal
        return refusal

    async def _ladder(self) -> str | None:
        """The concurrency ladder (and the noise guard's c=1 runs); why it stopped early, or None."""
        levels = self.params.levels
        failing = 0
        if self.params.noise_guard and levels[0] != 1:  # c=1 twice before a ladder that does not start there
            base = await self.run_level(1, phase="noise")
            if (refusal := await self._measured(base, first=True)) is not None:
                return f"stopped at c=1: {refusal}"
            await self._noise(base)
        for level in levels:
            figures = await self.run_level(level)
            if (refusal := await self._measured(figures, first=level == levels[0])) is not None:
                return f"stopped at c={level}: {refusal}"
            if self.params.noise_guard and level == 1:
                await self._noise(figures)
            failing = 0 if judge(figures, self.slo, self.params.verdict).passed else failing + 1
            if figures.error_rate > STOP_ERROR_RATE and level != levels[-1]:
                return f"stopped after c={level}: {figures.error_rate:.0%} of requests failed"
            if failing >= STOP_AFTER_FAILING and level != levels[-1]:
                return f"stopped after c={level}: {STOP_AFTER_FAILING} levels in a row failed the SLO"
        return None

    async def _noise(self, base: LevelFigures) -> None:
        """The noise guard: concurrency 1 once more, right after `base`, and the spread of the two."""
        again = await self.run_level(1, phase="noise")
        self.result.levels.append(again)
        if self.on_level is not None:
            await self.on_level(again)
        self.result.noise = noise_guard(base, again)

    async def _bisect(self) -> None:
        """Concurrencies between the last passing level (every lower one passing too) and the first failing one
        above it, halving the gap until it is at most `precision`: max usable concurrency to that precision."""
        judged = [judge(f, self.slo, self.params.verdict) for f in self.result.levels
                  if f.phase in ("ladder", "bisection")]
        low = max_usable(judged) or 0
        above = [v.concurrency for v in judged if not v.passed and v.concurrency > low]
        if not above:
            return  # nothing failed above the limit: there is no bracket to narrow
        high = min(above)
        while high - low > self.params.precision:
            mid = (low + high) // 2
            if mid <= low:
                break
            figures = await self.run_level(mid, phase="bisection")
            if await self._measured(figures, first=False) is not None:
                return
            if judge(figures, self.slo, self.params.verdict).passed:
                low = mid
            else:
                high = mid

    async def _open_loop(self) -> str | None:
        """One level per arrival rate (console/probe/openloop.py); why it stopped early, or None."""
        from console.probe.openloop import open_workers, run_rate

        rates = self.params.rates
        cap, total = self.params.max_in_flight, self.params.requests
        workers = [1 if self.source is None else open_workers(self.params, r, self._latency_s) for r in rates]
        for i, rate in enumerate(rates):
            self._progress(cap, "warmup", 0, total, 0, rate)
            pool = await self._worker_pool(max(workers)) if workers[i] > 1 else None
            records, figures = await run_rate(
                self.engine, self.model, self.params, self.slo, rate, index=i,
                on_record=functools.partial(self._measuring, cap, total, rate), pool=pool, workers=workers[i])
            self._progress(cap, "done", len(records), total, sum(1 for r in records if not r.ok), rate)
            self.result.records[cap] = records  # open loop: the latest rate's, under the in-flight cap
            self.result.levels.append(figures)
            if self.on_level is not None:
                await self.on_level(figures)
            refusal = refused(records, first=i == 0)
            if refusal is not None:
                self.result.error = refusal
                return f"stopped at {rate:g}/s: {refusal}"
            if figures.error_rate > STOP_OPEN_ERROR_RATE and rate != rates[-1]:
                return f"stopped after {rate:g}/s: {figures.error_rate:.0%} of requests failed or were dropped"
        return None

    def _measuring(self, cap: int, total: int, rate: float, done: int, errors: int) -> None:
        self._progress(cap, "measure", done, total, errors, rate)

    async def _preflight(self) -> str | None:
        """One request before the ladder: the engine's error in one line when it failed for any reason but load."""
        tag = "preflight"
        request = build_request(self.engine.kind, self.model, self.params, tag, 0)
        if self.params.open_loop:
            self._progress(self.params.max_in_flight, "warmup", 0, self.params.requests, 0, self.params.rates[0])
        else:
            self._progress(self.params.levels[0], "warmup", 0, self.params.requests_for(self.params.levels[0]), 0)
        rec = await measure(self.engine, request, index=-1, tag=tag, warmup=True, timeout_s=self.params.timeout_s)
        if rec.ok:
            self._latency_s = (rec.t_end_ns - rec.t_send_ns) / 1e9
        if rec.ok or rec.error is ErrorKind.BUSY:
            return None
        return one_line(rec.error_message or str(rec.error))

    async def run_level(self, level: int, *, phase: str = "ladder") -> LevelFigures:
        total = self.params.requests_for(level)
        workers = self.workers_for(level)
        trace = LevelTrace()
        measured: list[RequestRecord] = []
        errors = 0
        all_done = asyncio.Event()

        def on_record(rec: RequestRecord) -> None:
            nonlocal errors
            measured.append(rec)
            errors += 0 if rec.ok else 1
            self._progress(level, "measure", len(measured), total, errors)
            if len(measured) == total:
                all_done.set()

        def on_first_ticket() -> None:
            self._progress(level, "measure", 0, total, 0)

        self._progress(level, "warmup", 0, total, 0)
        window = await asyncio.to_thread(self.energy.start) if self.energy is not None else None
        if workers == 1:
            meter = OverheadMeter()
            async with MetricsSampler(self.engine) as sampler, meter:
                streams = LevelStreams(self.engine, self.model, self.params, level,
                                       next_ticket=itertools.count().__next__, on_record=on_record,
                                       on_first_ticket=on_first_ticket, trace=trace, meter=meter)
                await streams.run(range(level), all_done)
            overhead = meter.result()
        else:
            pool = await self._worker_pool()
            meter = OverheadMeter(ticker=False)  # this process stamps nothing: only its CPU counts
            async with MetricsSampler(self.engine) as sampler, meter:
                states = await pool.run_level(level, workers, on_record=on_record, on_first_ticket=on_first_ticket,
                                              trace=trace)
            overhead = combine([meter.state(), *states], workers=workers)
        measured.sort(key=lambda r: r.index)
        if phase != "noise" or level not in self.result.records:
            self.result.records[level] = measured
        self._progress(level, "done", len(measured), total, errors)
        figures = summarise(level, measured, trace, overhead=overhead, gauges=sampler.gauges(),
                            samples=len(sampler.snapshots), slo=self.slo, seed=self.params.seed, phase=phase)
        if window is not None and self._idle is not None:
            reading = await asyncio.to_thread(window.stop, figures.tokens_out_total, self._idle)
            figures = replace(figures, energy=reading.to_dict())
        return figures

    async def _worker_pool(self, size: int | None = None) -> WorkerPool:
        """Started at the first level that needs it, as large as the largest level of the run needs (or `size`)."""
        if self._pool is None:
            assert self.source is not None
            size = size or max(self.workers_for(n) for n in self.params.levels)
            self._pool = WorkerPool(self.source, self.model, self.params, size)
            await self._pool.start()
        return self._pool


def refused(records: Sequence[RequestRecord], *, first: bool) -> str | None:
    """The engine's error, in one line, when its answers say no level can succeed: a 404 on any request, or one
    4xx status on every request of the first level. None otherwise: overload (429), timeouts (408) and 5xx are
    what a probe measures."""
    for rec in records:
        if rec.http_status == 404:
            return one_line(rec.error_message)
    statuses = {rec.http_status for rec in records if not rec.ok}
    if first and records and not any(rec.ok for rec in records) and len(statuses) == 1:
        (status,) = statuses
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            return one_line(records[0].error_message)
    return None

