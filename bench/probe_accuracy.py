"""How far the probe's figures are from what the engine did, at 1, 16 and 64 streams.

The synthetic engine (tests/fakes/synthetic_engine.py, its own process) stamps each request's arrival and each
content chunk's send with `time.perf_counter_ns()`, which is CLOCK_MONOTONIC on Linux: one clock for every
process of the host, so its stamps and the probe's can be subtracted. For every measured request:

- TTFT error = the probe's TTFT (its send → the first content chunk's arrival) − the engine's TTFT (its arrival
  of the request → its send of that chunk): the request's trip into the engine (the send leg) plus the first
  chunk's trip back, and whatever the two event loops add;
- TPOT error = the probe's (t_last − t_first) / (N − k1) − the same from the engine's send stamps;
- ITL error = each gap between two content chunks as the probe saw them − the same gap as the engine sent it.

Printed per level: p50 and p99 of |error| in ms and in % of the engine's value, and the error of the level's
reported p50 against the engine's own p50. Target: within 2 % and within 1 ms. Every TTFT error must also be ≥ 0
(nothing arrives before it is sent); the count of negative ones is printed (it would mean two clocks). The TTFT
error is then split into its two legs: send (the probe's send stamp → the engine's arrival stamp: the probe's
connect and write, the kernel, the engine's accept and read) and back (the engine's send of the first content
chunk → the probe's arrival stamp). The load average before and after says how busy the box was.

    .venv/bin/python bench/probe_accuracy.py [--streams 1,16,64] [--ttft 0.2] [--itl 0.02] [--tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.config import SLO, EngineConfig
from console.engines.openai import OpenAICompatEngine
from console.probe.ladder import Probe
from console.probe.params import ProbeParams
from console.probe.stats import Dist
from console.probe.workers import EngineSource
from tests.fakes.synthetic_engine import MODEL, Knobs, Sent, SyntheticEngine

TARGET_PCT, TARGET_MS = 2.0, 1.0


def errors(result, truth, level: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per figure: (errors in seconds, the engine's values in seconds), one per request (per gap for ITL)."""
    by_tag = {r["tag"]: r for r in truth["requests"] if r["tag"]}
    out: dict[str, tuple[list[float], list[float]]] = {"TTFT": ([], []), "TPOT": ([], []), "ITL": ([], []),
                                                       "send": ([], []), "back": ([], [])}
    for rec in result.records[level]:
        if not rec.ok:
            continue
        sent = Sent.of(by_tag[rec.tag])
        out["send"][0].append((sent.arrival_ns - rec.t_send_ns) / 1e9)
        out["back"][0].append((rec.t_first_ns - sent.first_ns) / 1e9)
        out["TTFT"][0].append(rec.ttft_s - sent.ttft_s)
        out["TTFT"][1].append(sent.ttft_s)
        if rec.tpot_s is not None and sent.tpot_s is not None:
            out["TPOT"][0].append(rec.tpot_s - sent.tpot_s)
            out["TPOT"][1].append(sent.tpot_s)
        for seen, gap in zip(rec.gaps_ns, sent.gaps_s, strict=True):
            out["ITL"][0].append(seen / 1e9 - gap)
            out["ITL"][1].append(gap)
    return out


def stat(dist: Dist | None, key: str) -> float | None:
    return getattr(dist, key) if dist else None


def p99(dist: Dist | None) -> float | None:
    """p99, or the largest value where there are too few samples for a p99."""
    if dist is None:
        return None
    return dist.p99 if dist.p99 is not None else dist.max


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


async def one_level(streams: int, args: argparse.Namespace) -> tuple[dict, object]:
    knobs = Knobs(ttft_s=args.ttft, itl_s=args.itl, tokens=args.tokens, role_first=True)
    with SyntheticEngine(knobs) as sim:
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
    return errors(result, truth, streams), result.levels[0]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="1,16,64")
    parser.add_argument("--ttft", type=float, default=0.2)
    parser.add_argument("--itl", type=float, default=0.02)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--min-requests", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0, help="probe worker processes (0 = the probe's choice)")
    args = parser.parse_args()
    clock = time.get_clock_info("perf_counter").implementation
    print(f"probe accuracy: synthetic engine TTFT {args.ttft * 1000:.0f} ms, ITL {args.itl * 1000:.0f} ms, "
          f"{args.tokens} tokens; {os.cpu_count()} CPU cores; Python {sys.version.split()[0]}; perf_counter = "
          f"{clock}")
    print(f"{'streams':>7} {'figure':>6} {'n':>6} {'|err| p50 ms':>12} {'p99 ms':>7} {'p50 %':>6} {'p99 %':>6} "
          f"{'max ms':>7} {'<0':>3} {'fig p50 err ms':>14} {'%':>6} {'fig p50':>7} {'all p99':>7} {'workers':>7}")
    load_before = os.getloadavg()[0]
    legs = []
    for n in (int(x) for x in args.streams.split(",")):
        errs, fig = await one_level(n, args)
        reported = {"TTFT": fig.ttft_s, "TPOT": fig.tpot_s, "ITL": fig.itl_s}
        send, back = Dist.of(v * 1000 for v in errs.pop("send")[0]), Dist.of(v * 1000 for v in errs.pop("back")[0])
        legs.append((n, send, back))
        for name, (err, true) in errs.items():
            abs_ms = Dist.of(abs(e) * 1000 for e in err)
            rel = Dist.of(abs(e) / t * 100 for e, t in zip(err, true, strict=True) if t > 0)
            true_p50 = Dist.of(true).p50 if true else None
            fig_err = None if reported[name] is None or true_p50 is None else reported[name].p50 - true_p50
            p99_ms, p99_pct = p99(abs_ms), p99(rel)
            met = p99_ms is not None and p99_pct is not None and p99_ms <= TARGET_MS and p99_pct <= TARGET_PCT
            fig_met = fig_err is not None and bool(true_p50) and abs(fig_err) <= min(TARGET_MS / 1000,
                                                                                   TARGET_PCT / 100 * true_p50)
            print(f"{n:>7} {name:>6} {len(err):>6} {fmt(stat(abs_ms, 'p50')):>12} {fmt(p99_ms):>7} "
                  f"{fmt(stat(rel, 'p50')):>6} {fmt(p99_pct):>6} {fmt(stat(abs_ms, 'max')):>7} "
                  f"{sum(1 for e in err if e < 0) if name == 'TTFT' else '':>3} "
                  f"{fmt(None if fig_err is None else fig_err * 1000, 3):>14} "
                  f"{fmt(None if fig_err is None or not true_p50 else abs(fig_err) / true_p50 * 100):>6} "
                  f"{verdict(fig_met):>7} {verdict(met):>7} {fig.overhead.workers if fig.overhead else 1:>7}")
    print("TTFT error = send leg + way back (ms): " + "; ".join(
        f"{n} streams: send p50 {fmt(stat(send, 'p50'))} p99 {fmt(p99(send))}, back p50 {fmt(stat(back, 'p50'))} "
        f"p99 {fmt(p99(back))}" for n, send, back in legs))
    print(f"load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")
    print("err = probe − engine stamps; p99 is the largest value when fewer than 100 samples; target: within "
          f"{TARGET_MS:g} ms and within {TARGET_PCT:g} %, judged for the level's reported p50 against the engine's p50 "
          "(fig p50) and for the p99 of every request's (gap's) |err| (all p99); <0 = TTFT errors below zero "
          "(impossible on one clock)")


if __name__ == "__main__":
    asyncio.run(main())
