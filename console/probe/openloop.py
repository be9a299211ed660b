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

Open-loop levels run on the probe's own event loop (no worker processes): the send lag is the check that it kept
up. The schedule and its walk are console/probe/arrivals.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from console.config import SLO
from console.engines.base import Engine
from console.probe.arrivals import gaps, measured_due, walk
from console.probe.figures import LevelFigures, LevelTrace, summarise
from console.probe.overhead import OverheadMeter
from console.probe.params import ProbeParams
from console.probe.record import RequestRecord
from console.probe.sampler import MetricsSampler

__all__ = ["gaps", "run_rate"]


async def run_rate(engine: Engine, model: str, params: ProbeParams, slo: SLO, rate: float, *, index: int,
                   on_record: Callable[[int, int], None] | None = None,
                   ) -> tuple[list[RequestRecord], LevelFigures]:
    """One open-loop level at `rate` requests/s: its measured records (by arrival) and its figures.
    `on_record(done, errors)` is told after each measured record."""
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

    meter = OverheadMeter()
    async with MetricsSampler(engine) as sampler, meter:
        t0 = time.perf_counter_ns()
        await walk(engine, model, params, rate, index=index, t0=t0, keep=keep, stop=all_done, trace=trace,
                   meter=meter)
    overhead = meter.result()
    measured.sort(key=lambda r: r.index)
    sched = measured_due(params, rate, index, t0)
    span = (sched[-1] - sched[0]) / 1e9 if len(sched) > 1 else 0.0
    offered = (len(sched) - 1) / span if span > 0 else None
    figures = summarise(cap, measured, trace, overhead=overhead, gauges=sampler.gauges(),
                        samples=len(sampler.snapshots), slo=slo, seed=params.seed, phase="open", rate=rate,
                        offered_rate=offered)
    return measured, figures
