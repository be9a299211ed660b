"""The probe measuring itself: event-loop lag, per-chunk processing delay and CPU time.

Every timestamp the probe takes is only as good as the event loop that takes it: when the loop is busy, a chunk
that arrived on the socket waits before it is stamped, and the engine looks slower than it is. A ticker task
sleeps a fixed interval and records how late it wakes (the loop lag every stamp may carry); each chunk records
how long it took from its arrival stamp to the probe's hands (parsing and dispatch); and the process CPU time
says how close this single Python thread is to being the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
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
    cpu_s: float
    cpu_pct: float  # of one core, over the level's wall time
    chunks: int
    cpu_s_per_1000_chunks: float | None

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
        if self.cpu_pct > CPU_WARN_PCT:
            out.append(f"probe used {self.cpu_pct:.0f}% of a CPU core: it may be the bottleneck, not the engine")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OverheadMeter:
    """One per level: `async with meter:` runs the lag ticker; `chunk()` is called for every event consumed."""

    def __init__(self, tick_s: float = TICK_S) -> None:
        self.tick_s = tick_s
        self._lags_ns: list[int] = []
        self._delays_ns: list[int] = []
        self.chunks = 0
        self._task: asyncio.Task[None] | None = None
        self._cpu0 = 0.0
        self._wall0 = 0
        self._cpu_s = 0.0
        self._wall_s = 0.0

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
            if len(self._lags_ns) < MAX_SAMPLES:
                self._lags_ns.append(max(0, now - due))
            # An absolute schedule, so one late wake-up does not shift every later one.
            due += step
            if due < now:
                due = now + step

    async def __aenter__(self) -> OverheadMeter:
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter_ns()
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

    def result(self) -> Overhead:
        lag = Dist.of(v / 1e6 for v in self._lags_ns)
        delay = Dist.of(v / 1e6 for v in self._delays_ns)
        return Overhead(
            loop_lag_p50_ms=lag.p50 if lag else None,
            loop_lag_p99_ms=_p99(lag),
            loop_lag_max_ms=lag.max if lag else None,
            chunk_delay_p50_ms=delay.p50 if delay else None,
            chunk_delay_p99_ms=_p99(delay),
            cpu_s=self._cpu_s,
            cpu_pct=100.0 * self._cpu_s / self._wall_s if self._wall_s > 0 else 0.0,
            chunks=self.chunks,
            cpu_s_per_1000_chunks=1000.0 * self._cpu_s / self.chunks if self.chunks else None,
        )


def _p99(dist: Dist | None) -> float | None:
    """p99 where there are enough samples, else the maximum: a lag warning must not vanish for want of n."""
    if dist is None:
        return None
    return dist.p99 if dist.p99 is not None else dist.max
