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
every measured request met the full offered load. Fillers are cancelled then and never counted. Open-loop levels
run on the probe's own event loop (no worker processes): the send lag is the check that it kept up.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable

from console.config import SLO
from console.engines.base import Engine
from console.probe.figures import LevelFigures, LevelTrace, summarise
from console.probe.overhead import OverheadMeter
from console.probe.params import ProbeParams
from console.probe.prompts import prompt_tag
from console.probe.record import ErrorKind, RequestRecord
from console.probe.request import measure
from console.probe.sampler import MetricsSampler
from console.probe.streams import build_request

WARMUP_SHARE = 0.1
# Fillers keep the load on while the last measured requests finish; past this many times the measured arrivals
# (replies far slower than the whole schedule), the level waits for them without adding more.
FILLER_ROUNDS = 10


def warmup_arrivals(params: ProbeParams) -> int:
    return max(1, math.ceil(params.requests * WARMUP_SHARE)) if params.warmup else 0


def gaps(params: ProbeParams, rate: float, index: int) -> Callable[[], float]:
    """Seconds to the next arrival: exponential (a Poisson process) or constant; seeded per rate."""
    if params.arrivals == "constant":
        return lambda: 1.0 / rate
    rng = random.Random(params.seed * 1009 + index)
    return lambda: rng.expovariate(rate)


def dropped(index: int, tag: str, t_sched_ns: int, cap: int) -> RequestRecord:
    return RequestRecord(index=index, tag=tag, warmup=False, t_send_ns=t_sched_ns, t_end_ns=t_sched_ns,
                         t_sched_ns=t_sched_ns, error=ErrorKind.DROPPED,
                         error_message=f"due while {cap} requests were in flight (--max-in-flight)")


async def run_rate(engine: Engine, model: str, params: ProbeParams, slo: SLO, rate: float, *, index: int,
                   on_record: Callable[[int, int], None] | None = None,
                   ) -> tuple[list[RequestRecord], LevelFigures]:
    """One open-loop level at `rate` requests/s: its measured records (by arrival) and its figures.
    `on_record(done, errors)` is told after each measured record."""
    cap, total, warm = params.max_in_flight, params.requests, warmup_arrivals(params)
    next_gap = gaps(params, rate, index)
    trace, meter = LevelTrace(), OverheadMeter()
    measured: list[RequestRecord] = []
    sched: list[int] = []  # measured arrivals' scheduled times
    tasks: set[asyncio.Task[None]] = set()
    in_flight = 0
    all_done = asyncio.Event()

    def keep(rec: RequestRecord) -> None:
        measured.append(rec)
        if on_record is not None:
            on_record(len(measured), sum(1 for r in measured if not r.ok))
        if len(measured) == total:
            all_done.set()

    async def one(i: int, t_sched: int, counted: bool) -> None:
        nonlocal in_flight
        tag = prompt_tag(index, i, prefix="o", warmup=i < warm, filler=i >= warm + total)
        try:
            rec = await measure(engine, build_request(engine.kind, model, params, tag, i), index=i - warm, tag=tag,
                                warmup=not counted, timeout_s=params.timeout_s, meter=meter if counted else None,
                                trace=trace, t_sched_ns=t_sched)
        finally:
            in_flight -= 1
        if counted:
            keep(rec)

    async with MetricsSampler(engine) as sampler, meter:
        t0 = time.perf_counter_ns()
        offset = 0.0
        try:
            for i in range(warm + total + FILLER_ROUNDS * total):
                t_sched = t0 + round(offset * 1e9)
                delay = (t_sched - time.perf_counter_ns()) / 1e9
                if i >= warm + total:  # fillers only until the last measured request ends
                    if all_done.is_set():
                        break
                    try:
                        async with asyncio.timeout(max(0.0, delay)):
                            await all_done.wait()
                        break
                    except TimeoutError:
                        pass
                elif delay > 0:
                    await asyncio.sleep(delay)
                counted = warm <= i < warm + total
                if counted:
                    sched.append(t_sched)
                if in_flight >= cap:
                    if counted:
                        keep(dropped(i - warm, prompt_tag(index, i, prefix="o"), t_sched, cap))
                else:
                    in_flight += 1
                    task = asyncio.create_task(one(i, t_sched, counted),
                                               name=f"probe-rate{index}-{i}")
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                offset += next_gap()
            await all_done.wait()
        finally:
            for t in list(tasks):
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    measured.sort(key=lambda r: r.index)
    span = (sched[-1] - sched[0]) / 1e9 if len(sched) > 1 else 0.0
    offered = (len(sched) - 1) / span if span > 0 else None
    figures = summarise(cap, measured, trace, overhead=meter.result(), gauges=sampler.gauges(),
                        samples=len(sampler.snapshots), slo=slo, seed=params.seed, phase="open", rate=rate,
                        offered_rate=offered)
    return measured, figures

