"""Capacity answers against the synthetic engine, whose limits are known: bisection lands on its slot count, the
open loop's achieved rate and goodput flatten at its service rate, latencies run from the scheduled arrival (no
coordinated omission), the in-flight cap drops instead of delaying, the level's intervals are the ones
console/probe/intervals.py gives for its records, and the noise guard fires on a drifting engine only."""

import asyncio
import statistics
import time

import pytest

from console.config import SLO
from console.errors import ConfigError
from console.probe.intervals import bootstrap, wilson
from console.probe.openloop import gaps
from console.probe.params import ProbeParams, parse_rates
from console.probe.record import ErrorKind
from console.probe.slo import NOISE_WARN
from tests.unit.probe.test_accuracy import probe


async def test_bisection_lands_exactly_on_the_slot_count(synthetic_engine):
    ttft, itl, tokens = 0.1, 0.01, 10
    sim = synthetic_engine(ttft_s=ttft, itl_s=itl, tokens=tokens, slots=3)
    # Up to 3 users every request has a slot (TTFT ≈ 100 ms); a fourth always queues behind a reply of 190 ms,
    # which puts TTFT p90 well above 130 ms at every level above the slots.
    slo = SLO(ttft_p90_s=ttft + 0.03, decode_p10_tok_s=10.0)
    params = ProbeParams(levels=(1, 2, 8), requests=8, max_tokens=tokens, precision=1, verdict="point")
    result = await probe(sim, params, slo)
    assert [(f.concurrency, f.phase) for f in result.levels] == [
        (1, "ladder"), (2, "ladder"), (8, "ladder"), (5, "bisection"), (3, "bisection"), (4, "bisection")]
    assert result.verdict.max_usable_concurrency == 3
    assert result.verdict.bisected == (5, 3, 4)
    # Without bisection the same ladder can only say 2.
    plain = await probe(sim, ProbeParams(levels=(1, 2, 8), requests=8, max_tokens=tokens, verdict="point"), slo)
    assert plain.verdict.max_usable_concurrency == 2 and plain.verdict.bisected == ()


async def test_a_coarser_precision_stops_bisecting_sooner(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.1, itl_s=0.01, tokens=10, slots=3)
    params = ProbeParams(levels=(1, 8), requests=8, max_tokens=10, precision=4, verdict="point")
    result = await probe(sim, params, SLO(ttft_p90_s=0.13, decode_p10_tok_s=10.0))
    assert result.verdict.bisected == (4,)  # 1..8 → 1..4 (4 fails): a gap of 3 ≤ 4
    assert result.verdict.max_usable_concurrency == 1


async def test_open_loop_achieved_rate_and_goodput_flatten_at_the_service_rate(synthetic_engine):
    ttft, itl, tokens, slots = 0.05, 0.01, 6, 2
    capacity = slots / (ttft + (tokens - 1) * itl)  # 2 slots × 1 / 0.1 s = 20 requests/s
    sim = synthetic_engine(ttft_s=ttft, itl_s=itl, tokens=tokens, slots=slots)
    params = ProbeParams(rates=(10.0, 30.0, 60.0), arrivals="constant", requests=50, max_tokens=tokens,
                         max_in_flight=4)
    result = await probe(sim, params, SLO(ttft_p90_s=1.0, decode_p10_tok_s=10.0))
    by_rate = {f.rate: f for f in result.levels}
    assert all(f.phase == "open" for f in result.levels)
    low, high = by_rate[10.0], by_rate[30.0]
    assert low.offered_rate == pytest.approx(10.0, rel=0.02)
    assert low.req_s == pytest.approx(10.0, rel=0.15) and low.goodput == pytest.approx(low.req_s)
    assert low.errors == {}
    # Above capacity the engine serves what its slots allow; the rest are dropped at the cap, not queued forever.
    assert high.offered_rate == pytest.approx(30.0, rel=0.02)
    assert high.req_s == pytest.approx(capacity, rel=0.25)
    assert high.goodput == pytest.approx(capacity, rel=0.25)
    assert high.errors.get("dropped", 0) > 0
    assert by_rate[60.0].req_s == pytest.approx(capacity, rel=0.25)  # twice the rate, the same throughput
    assert by_rate[60.0].errors["dropped"] > high.errors["dropped"]
    assert result.verdict.max_rate == 10.0  # drops are failed requests: 30/s breaks errors ≤ 1 %
    assert result.verdict.max_usable_concurrency is None


async def test_latency_runs_from_the_scheduled_arrival_not_the_late_send(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.05, itl_s=0.005, tokens=4)
    params = ProbeParams(rates=(20.0,), arrivals="constant", requests=20, max_tokens=4, warmup=False)

    async def block_the_loop():
        await asyncio.sleep(0.3)
        time.sleep(0.4)  # noqa: ASYNC251 - the point: the client stalls, so arrivals due meanwhile are sent late

    blocker = asyncio.create_task(block_the_loop())
    result = await probe(sim, params, SLO(ttft_p90_s=10.0, decode_p10_tok_s=1.0))
    await blocker
    records = [r for r in result.records[params.max_in_flight] if r.ok]
    fig = result.levels[0]
    late = [r for r in records if r.send_lag_s > 0.1]
    assert len(late) >= 4  # about 8 arrivals fell inside the 400 ms stall
    for r in records:
        # TTFT holds the send lag: a naive client timing from its own send would report ≈ 50 ms for every one.
        assert r.ttft_s >= r.send_lag_s + 0.045
    assert fig.send_lag_s.max >= 0.2
    assert fig.ttft_s.max >= 0.25


