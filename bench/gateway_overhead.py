"""What the gateway adds: the same streams against the synthetic engine, direct and through `enginedeck gateway`,
in one run (docs/gateway.md, "Figures").

The client is enginedeck's probe (its stamps are the ones bench/probe_overhead.py checks). Per mode and round:
- added = the probe's arrival stamp of a chunk − the engine's send stamp of that same chunk (both perf_counter_ns,
  CLOCK_MONOTONIC, one clock across processes on Linux): loopback, the client, and through the gateway its hop;
- TTFT p99 and inter-chunk (ITL) p99 as the probe reports them.
The gateway's cost is the difference between the two modes: added TTFT p99 (target ≤ 1 ms at 64 streams on a
16-core host) and added inter-chunk p99 (≤ 0.5 ms); the added p99 per chunk is printed beside them. Memory per
in-flight stream = (the gateway's peak RSS during a gateway round − its RSS just before) / streams. Modes alternate
(direct, gateway, direct, gateway, ...) so a busy moment of the box hits both. The gateway writes its signed log as
in production; every line is verified at the end.

    .venv/bin/python bench/gateway_overhead.py [--streams 64] [--rounds 3] [--itl 0.005] [--tokens 64]
                                               [--sim-procs K] [--workers N] [--pin N] [--gateway-workers N]

`--pin N` gives the gateway N cores of its own (the last N) and everything else (the probe, its workers, the
engine) the rest, so the gateway's figures are not its share of a crowded CPU: on a small box, the nearest thing to
the many-core host the targets are for.

No network: everything runs on loopback, in this checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from console.audit.mark import Mark
from console.audit.signed import verify_file
from console.config import SLO, EngineConfig
from console.engines.openai import OpenAICompatEngine
from console.gateway.log import log_files
from console.probe.ladder import Probe
from console.probe.params import ProbeParams
from console.probe.stats import Dist
from console.probe.workers import EngineSource, usable_cores
from tests.fakes.synthetic_engine import MODEL, Knobs, SyntheticEngine

ROOT = Path(__file__).resolve().parents[1]
TARGET_TTFT_MS, TARGET_ITL_MS = 1.0, 0.5
SIM_STREAMS_PER_PROCESS = 64


def arrivals(rec):
    return list(itertools.accumulate(rec.gaps_ns, initial=rec.t_first_ns))


def start_gateway(upstream: str, log_dir: Path, workers: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "console", "--no-discover", "--config", os.devnull, "gateway",
                             "--listen", "127.0.0.1:0", "--upstream", upstream, "--log-dir", str(log_dir),
                             "--workers", str(workers)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    while '"listening"' not in (line := proc.stderr.readline()):
        if not line:
            raise RuntimeError("the gateway did not start")
    return proc, f"http://127.0.0.1:{json.loads(line)['port']}"


def tree(pid: int) -> list[psutil.Process]:
    """The gateway and its workers."""
    proc = psutil.Process(pid)
    return [proc, *proc.children()]


def rss(pid: int) -> int:
    return sum(p.memory_info().rss for p in tree(pid))


def cpu(pid: int) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in tree(pid))


async def sample_rss(pid: int, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss(pid))
        await asyncio.sleep(0.02)


async def one_round(url: str, sim: SyntheticEngine, streams: int, args: argparse.Namespace,
                    gateway_pid: int | None) -> dict:
    sim.reset()
    params = ProbeParams(levels=(streams,), requests=max(args.min_requests, 2 * streams), max_tokens=args.tokens,
                         timeout_s=300.0, workers=args.workers)
    cfg = EngineConfig(name="sim", url=url, kind="openai")
    engine = OpenAICompatEngine(cfg, max_connections=params.connections)
    peak = [0]
    before = rss(gateway_pid) if gateway_pid else 0
    cpu_before = cpu(gateway_pid) if gateway_pid else 0.0
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(gateway_pid, peak, stop)) if gateway_pid else None
    try:
        result = await Probe(engine, MODEL, params, SLO(ttft_p90_s=1e9, decode_p10_tok_s=0.0),
                             source=EngineSource(cfg, "openai")).run()
    finally:
        stop.set()
        if sampler is not None:
            await sampler
        await engine.aclose()
    used = cpu(gateway_pid) - cpu_before if gateway_pid else 0.0
    truth = sim.truth()
    by_tag = {r["tag"]: r for r in truth["requests"] if r["tag"]}
    chunks = sum(len(r["chunks"]) for r in truth["requests"])
    added = []
    for rec in result.records[streams]:
        if rec.ok and rec.tag in by_tag:
            sent = by_tag[rec.tag]["chunks"]
            added.extend((a - s) / 1e6 for a, (s, _) in zip(arrivals(rec), sent, strict=True))
    fig = result.levels[0]
    return {"fig": fig, "added": Dist.of(added), "errors": sum(fig.errors.values()),
            "rss_per_stream": (peak[0] - before) / streams if gateway_pid else None,
            "cpu_us_per_chunk": used / chunks * 1e6 if gateway_pid and chunks else None}


def ms(dist: Dist | None, key: str, scale: float = 1.0) -> float | None:
    value = getattr(dist, key) if dist else None
    return None if value is None else value * scale


def show(v: float | None, width: int = 8) -> str:
    return f"{'—':>{width}}" if v is None else f"{v:>{width}.3f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ttft", type=float, default=0.02)
    parser.add_argument("--itl", type=float, default=0.005)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--min-requests", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="probe worker processes (0 = the probe's choice)")
    parser.add_argument("--sim-procs", type=int, default=0,
                        help=f"engine processes (0 = one per {SIM_STREAMS_PER_PROCESS} streams, up to a quarter of "
                             "the cores)")
    parser.add_argument("--pin", type=int, default=0, metavar="N",
                        help="the gateway alone on the last N cores, everything else on the others")
    parser.add_argument("--gateway-workers", type=int, default=1, metavar="N",
                        help="the gateway's worker processes (its --workers)")
    args = parser.parse_args()
    streams = args.streams
    gateway_cores: set[int] = set()
    if args.pin:
        cores = sorted(os.sched_getaffinity(0))
        if not 0 < args.pin < len(cores):
            parser.error(f"--pin needs 1..{len(cores) - 1} cores on this box ({len(cores)} usable)")
        gateway_cores = set(cores[-args.pin:])
        os.sched_setaffinity(0, set(cores[:-args.pin]))  # the engine and the probe's workers inherit it
    sim_procs = args.sim_procs or min(math.ceil(streams / SIM_STREAMS_PER_PROCESS), max(1, usable_cores() // 4))
    load = os.getloadavg()
    print(f"gateway overhead: {streams} streams, synthetic engine TTFT {args.ttft * 1000:.0f} ms, ITL "
          f"{args.itl * 1000:.0f} ms, {args.tokens} tokens, {sim_procs} engine process(es); {usable_cores()} usable "
          f"cores; load average {load[0]:.2f}; Python {sys.version.split()[0]}"
          + (f"; gateway pinned alone to cores {sorted(gateway_cores)}" if gateway_cores else "")
          + f"; gateway workers {args.gateway_workers}")
    knobs = Knobs(ttft_s=args.ttft, itl_s=args.itl, tokens=args.tokens, role_first=True)
    rows: dict[str, list[dict]] = {"direct": [], "gateway": []}
    with tempfile.TemporaryDirectory() as tmp, SyntheticEngine(knobs, sim_procs) as sim:
        gw, gw_url = start_gateway(sim.url, Path(tmp) / "log", args.gateway_workers)
        if gateway_cores:
            for proc in tree(gw.pid):
                os.sched_setaffinity(proc.pid, gateway_cores)
        try:
            for _ in range(args.rounds):
                rows["direct"].append(await one_round(sim.url, sim, streams, args, None))
                rows["gateway"].append(await one_round(gw_url, sim, streams, args, gw.pid))
        finally:
            gw.send_signal(signal.SIGTERM)
            gw.wait(60)
        key = (Path(tmp) / "log" / "request-log.key").read_bytes().strip()
        marks = [v.mark for f in log_files(Path(tmp) / "log") for v in verify_file(f, key)]
    print(f"{'round':>5} {'mode':>8} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8} "
          f"{'added p50':>9} {'add p99':>8} {'errors':>6} {'KiB/stream':>10} {'gw µs/chunk':>11}")
    for i in range(args.rounds):
        for mode in ("direct", "gateway"):
            r = rows[mode][i]
            fig = r["fig"]
            rss, cpu_chunk = r["rss_per_stream"], r["cpu_us_per_chunk"]
            print(f"{i + 1:>5} {mode:>8} {show(ms(fig.ttft_s, 'p50', 1e3), 9)} {show(ms(fig.ttft_s, 'p99', 1e3), 9)} "
                  f"{show(ms(fig.itl_s, 'p50', 1e3))} {show(ms(fig.itl_s, 'p99', 1e3))} "
                  f"{show(ms(r['added'], 'p50'), 9)} {show(ms(r['added'], 'p99'))} {r['errors']:>6} "
                  f"{'—' if rss is None else f'{rss / 1024:.0f}':>10} "
                  f"{'—' if cpu_chunk is None else f'{cpu_chunk:.0f}':>11}")

    def median(values: list[float]) -> float | None:
        s = sorted(values)
        if not s:
            return None
        return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2

    def of(row: dict, metric: str, scale: float) -> float | None:
        return ms(row["added"] if metric == "added" else getattr(row["fig"], metric), "p99", scale)

    def diff(metric: str, scale: float) -> str:
        pairs = [(of(d, metric, scale), of(g, metric, scale)) for d, g in zip(rows["direct"], rows["gateway"],
                                                                                strict=True)]
        value = median([g - d for d, g in pairs if d is not None and g is not None])
        return "— (too few samples for a p99)" if value is None else f"{value:+.3f} ms"

    rss = median([r["rss_per_stream"] for r in rows["gateway"]]) or 0.0
    cpu = median([r["cpu_us_per_chunk"] for r in rows["gateway"]]) or 0.0
    print(f"gateway − direct, median over {args.rounds} rounds: added TTFT p99 {diff('ttft_s', 1e3)} "
          f"(target ≤ {TARGET_TTFT_MS} ms on 16 cores), added inter-chunk p99 {diff('itl_s', 1e3)} (target ≤ "
          f"{TARGET_ITL_MS} ms), added per-chunk delivery p99 {diff('added', 1.0)}; memory per in-flight stream "
          f"{rss / 1024:.0f} KiB; gateway CPU {cpu:.0f} µs per chunk (user + system, all its work per request "
          "included)")
    valid = sum(m is Mark.VALID for m in marks)
    print(f"signed log: {len(marks)} lines, {valid} valid" + ("" if valid == len(marks) else " — INVALID LINES"))


if __name__ == "__main__":
    asyncio.run(main())
