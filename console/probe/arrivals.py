"""The open loop's schedule and its walk: when each arrival of a rate is due, and the sending of one process's share
of them. The one walk serves the probe's own event loop (console/probe/openloop.py, the whole schedule) and each
worker process (console/probe/workers.py, arrival i when i mod W is its number), so the semantics cannot drift.

The schedule is a pure function of the run's seed, the rate's position and t0: every process walking it draws the
same arrivals, whatever W, and the parent knows every measured arrival's due time without being told.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Iterator

from console.engines.base import Engine
from console.probe.figures import LevelTrace
from console.probe.overhead import OverheadMeter
from console.probe.params import ProbeParams
from console.probe.prompts import prompt_tag
from console.probe.record import ErrorKind, RequestRecord
from console.probe.request import measure
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


def schedule(params: ProbeParams, rate: float, index: int, t0: int) -> Iterator[tuple[int, int]]:
    """(arrival number, due time in perf_counter ns) for warm-up, measured and filler arrivals, in order."""
    next_gap = gaps(params, rate, index)
    offset = 0.0
    for i in range(warmup_arrivals(params) + params.requests * (1 + FILLER_ROUNDS)):
        yield i, t0 + round(offset * 1e9)
        offset += next_gap()


def measured_due(params: ProbeParams, rate: float, index: int, t0: int) -> list[int]:
    """The measured arrivals' due times: what the schedule offered, known to the parent without asking a worker."""
    warm, total = warmup_arrivals(params), params.requests
    return [t for i, t in schedule(params, rate, index, t0) if warm <= i < warm + total]


def share_of_cap(cap: int, worker: int, workers: int) -> int:
    """Worker `worker`'s part of the in-flight cap, so that the parts add up to `cap`."""
    return cap // workers + (1 if worker < cap % workers else 0)


def dropped(index: int, tag: str, t_sched_ns: int, cap: int, share: int | None = None) -> RequestRecord:
    """A measured arrival that found its process's part of the cap full (`share` of `cap` when split)."""
    why = (f"due while {cap} requests were in flight (--max-in-flight)" if share is None else
           f"due while its worker's {share} of the {cap} requests in flight (--max-in-flight) were open")
    return RequestRecord(index=index, tag=tag, warmup=False, t_send_ns=t_sched_ns, t_end_ns=t_sched_ns,
                         t_sched_ns=t_sched_ns, error=ErrorKind.DROPPED, error_message=why)


async def walk(engine: Engine, model: str, params: ProbeParams, rate: float, *, index: int, t0: int,
               keep: Callable[[RequestRecord], None], stop: asyncio.Event, trace: LevelTrace,
               meter: OverheadMeter, worker: int = 0, workers: int = 1) -> None:
    """Send arrival i of the rate's schedule at its due time when i mod `workers` is `worker`; each measured record
    (or drop) goes to `keep`. Fillers go on until `stop` is set (the caller holds every measured record), then the
    requests still open are cancelled. A request due while this process's share of `--max-in-flight` is open is
    dropped at once, never sent later."""
    warm, total = warmup_arrivals(params), params.requests
    cap = share_of_cap(params.max_in_flight, worker, workers)
    tasks: set[asyncio.Task[None]] = set()
    in_flight = 0

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

    try:
        for i, t_sched in schedule(params, rate, index, t0):
            if i % workers != worker:
                continue
            delay = (t_sched - time.perf_counter_ns()) / 1e9
            if i >= warm + total:  # fillers only until the last measured request ends
                if stop.is_set():
                    break
                try:
                    async with asyncio.timeout(max(0.0, delay)):
                        await stop.wait()
                    break
                except TimeoutError:
                    pass
            elif delay > 0:
                await asyncio.sleep(delay)
            counted = warm <= i < warm + total
            if in_flight >= cap:
                if counted:
                    keep(dropped(i - warm, prompt_tag(index, i, prefix="o"), t_sched, params.max_in_flight,
                                 None if workers == 1 else cap))
            else:
                in_flight += 1
                task = asyncio.create_task(one(i, t_sched, counted), name=f"probe-rate{index}-{i}")
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        await stop.wait()
    finally:
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
