"""A level spread over worker processes measures what the in-process level measures, issues every measured ticket
exactly once, and leaves no process behind on cancel or on a worker's death. Checked against the synthetic
engine's own stamps, as in test_accuracy.py. workers=2 is forced so these run on a 2-core box too."""

import asyncio
import contextlib
import os
import signal
import statistics

import psutil
import pytest

from console.config import SLO, EngineConfig
from console.engines.openai import OpenAICompatEngine
from console.errors import ConfigError, ProbeError
from console.probe.figures import LevelFigures
from console.probe.ladder import LevelProgress, Probe
from console.probe.overhead import MeterState, combine
from console.probe.params import ProbeParams
from console.probe.workers import EngineSource, workers_for
from tests.fakes.synthetic_engine import MODEL
from tests.unit.probe.test_accuracy import WAY_BACK_BOUND_S, true_figures, way_back_s


def probe_for(sim, params, slo=None, **kwargs):
    cfg = EngineConfig(name="sim", url=sim.url, kind="openai")
    engine = OpenAICompatEngine(cfg, max_connections=params.connections)
    return engine, Probe(engine, MODEL, params, slo or SLO(), source=EngineSource(cfg, "openai"), **kwargs)


async def run_probe(sim, params, slo=None, **kwargs):
    engine, probe = probe_for(sim, params, slo, **kwargs)
    try:
        async with asyncio.timeout(120):
            return await probe.run()
    finally:
        await engine.aclose()


async def cancel_when(sim, params, event_of) -> Probe:
    """Run a probe with worker processes, cancel it once `event_of(progress)` is true (its workers up), and check
    the cancel: the probe's task ends cancelled and no worker is left. The probe, for its partial result."""
    reached = asyncio.Event()
    engine, probe = probe_for(sim, params, on_progress=lambda p: event_of(p) and reached.set())
    task = asyncio.create_task(probe.run())
    try:
        async with asyncio.timeout(60):
            await reached.wait()
        assert len(probe_children(sim)) == params.workers
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await engine.aclose()
    assert probe_children(sim) == []
    return probe


def probe_children(sim) -> list[psutil.Process]:
    """The probe's worker processes among this test's children (the synthetic engine and, in a full run, the
    session's lab servers are children too)."""
    engine_pids = {p.pid for p in sim.procs}
    workers = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.pid not in engine_pids and "console.probe.workers" in " ".join(child.cmdline()):
                workers.append(child)
    return workers


async def test_worker_level_recovers_ttft_and_itl_like_the_in_process_level(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.2, itl_s=0.02, tokens=24)
    truth_checked = {}
    for workers in (1, 2):
        sim.reset()
        result = await run_probe(sim, ProbeParams(levels=(4,), requests=8, max_tokens=24, workers=workers))
        fig, records = result.levels[0], result.records[4]
        truth = sim.truth_by_tag()
        assert fig.overhead.workers == workers
        assert fig.ok == 8 and fig.tokens_out_total == 8 * 24
        true_ttft, true_tpot = zip(*(true_figures(r, truth[r.tag]) for r in records), strict=True)
        for rec, t in zip(records, true_ttft, strict=True):
            assert rec.ttft_s >= t  # nothing arrives before it was sent, across processes too
        assert way_back_s(records, truth) <= WAY_BACK_BOUND_S  # workers stamp arrivals as the parent does
        assert fig.ttft_s.p50 == pytest.approx(statistics.median(true_ttft), rel=0.10)  # with the send leg
        assert fig.tpot_s.p50 == pytest.approx(statistics.median(true_tpot), rel=0.02)
        assert fig.itl_s.p50 == pytest.approx(0.02, rel=0.05)
        # every stream was kept busy through the window, whichever process ran it
        assert fig.achieved_concurrency == pytest.approx(4.0, rel=0.05)
        assert fig.agg_tok_s == pytest.approx(4 * 24 / (0.2 + 23 * 0.02), rel=0.15)  # 4 streams, 24 tokens each
        truth_checked[workers] = fig
    one, two = truth_checked[1], truth_checked[2]
    assert two.ttft_s.p50 == pytest.approx(one.ttft_s.p50, rel=0.03)
    assert two.tpot_s.p50 == pytest.approx(one.tpot_s.p50, rel=0.03)
    assert two.overhead.chunks == one.overhead.chunks  # the same events were consumed, now in two processes


async def test_tickets_are_shared_and_never_double_counted(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.005, itl_s=0.002, tokens=6)
    params = ProbeParams(levels=(1, 9), requests=30, max_tokens=6, workers=3)
    progress: list[LevelProgress] = []
    result = await run_probe(sim, params, on_progress=progress.append)
    records = result.records[9]
    total = params.requests_for(9)
    assert [r.index for r in records] == list(range(total))
    assert len({r.tag for r in records}) == total and all(r.ok and not r.warmup for r in records)
    sent = [r["tag"] for r in sim.truth()["requests"] if r["tag"] and r["tag"].startswith("c9-r")]
    assert sorted(sent) == sorted(r.tag for r in records)  # each measured ticket reached the engine once
    assert result.levels[0].overhead.workers == 1 and result.levels[1].overhead.workers == 3
    done = [p for p in progress if p.concurrency == 9 and p.phase == "measure"]
    assert done[0].done == 0 and done[-1].done == total  # progress came back request by request


async def test_cancel_stops_every_worker_and_keeps_completed_levels(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.02, itl_s=0.02, tokens=25)  # a reply takes 0.5 s
    # cancelled once the workers are up and past their warm-ups
    probe = await cancel_when(sim, ProbeParams(levels=(1, 4), requests=1, max_tokens=25, workers=2),
                              lambda p: p.concurrency == 4 and p.phase == "measure")
    assert probe.result.status == "cancelled"
    assert [f.concurrency for f in probe.result.levels] == [1]  # the completed level is kept


