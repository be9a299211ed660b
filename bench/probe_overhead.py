"""Client overhead of the probe at 1, 16, 64 and 256 streams against a fast synthetic engine.

Added latency = the probe's arrival stamp of a chunk − the engine's send stamp of that same chunk (both
perf_counter_ns, CLOCK_MONOTONIC, one clock across processes on Linux). It is what the probe adds to every
timing: loopback, the event loop's queueing, HTTP and SSE parsing. Targets: p99 ≤ 2 ms at 64 streams and ≤ 5 ms
at 256. Also printed: the engine's own lateness (its actual send time − its deadline), because a Python engine
on a small box falls behind first, and then its bursts are what the probe sees; the probe's CPU seconds per
1000 chunks (summed over its processes); its event-loop lag; how many worker processes ran the level; the most
requests the engine saw in flight (proves no pool cap).

    .venv/bin/python bench/probe_overhead.py [--streams 1,16,64,256] [--itl 0.005] [--tokens 64] [--pin 0,1]
                                             [--workers N] [--sim-procs K]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.config import SLO, EngineConfig
from console.engines.openai import OpenAICompatEngine
from console.probe.ladder import Probe
from console.probe.params import ProbeParams
from console.probe.stats import Dist
from console.probe.workers import EngineSource, usable_cores
from tests.fakes.synthetic_engine import MODEL, Knobs, SyntheticEngine

TARGETS_MS = {64: 2.0, 256: 5.0}
SIM_STREAMS_PER_PROCESS = 64  # a Python engine process keeps its deadlines (p99 late ≈ 1 ms) up to about this


def arrivals(rec):
    """Arrival stamps of every content chunk, rebuilt from the first one and the gaps after it."""
    return list(itertools.accumulate(rec.gaps_ns, initial=rec.t_first_ns))


def fmt(dist: Dist | None, key: str) -> str:
    value = getattr(dist, key) if dist else None
    return "—" if value is None else f"{value:.2f}"


async def one_level(streams: int, args: argparse.Namespace) -> dict:
    knobs = Knobs(ttft_s=args.ttft, itl_s=args.itl, tokens=args.tokens, role_first=True)
    sim_procs = args.sim_procs or min(math.ceil(streams / SIM_STREAMS_PER_PROCESS), max(1, usable_cores() // 4))
    with SyntheticEngine(knobs, sim_procs) as sim:
        if args.pin:
            for proc in sim.procs:
                os.sched_setaffinity(proc.pid, {args.pin[1]})
        params = ProbeParams(levels=(streams,), requests=max(args.min_requests, 2 * streams),
                             max_tokens=args.tokens, timeout_s=300.0, workers=args.workers)
        cfg = EngineConfig(name="sim", url=sim.url, kind="openai")
        engine = OpenAICompatEngine(cfg, max_connections=params.connections)
        try:
            result = await Probe(engine, MODEL, params, SLO(ttft_p90_s=1e9, decode_p10_tok_s=0.0),
                                 source=EngineSource(cfg, "openai")).run()
        finally:
            await engine.aclose()
        truth = sim.truth()
    by_tag = {r["tag"]: r for r in truth["requests"] if r["tag"]}
    added, late = [], []
    for rec in result.records[streams]:
        if not rec.ok:
            continue
        sent = by_tag[rec.tag]["chunks"]
        added.extend((a - s) / 1e6 for a, (s, _) in zip(arrivals(rec), sent, strict=True))
        late.extend(v / 1e6 for v in by_tag[rec.tag]["late_ns"])
    fig = result.levels[0]
    return {"streams": streams, "fig": fig, "added": Dist.of(added), "late": Dist.of(late),
            "max_in_flight": truth["max_in_flight"], "sim_procs": sim_procs}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="1,16,64,256")
    parser.add_argument("--ttft", type=float, default=0.02)
    parser.add_argument("--itl", type=float, default=0.005)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--min-requests", type=int, default=32)
    parser.add_argument("--pin", type=lambda v: tuple(int(x) for x in v.split(",")), metavar="PROBE_CPU,SIM_CPU",
                        help="run the probe and the engine on one CPU each, so they do not take each other's time")
    parser.add_argument("--workers", type=int, default=0,
                        help="probe worker processes per level (0 = the probe's own choice, 1 = in-process)")
    parser.add_argument("--sim-procs", type=int, default=0,
                        help=f"engine processes (0 = one per {SIM_STREAMS_PER_PROCESS} streams, up to a quarter of "
                             "the cores)")
    args = parser.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {args.pin[0]})
    print(f"probe overhead: synthetic engine TTFT {args.ttft * 1000:.0f} ms, ITL {args.itl * 1000:.0f} ms, "
          f"{args.tokens} tokens; {os.cpu_count()} CPU cores; Python {sys.version.split()[0]}"
          + (f"; probe on CPU {args.pin[0]}, engine on CPU {args.pin[1]}" if args.pin else ""))
    head = (f"{'streams':>7} {'chunks':>7} {'added p50':>9} {'p99':>7} {'max':>7} {'sim late p50':>12} {'p99':>7} "
            f"{'lag p99':>7} {'cpu s/1k':>8} {'cpu %':>6} {'workers':>7} {'sim':>3} {'achieved':>8} {'in flight':>9} "
            f"{'target':>7}")
    print(head)
    for n in (int(x) for x in args.streams.split(",")):
        r = await one_level(n, args)
        fig, oh = r["fig"], r["fig"].overhead
        target = TARGETS_MS.get(n)
        verdict = "—" if target is None or r["added"] is None else (
            "ok" if r["added"].p99 is not None and r["added"].p99 <= target else f">{target:g}ms")
        print(f"{n:>7} {oh.chunks:>7} {fmt(r['added'], 'p50'):>9} {fmt(r['added'], 'p99'):>7} "
              f"{fmt(r['added'], 'max'):>7} {fmt(r['late'], 'p50'):>12} {fmt(r['late'], 'p99'):>7} "
              f"{oh.loop_lag_p99_ms or 0:>7.2f} {oh.cpu_s_per_1000_chunks or 0:>8.3f} {oh.cpu_pct:>6.0f} "
              f"{oh.workers:>7} {r['sim_procs']:>3} {fig.achieved_concurrency or 0:>8.1f} {r['max_in_flight']:>9} "
              f"{verdict:>7}")
    print("added = probe arrival − engine send stamp of the same chunk (ms); sim late = engine send − its deadline "
          "(ms); lag = probe event-loop lag p99 (ms); cpu s/1k = probe CPU seconds per 1000 chunks; cpu % = of one "
          "core, summed over the probe's processes; sim = engine processes")


if __name__ == "__main__":
    asyncio.run(main())
