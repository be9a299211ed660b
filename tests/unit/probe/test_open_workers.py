"""An open-loop rate sent from worker processes keeps the in-process semantics: one schedule from the run's seed
(the same arrivals whatever W), every measured arrival once, latencies from the due time, the in-flight cap split
so the total holds, the same verdict at a known rate limit, and no process left behind on cancel. Checked against
the synthetic engine; workers=2 is forced so these run on a 2-core box too."""

import contextlib
from urllib.parse import urlsplit

import psutil
import pytest

from console.config import SLO
from console.probe.arrivals import dropped, measured_due, share_of_cap
from console.probe.ladder import LevelProgress
from console.probe.openloop import open_workers
from console.probe.params import ProbeParams
from console.probe.record import ErrorKind
from tests.unit.probe.test_store_cli import cli_env, run_json  # noqa: F401  (cli_env is a fixture)
from tests.unit.probe.test_workers import cancel_when, probe_children
from tests.unit.probe.test_workers import run_probe as run_workers_probe

OPEN_SLO = SLO(ttft_p90_s=10.0, decode_p10_tok_s=1.0)


async def run_probe(sim, params, slo=None, **kwargs):
    return await run_workers_probe(sim, params, slo or OPEN_SLO, **kwargs)


def engine_connections(proc: psutil.Process, port: int) -> int:
    with contextlib.suppress(psutil.Error):
        return sum(1 for c in proc.net_connections(kind="tcp") if c.raddr and c.raddr.port == port)
    return 0


async def test_a_rate_from_two_workers_sends_the_one_schedule_from_both(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.05, itl_s=0.005, tokens=4)
    port = urlsplit(sim.url).port
    params = ProbeParams(rates=(40.0,), requests=40, max_tokens=4, workers=2)
    seen: dict[int, int] = {}

    def on_progress(p: LevelProgress) -> None:
        if p.phase == "measure":  # the workers are sending: each holds connections of its own to the engine
            for child in probe_children(sim):
                seen[child.pid] = max(seen.get(child.pid, 0), engine_connections(child, port))

    result = await run_probe(sim, params, on_progress=on_progress)
    fig, records = result.levels[0], result.records[params.max_in_flight]
    assert fig.overhead.workers == 2
    assert len(seen) == 2 and all(n > 0 for n in seen.values())  # both workers sent arrivals
    assert [r.index for r in records] == list(range(40)) and all(r.ok for r in records)
    measured = [r["tag"] for r in sim.truth()["requests"] if r["tag"] and r["tag"].startswith("o0-r")]
    assert sorted(measured) == sorted(r.tag for r in records)  # each measured arrival reached the engine once
    # The Poisson schedule is the one drawn from the seed: the same gaps as measured_due gives for any t0.
    t0 = records[0].t_sched_ns
    due = measured_due(params, 40.0, 0, 0)
    assert [r.t_sched_ns - t0 for r in records] == [t - due[0] for t in due]
    assert fig.offered_rate == pytest.approx(40.0, rel=0.35)  # Poisson: 40 draws around the mean
    assert fig.offered_rate == pytest.approx(39 / ((due[-1] - due[0]) / 1e9))
    truth = sim.truth_by_tag()
    for r in records:
        assert truth[r.tag]["arrival_ns"] >= r.t_sched_ns  # nothing reached the engine before it was due
        assert r.ttft_s >= r.send_lag_s + 0.045  # latency from the due time, holding the send lag
    assert fig.send_lag_s.max < 0.5  # generous: a busy 2-core box; bench/probe_open_loop.py prints the figures


async def test_constant_arrivals_keep_the_asked_rate_from_two_workers(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.05, itl_s=0.005, tokens=4)
    params = ProbeParams(rates=(50.0,), arrivals="constant", requests=40, max_tokens=4, workers=2)
    result = await run_probe(sim, params)
    fig = result.levels[0]
    assert fig.overhead.workers == 2 and fig.ok == 40
    assert fig.offered_rate == pytest.approx(50.0, rel=0.02)
    assert fig.req_s == pytest.approx(50.0, rel=0.2)
    assert fig.send_lag_s.p50 < 0.1


