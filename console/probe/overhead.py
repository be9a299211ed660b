"""The probe measuring itself: event-loop lag, per-chunk processing delay and CPU time.

Every timestamp the probe takes is only as good as the event loop that takes it: when the loop is busy, a chunk
that arrived on the socket waits before it is stamped, and the engine looks slower than it is. A ticker task
sleeps a fixed interval and records how late it wakes (the loop lag every stamp may carry); each chunk records
how long it took from its arrival stamp to the probe's hands (parsing and dispatch); and the process CPU time
says how close each Python process of the probe is to being the bottleneck.

A level spread over worker processes (console/probe/workers.py) has one meter per worker; their raw samples
(`MeterState`) are pooled by `combine`, and CPU seconds are summed over every process of the probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from console.probe.stats import Dist

TICK_S = 0.005
MAX_SAMPLES = 200_000  # per level; beyond this only counts grow (a 256-stream level stays bounded)

# Above these the probe says its own figures may be distorted.
LAG_P99_WARN_MS = 5.0
CHUNK_DELAY_P99_WARN_MS = 5.0
CPU_WARN_PCT = 70.0
ITL_SHARE_WARN = 0.20  # lag p99 above this share of the measured inter-token time
LAG_FLOOR_MS = 2.0  # a sleeping ticker overshoots by up to ~1 ms on a busy box without delaying socket reads


@dataclass(frozen=True)
class Overhead:
    loop_lag_p50_ms: float | None
    loop_lag_p99_ms: float | None
    loop_lag_max_ms: float | None
    chunk_delay_p50_ms: float | None
    chunk_delay_p99_ms: float | None
    cpu_s: float  # summed over the probe's processes (the parent and every worker)
    cpu_pct: float  # cpu_s over the level's wall time, as % of one core: above 100 with several workers
    chunks: int
    cpu_s_per_1000_chunks: float | None
    workers: int = 1  # processes that ran the level's streams (1: the probe's own event loop)
    cpu_pct_busiest: float | None = None  # the busiest single process, % of one core (None in runs before it)

    def warnings(self, itl_p50_s: float | None = None) -> list[str]:
        out: list[str] = []
        lag = self.loop_lag_p99_ms
        if lag is not None and lag > LAG_P99_WARN_MS:
            out.append(f"probe event-loop lag p99 {lag:.1f} ms: timings may be inflated by the probe itself")
        elif lag is not None and itl_p50_s and lag > LAG_FLOOR_MS and lag / 1000.0 > ITL_SHARE_WARN * itl_p50_s:
            out.append(f"probe event-loop lag p99 {lag:.1f} ms is over 20% of the inter-token time "
                       f"({itl_p50_s * 1000:.1f} ms): ITL figures are not trustworthy at this level")
        delay = self.chunk_delay_p99_ms
        if delay is not None and delay > CHUNK_DELAY_P99_WARN_MS:
            out.append(f"probe took {delay:.1f} ms (p99) to process a chunk: it may be the bottleneck")
        busiest = self.cpu_pct if self.cpu_pct_busiest is None else self.cpu_pct_busiest
        if busiest > CPU_WARN_PCT:
            out.append(f"probe used {busiest:.0f}% of a CPU core: it may be the bottleneck, not the engine")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MeterState:
    """One process's raw samples over one level: small to pickle, pooled by `combine`."""

    lags_ns: array[int]
    delays_ns: array[int]
    chunks: int
    cpu_s: float
    wall_s: float


class OverheadMeter:
    """One per level and process: `async with meter:` runs the lag ticker (unless `ticker` is off, for a process
    that stamps nothing); `chunk()` is called for every event consumed."""

    def __init__(self, tick_s: float = TICK_S, *, ticker: bool = True) -> None:
        self.tick_s = tick_s
        self.ticker = ticker
        # The lag is sampled only while measured requests of this process are in flight, as it is the lag their
        # stamps can carry (not the warm-up's connection burst, nor fillers and cancels after the last one).
        self._in_flight = 0
        self._measuring_since = 0  # when in-flight measured requests last went from none to one
        self._lags_ns = array("q")
        self._delays_ns = array("q")
        self.chunks = 0
        self._task: asyncio.Task[None] | None = None
        self._cpu0 = 0.0
        self._wall0 = 0
        self._cpu_s = 0.0
        self._wall_s = 0.0

    def begin(self) -> None:
        """A measured request was sent."""
        if not self._in_flight:
            self._measuring_since = time.perf_counter_ns()
        self._in_flight += 1

    def end(self) -> None:
        self._in_flight -= 1

    def chunk(self, delay_ns: int) -> None:
        self.chunks += 1
        if len(self._delays_ns) < MAX_SAMPLES:
            self._delays_ns.append(delay_ns)

    async def _tick(self) -> None:
        step = int(self.tick_s * 1e9)
        due = time.perf_counter_ns() + step
        while True:
            await asyncio.sleep(max(0, due - time.perf_counter_ns()) / 1e9)
            now = time.perf_counter_ns()
            # A wake-up that was due before the first measured request was sent delayed no measured stamp.
            if self._in_flight and self._measuring_since <= due and len(self._lags_ns) < MAX_SAMPLES:
                self._lags_ns.append(max(0, now - due))
            # An absolute schedule, so one late wake-up does not shift every later one.
            due += step
            if due < now:
                due = now + step

    async def __aenter__(self) -> OverheadMeter:
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter_ns()
        if self.ticker:
            self._task = asyncio.create_task(self._tick(), name="probe-loop-lag")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cpu_s = time.process_time() - self._cpu0
        self._wall_s = (time.perf_counter_ns() - self._wall0) / 1e9
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def state(self) -> MeterState:
        return MeterState(self._lags_ns, self._delays_ns, self.chunks, self._cpu_s, self._wall_s)

    def result(self) -> Overhead:
        return combine([self.state()])


def combine(states: Sequence[MeterState], *, workers: int = 1) -> Overhead:
    """One level's overhead from every process's samples: lags and delays pooled, CPU summed."""
    lag = Dist.of(v / 1e6 for s in states for v in s.lags_ns)
    delay = Dist.of(v / 1e6 for s in states for v in s.delays_ns)
    cpu_s = sum(s.cpu_s for s in states)
    wall_s = max((s.wall_s for s in states), default=0.0)
    chunks = sum(s.chunks for s in states)
    return Overhead(
        loop_lag_p50_ms=lag.p50 if lag else None,
        loop_lag_p99_ms=_p99(lag),
        loop_lag_max_ms=lag.max if lag else None,
        chunk_delay_p50_ms=delay.p50 if delay else None,
        chunk_delay_p99_ms=_p99(delay),
        cpu_s=cpu_s,
        cpu_pct=100.0 * cpu_s / wall_s if wall_s > 0 else 0.0,
        chunks=chunks,
        cpu_s_per_1000_chunks=1000.0 * cpu_s / chunks if chunks else None,
        workers=workers,
        cpu_pct_busiest=max((100.0 * s.cpu_s / s.wall_s for s in states if s.wall_s > 0), default=0.0),
    )


def _p99(dist: Dist | None) -> float | None:
    """p99 where there are enough samples, else the maximum: a lag warning must not vanish for want of n."""
    if dist is None:
        return None
    return dist.p99 if dist.p99 is not None else dist.max