async def test_requests_over_the_in_flight_cap_are_dropped_not_delayed(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.3, itl_s=0.01, tokens=4)
    params = ProbeParams(rates=(50.0,), arrivals="constant", requests=20, max_tokens=4, max_in_flight=2)
    result = await probe(sim, params, SLO(ttft_p90_s=10.0, decode_p10_tok_s=1.0))
    records = result.records[2]
    dropped = [r for r in records if r.error is ErrorKind.DROPPED]
    sent = [r for r in records if r.error is not ErrorKind.DROPPED]
    assert len(records) == 20 and dropped and sent
    assert len(sent) <= 4  # 2 at a time, each 330 ms, over a 400 ms schedule
    assert all(r.send_lag_s < 0.2 for r in sent)
    fig = result.levels[0]
    assert fig.errors["dropped"] == len(dropped)
    assert fig.slo_met == len(sent) and fig.slo_attainment == pytest.approx(len(sent) / 20)


def test_poisson_gaps_are_seeded_and_average_one_over_the_rate():
    params = ProbeParams(rates=(5.0,))
    a, b = gaps(params, 5.0, 0), gaps(params, 5.0, 0)
    draws = [a() for _ in range(4000)]
    assert draws[:50] == [b() for _ in range(50)]
    assert statistics.fmean(draws) == pytest.approx(0.2, rel=0.05)
    assert statistics.stdev(draws) == pytest.approx(0.2, rel=0.08)  # exponential: sd = mean
    assert gaps(ProbeParams(rates=(5.0,), arrivals="constant"), 5.0, 0)() == 0.2


async def test_level_intervals_are_those_of_its_records(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.05, itl_s=0.005, tokens=8)
    slo = SLO(ttft_p90_s=0.053, decode_p10_tok_s=10.0)  # tight: some requests miss it on a busy box
    result = await probe(sim, ProbeParams(levels=(2,), requests=24, max_tokens=8), slo)
    fig, records = result.levels[0], result.records[2]
    ttft = [r.ttft_s for r in records if r.ok]
    met = sum(1 for r in records if r.ok and r.ttft_s <= slo.ttft_p90_s and r.decode_tok_s >= 10.0)
    assert fig.slo_met == met
    assert fig.slo_attainment_ci == wilson(met, len(records))
    lo, hi = fig.interval("ttft_s", "p90")
    assert lo <= fig.ttft_s.p90 <= hi
    # The same seed the level used: recomputing from the records gives the very interval stored.
    assert fig.ci["ttft_s"]["p50"] == bootstrap(ttft, [50, 90, 99], seed=1234 * 7919 + 2 * 31)[50]
    assert fig.interval("ttft_s", "p99") is None  # n < 100


async def test_pessimistic_verdict_fails_a_level_whose_interval_crosses_the_target(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.05, itl_s=0.005, tokens=8)
    first = await probe(sim, ProbeParams(levels=(1,), requests=12, max_tokens=8), SLO())
    fig = first.levels[0]
    _, hi = fig.interval("ttft_s", "p90")
    assert hi > fig.ttft_s.p90  # twelve replies on a real clock never tie
    target = (fig.ttft_s.p90 + hi) / 2  # between the point figure and the interval's upper end
    slo = SLO(ttft_p90_s=target, decode_p10_tok_s=1.0)
    from console.probe.slo import judge
    assert judge(fig, slo, "point").passed
    pessimistic = judge(fig, slo, "pessimistic")
    assert not pessimistic.passed and "upper bound" in pessimistic.reasons[0]


async def test_noise_guard_quiet_on_a_steady_engine_and_warns_on_a_drifting_one(synthetic_engine):
    params = ProbeParams(levels=(1, 2), requests=10, max_tokens=6, noise_guard=True)
    steady = await probe(synthetic_engine(ttft_s=0.1, itl_s=0.01, tokens=6), params, SLO())
    assert [(f.concurrency, f.phase) for f in steady.levels] == [(1, "ladder"), (1, "noise"), (2, "ladder")]
    assert steady.verdict.noise["spread"] < NOISE_WARN and steady.verdict.noise["warning"] is None
    # Each request served makes the next TTFT 2 % longer: c=1's second run is ~25 % slower than its first.
    drifting = await probe(synthetic_engine(ttft_s=0.1, itl_s=0.01, tokens=6, slowdown=0.02), params, SLO())
    noise = drifting.verdict.noise
    assert noise["ttft_spread"] > NOISE_WARN and "noisy" in noise["warning"]


def test_bad_open_loop_and_bisection_options_are_one_line_errors():
    for kwargs in ({"rates": (0.0,)}, {"rates": (5.0, 2.0)}, {"arrivals": "bursty"}, {"max_in_flight": 0},
                   {"precision": -1}, {"verdict": "optimistic"}):
        with pytest.raises(ConfigError):
            ProbeParams(**kwargs)
    for text in ("a,b", "nan", ""):
        with pytest.raises(ConfigError):
            parse_rates(text)
    assert parse_rates("0.5, 2,10") == (0.5, 2.0, 10.0)