async def test_a_worker_that_dies_is_a_clear_error_not_a_hang(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.05, itl_s=0.05, tokens=100)
    killed: list[int] = []

    def on_progress(p: LevelProgress) -> None:
        if p.phase == "measure" and not killed:
            victim = probe_children(sim)[0]
            killed.append(victim.pid)
            os.kill(victim.pid, signal.SIGKILL)

    with pytest.raises(ProbeError, match="stopped unexpectedly"):
        await run_probe(sim, ProbeParams(levels=(4,), requests=8, max_tokens=100, workers=2),
                        on_progress=on_progress)
    assert killed
    assert probe_children(sim) == []


async def test_a_worker_that_cannot_build_its_client_says_why(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.01, itl_s=0.001, tokens=4)
    cfg = EngineConfig(name="sim", url=sim.url, kind="openai")
    engine = OpenAICompatEngine(cfg, max_connections=8)
    probe = Probe(engine, MODEL, ProbeParams(levels=(4,), requests=8, max_tokens=4, workers=2), SLO(),
                  source=EngineSource(cfg, "no-such-kind"))
    try:
        with pytest.raises(ProbeError, match=r"probe worker \d failed: .*unknown kind 'no-such-kind'"):
            async with asyncio.timeout(60):
                await probe.run()
    finally:
        await engine.aclose()
    assert probe_children(sim) == []


def test_worker_count_follows_level_size_and_cores():
    assert workers_for(32, cores=16) == 1  # small levels stay in-process
    assert workers_for(33, cores=16) == 3  # 16 streams each
    assert workers_for(64, cores=16) == 4
    assert workers_for(256, cores=16) == 8  # half the cores: the engine under test needs the rest
    assert workers_for(256, cores=4) == 2
    assert workers_for(256, cores=2) == 1  # a small box: splitting only adds contention
    assert workers_for(256, requested=3, cores=2) == 3  # asked for: honoured
    assert workers_for(2, requested=8, cores=16) == 2  # never more processes than streams


def test_workers_setting_is_checked_and_recorded():
    with pytest.raises(ConfigError, match="workers"):
        ProbeParams(workers=-1)
    assert ProbeParams(workers=4).to_dict()["workers"] == 4
    engine = OpenAICompatEngine(EngineConfig(name="x", url="http://127.0.0.1:9"))
    with pytest.raises(ConfigError, match="config"):
        Probe(engine, MODEL, ProbeParams(workers=2))  # no config to build the workers' clients from


def test_overhead_of_several_processes_sums_cpu_and_pools_samples():
    from array import array

    a = MeterState(array("q", [1_000_000] * 10), array("q", [100_000] * 10), chunks=10, cpu_s=0.5, wall_s=1.0)
    b = MeterState(array("q", [3_000_000] * 10), array("q", [300_000] * 10), chunks=30, cpu_s=0.9, wall_s=1.0)
    parent = MeterState(array("q"), array("q"), chunks=0, cpu_s=0.1, wall_s=1.2)
    oh = combine([parent, a, b], workers=2)
    assert oh.workers == 2 and oh.chunks == 40
    assert oh.cpu_s == pytest.approx(1.5)
    assert oh.cpu_pct == pytest.approx(125.0)  # of one core over the level's wall time, summed
    assert oh.cpu_pct_busiest == pytest.approx(90.0)
    assert oh.loop_lag_p50_ms == pytest.approx(2.0) and oh.loop_lag_max_ms == pytest.approx(3.0)
    assert oh.cpu_s_per_1000_chunks == pytest.approx(37.5)
    assert any("90% of a CPU core" in w for w in oh.warnings())  # the busiest process, not the sum


def test_levels_stored_before_workers_still_load():
    old = {"concurrency": 1, "attempted": 1, "ok": 1, "errors": {}, "error_rate": 0.0, "window_s": 1.0,
           "itl_kind": "inter-chunk", "tokens_out_total": 1, "token_source": None, "tokens_approximate": False,
           "overhead": {"loop_lag_p50_ms": 1.0, "loop_lag_p99_ms": 2.0, "loop_lag_max_ms": 2.0,
                        "chunk_delay_p50_ms": 0.1, "chunk_delay_p99_ms": 0.2, "cpu_s": 0.8, "cpu_pct": 80.0,
                        "chunks": 10, "cpu_s_per_1000_chunks": 80.0}}
    fig = LevelFigures.from_dict(old)
    assert fig.overhead.workers == 1 and fig.overhead.cpu_pct_busiest is None
    assert any("80% of a CPU core" in w for w in fig.overhead.warnings())


async def test_synthetic_engine_over_several_processes_keeps_the_whole_truth(synthetic_engine):
    sim = synthetic_engine(processes=2, ttft_s=0.01, itl_s=0.002, tokens=8)
    assert len(sim.procs) == 2
    result = await run_probe(sim, ProbeParams(levels=(8,), requests=40, max_tokens=8, workers=1))
    per_process = [len(sim._call(url, "GET", "/_truth")["requests"]) for url in sim.control_urls]
    assert all(n > 0 for n in per_process)  # the kernel spread the connections over both
    truth = sim.truth()
    assert len(truth["requests"]) == sum(per_process)
    tags = {r["tag"] for r in truth["requests"]}
    assert {r.tag for r in result.records[8]} <= tags
    assert truth["max_in_flight"] == 8
    with pytest.raises(ValueError):
        synthetic_engine(processes=2, slots=4)
