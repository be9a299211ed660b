"""How well the open loop keeps its schedule, and where a known capacity shows, against the synthetic engine.

Two parts, each printed as a table:

1. **Schedule keeping**: an engine with no slot limit (every request served at once, TTFT 50 ms, 16 tokens at 5 ms)
   under constant arrivals at rising rates. Per rate: the offered rate (measured arrivals over their scheduled
   span), the achieved rate, the send lag p50 / p99 / max (scheduled arrival → bytes on the socket: how late the
   probe's own loop sent) and the TTFT error p50 against the engine's own stamps (the probe's TTFT from the
   scheduled arrival − the engine's arrival → first-chunk send; it holds the send lag), and the CPU of the
   probe's busiest process. The rate where send lag grows is where the probe stops keeping time on this box.
2. **A known capacity**: slots S with a service time of 0.1 s (TTFT 50 ms + 5 tokens at 10 ms), so S / 0.1
   requests/s; Poisson arrivals below and above it. Achieved rate and goodput must flatten at the capacity and
   the drops grow.

Each part runs once per entry of `--workers` (the probe's setting: 1 = its own event loop, N = N worker
processes sending arrival i from worker i mod N, 0 = automatic), so the rows of one run compare them.

    .venv/bin/python bench/probe_open_loop.py [--rates 10,50,100,200,400] [--requests 200] [--slots 4] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.config import SLO, EngineConfig
from console.engines.openai import OpenAICompatEngine
from console.probe.ladder import Probe
from console.probe.params import ProbeParams
from console.probe.workers import EngineSource
from tests.fakes.synthetic_engine import MODEL, Knobs, Sent, SyntheticEngine


async def run(sim: SyntheticEngine, params: ProbeParams, slo: SLO):
    cfg = EngineConfig(name="sim", url=sim.url, kind="openai")
    engine = OpenAICompatEngine(cfg, max_connections=params.connections)
    try:
        return await Probe(engine, MODEL, params, slo, source=EngineSource(cfg, "openai")).run()
    finally:
        await engine.aclose()


def ms(v: float | None) -> str:
    return "—" if v is None else f"{v * 1000:.2f}"


async def schedule(rates: tuple[float, ...], requests: int, workers: tuple[int, ...]) -> None:
    print("1. schedule keeping: no slot limit, TTFT 50 ms, 16 tokens at 5 ms, constant arrivals")
    print(f"{'W':>2} {'rate':>6} {'offered':>8} {'achieved':>9} {'lag p50':>8} {'lag p99':>8} {'lag max':>8} "
          f"{'TTFT err p50':>13} {'dropped':>8} {'busiest%':>8}   (ms; busiest%: the probe's busiest process, "
          "% of a core)")
    with SyntheticEngine(Knobs(ttft_s=0.05, itl_s=0.005, tokens=16)) as sim:
        for w, rate in ((w, rate) for w in workers for rate in rates):
            sim.reset()
            params = ProbeParams(rates=(rate,), arrivals="constant", requests=requests, max_tokens=16,
                                 max_in_flight=1024, workers=w)
            result = await run(sim, params, SLO(ttft_p90_s=10.0, decode_p10_tok_s=1.0))
            fig = result.levels[0]
            truth = sim.truth_by_tag()
            errors = [r.ttft_s - Sent.of(truth[r.tag]).ttft_s for r in result.records[1024]
                      if r.ok and r.tag in truth]
            lag = fig.send_lag_s
            oh = fig.overhead
            busiest = oh.cpu_pct_busiest if oh.cpu_pct_busiest is not None else oh.cpu_pct
            print(f"{oh.workers:>2} {rate:>6g} {fig.offered_rate or 0:>8.1f} {fig.req_s or 0:>9.1f} "
                  f"{ms(lag.p50 if lag else None):>8} {ms(lag.p99 if lag else None):>8} "
                  f"{ms(lag.max if lag else None):>8} {ms(statistics.median(errors) if errors else None):>13} "
                  f"{fig.errors.get('dropped', 0):>8} {busiest or 0:>8.0f}")


async def capacity(slots: int, requests: int, workers: tuple[int, ...]) -> None:
    cap = slots / 0.1
    print(f"\n2. a known capacity: {slots} slots × 1 / 0.1 s = {cap:g} requests/s, Poisson arrivals, "
          f"in flight ≤ {2 * slots}")
    print(f"{'W':>2} {'rate':>6} {'offered':>8} {'achieved':>9} {'goodput':>8} {'SLO met':>14} {'dropped':>8} "
          f"{'max rate':>9}")
    rates = tuple(round(cap * f, 1) for f in (0.5, 0.9, 1.5, 3.0))
    with SyntheticEngine(Knobs(ttft_s=0.05, itl_s=0.01, tokens=6, slots=slots)) as sim:
        for w in workers:
            sim.reset()
            params = ProbeParams(rates=rates, requests=requests, max_tokens=6, max_in_flight=2 * slots, workers=w)
            result = await run(sim, params, SLO(ttft_p90_s=1.0, decode_p10_tok_s=10.0, max_error_rate=1.0))
            for fig in result.levels:
                lo, hi = fig.slo_attainment_ci or (0.0, 0.0)
                print(f"{fig.overhead.workers:>2} {fig.rate:>6g} {fig.offered_rate or 0:>8.1f} {fig.req_s or 0:>9.1f} "
                      f"{fig.goodput or 0:>8.1f} {fig.slo_attainment or 0:>5.0%} {lo:.0%}–{hi:.0%} "
                      f"{fig.errors.get('dropped', 0):>8} {result.verdict.max_rate or 0:>9g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10,50,100,200,400")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--workers", default="1", help="the probe's --workers, one run each: 1,2")
    args = parser.parse_args()
    workers = tuple(int(w) for w in args.workers.split(","))
    print(f"load average before: {os.getloadavg()[0]:.2f}, cores: {os.cpu_count()}")
    asyncio.run(schedule(tuple(float(r) for r in args.rates.split(",")), args.requests, workers))
    asyncio.run(capacity(args.slots, args.requests, workers))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
