"""The open loop: requests arrive on a schedule (Poisson or evenly spaced at rate R), whether or not the engine
has answered the earlier ones, so overload shows as growing latency and drops instead of a slower client.

No coordinated omission: every request has a scheduled arrival time fixed before the level starts (the schedule
is drawn from the run's seed), and its TTFT and E2E are measured from that time, not from when the client got
round to sending it. If the probe's event loop wakes late, or a connection takes long to open, the request's
latency carries the delay and its **send lag** (scheduled arrival → bytes on the socket) says how much of it was
the client's. The scheduler never waits for the engine: a request due while `max_in_flight` requests are still
open is recorded at once as dropped (error kind `dropped`, a failure and an SLO miss), never sent later.

At each rate, the first tenth of the arrivals (at least one) are warm-up and not counted; then `requests`
measured arrivals; then the schedule goes on with filler arrivals until the last measured request has ended, so
every measured request met the full offered load. Fillers are cancelled then and never counted.

A rate runs on the probe's own event loop, or in W worker processes when the closed loop would use W for as many
requests in flight (`open_workers`: the rate × the preflight's latency, by Little's law; `--workers N` forces N).
The semantics are the same either way (console/probe/arrivals.py walks the one schedule): the parent picks t0
(perf_counter is one CLOCK_MONOTONIC for every process on Linux), worker w sends the arrivals i with i mod W = w
at their due times with its part of the in-flight cap, and keeps its fillers going until the parent holds every
measured record. The send lag is the check that each process kept up.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from console.config import SLO
from console.engines.base import Engine
from console.probe.arrivals import gaps, measured_due, walk
from console.probe.figures import LevelFigures, LevelTrace, summarise
from console.probe.overhead import OverheadMeter, combine
from console.probe.params import ProbeParams
from console.probe.record import RequestRecord
from console.probe.sampler import MetricsSampler
from console.probe.workers import WorkerPool, workers_for

__all__ = ["gaps", "open_workers", "run_rate"]

# Workers get the rate's t0 this far ahead, so the first arrivals are not already late when the word reaches them.
WORKER_LEAD_S = 0.05


def open_workers(params: ProbeParams, rate: float, latency_s: float | None, cores: int | None = None) -> int:
    """Processes for `rate`: `--workers N` when given (at most one per request the cap lets in flight), else what
    the closed loop takes for the requests expected in flight, rate × latency (Little's law), up to the cap. Without
    a latency (no preflight) the cap itself is the expectation."""
    cap = params.max_in_flight
    if params.workers > 0:
        return workers_for(cap, params.workers)
    expected = cap if latency_s is None else min(cap, max(1, math.ceil(rate * latency_s)))
    return workers_for(expected, cores=cores)


async def run_rate(engine: Engine, model: str, params: ProbeParams, slo: SLO, rate: float, *, index: int,
                   on_record: Callable[[int, int], None] | None = None, pool: WorkerPool | None = None,
                   workers: int = 1) -> tuple[list[RequestRecord], LevelFigures]:
    """One open-loop level at `rate` requests/s: its measured records (by arrival) and its figures. With `pool`
    and `workers` > 1 the arrivals are sent from that many of its processes. `on_record(done, errors)` is told
    after each measured record."""
    cap, total = params.max_in_flight, params.requests
    trace = LevelTrace()
    measured: list[RequestRecord] = []
    errors = 0
    all_done = asyncio.Event()

    def keep(rec: RequestRecord) -> None:
        nonlocal errors
        measured.append(rec)
        errors += 0 if rec.ok else 1
        if on_record is not None:
            on_record(len(measured), errors)
        if len(measured) == total:
            all_done.set()

    if pool is None or workers <= 1:
        meter = OverheadMeter()
        async with MetricsSampler(engine) as sampler, meter:
            t0 = time.perf_counter_ns()
            await walk(engine, model, params, rate, index=index, t0=t0, keep=keep, stop=all_done, trace=trace,
                       meter=meter)
        overhead = meter.result()
    else:
        meter = OverheadMeter(ticker=False)  # this process sends nothing: only its CPU counts
        async with MetricsSampler(engine) as sampler, meter:
            t0 = time.perf_counter_ns() + round(WORKER_LEAD_S * 1e9)
            states = await pool.run_rate(rate, index, t0, workers, on_record=keep, trace=trace)
        overhead = combine([meter.state(), *states], workers=workers)
    measured.sort(key=lambda r: r.index)
    sched = measured_due(params, rate, index, t0)
    span = (sched[-1] - sched[0]) / 1e9 if len(sched) > 1 else 0.0
    offered = (len(sched) - 1) / span if span > 0 else None
    figures = summarise(cap, measured, trace, overhead=overhead, gauges=sampler.gauges(),
                        samples=len(sampler.snapshots), slo=slo, seed=params.seed, phase="open", rate=rate,
                        offered_rate=offered)
    return measured, figures