async def test_a_known_rate_limit_gives_the_same_verdict_from_one_or_two_workers(synthetic_engine):
    ttft, itl, tokens, slots = 0.05, 0.01, 6, 2
    capacity = slots / (ttft + (tokens - 1) * itl)  # 2 slots × 1 / 0.1 s = 20 requests/s
    sim = synthetic_engine(ttft_s=ttft, itl_s=itl, tokens=tokens, slots=slots)
    slo = SLO(ttft_p90_s=1.0, decode_p10_tok_s=10.0)
    for workers in (1, 2):
        sim.reset()
        params = ProbeParams(rates=(10.0, 40.0), arrivals="constant", requests=40, max_tokens=tokens,
                             max_in_flight=4, workers=workers)
        result = await run_probe(sim, params, slo)
        low, high = result.levels
        assert low.overhead.workers == high.overhead.workers == workers
        assert low.errors == {} and low.req_s == pytest.approx(10.0, rel=0.15)
        assert high.offered_rate == pytest.approx(40.0, rel=0.02)
        assert high.req_s == pytest.approx(capacity, rel=0.25)
        assert high.errors.get("dropped", 0) > 0
        assert sim.truth()["max_in_flight"] <= 4  # the split cap still holds the total
        assert result.verdict.max_rate == 10.0  # drops are failed requests: 40/s breaks errors ≤ 1 %


async def test_cancel_mid_rate_leaves_no_worker_behind(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.02, itl_s=0.02, tokens=25)  # a reply takes 0.5 s
    probe = await cancel_when(sim, ProbeParams(rates=(5.0,), requests=20, max_tokens=25, workers=2),
                              lambda p: p.rate is not None and p.phase == "measure")
    assert probe.result.status == "cancelled" and probe.result.levels == []


@pytest.mark.usefixtures("cli_env")
def test_probe_command_sends_a_rate_from_workers_and_records_it(capsys):
    code, doc = run_json(capsys, "probe", "sim", "synthetic", "--rate", "10", "--arrivals", "constant",
                         "--requests", "10", "--max-tokens", "8", "--workers", "2", "--json", "--no-discover")
    assert code == 0 and doc["status"] == "complete"
    assert [o["workers"] for o in doc["overhead"].values()] == [2]
    assert doc["levels"][0]["ok"] == 10 and doc["levels"][0]["offered_rate"] == pytest.approx(10.0, rel=0.02)


def test_worker_count_follows_the_expected_requests_in_flight():
    params = ProbeParams(rates=(10.0, 400.0))
    assert open_workers(params, 10.0, 0.1, cores=16) == 1  # 1 in flight
    assert open_workers(params, 400.0, 0.1, cores=16) == 3  # 40 in flight: 16 each, as the closed loop
    assert open_workers(params, 400.0, 2.0, cores=16) == 8  # capped at 256 in flight, on half the cores
    assert open_workers(params, 400.0, None, cores=16) == 8  # no preflight: the cap is the expectation
    assert open_workers(params, 400.0, 2.0, cores=2) == 1  # a small box stays in-process
    assert open_workers(ProbeParams(rates=(1.0,), workers=2), 1.0, 0.1, cores=2) == 2  # --workers forces it
    assert open_workers(ProbeParams(rates=(1.0,), workers=4, max_in_flight=3), 1.0, 0.1) == 3  # one slot each


def test_the_in_flight_cap_is_split_so_the_total_holds():
    for cap in (1, 2, 7, 256):
        for workers in range(1, min(cap, 8) + 1):
            shares = [share_of_cap(cap, w, workers) for w in range(workers)]
            assert sum(shares) == cap and max(shares) - min(shares) <= 1 and min(shares) >= 1
    assert "its worker's 3 of the 7" in dropped(0, "o0-r0", 0, 7, 3).error_message
    assert dropped(0, "o0-r0", 0, 7).error is ErrorKind.DROPPED
