"""The probe against the synthetic engine, checked against what the engine actually DID (its own stamps), not
what it was configured to do. The engine runs in another process; perf_counter_ns is CLOCK_MONOTONIC on Linux, one
clock for every process of the host (checked below), so the engine's arrival and send stamps and the probe's send
and arrival stamps can be subtracted. The engine's TTFT runs from its arrival stamp of the request, so the probe's
TTFT error holds the send leg (the request's way into the engine) as well as the first chunk's way back."""

import asyncio
import itertools
import statistics
import sys
import time

import pytest

from console.config import SLO, EngineConfig
from console.engines.openai import OpenAICompatEngine
from console.probe.figures import ITL_PER_CHUNK, ITL_PER_TOKEN
from console.probe.ladder import Probe
from console.probe.params import ProbeParams
from console.probe.record import ErrorKind
from tests.fakes.synthetic_engine import MODEL, Sent

OUTCOME_KIND = {"ok": None, "busy": ErrorKind.BUSY, "disconnect": ErrorKind.DISCONNECT,
                "empty": ErrorKind.EMPTY, "stall": ErrorKind.TIMEOUT}


def engine_for(sim, connections=40):
    return OpenAICompatEngine(EngineConfig(name="sim", url=sim.url), max_connections=connections)


async def probe(sim, params, slo=None):
    engine = engine_for(sim, params.connections)
    try:
        return await Probe(engine, MODEL, params, slo or SLO()).run()
    finally:
        await engine.aclose()


def true_figures(rec, truth):
    """TTFT and TPOT as the engine delivered them, from its own stamps: its arrival of the request to its send of
    the first content chunk, and the pace of its sends after that."""
    sent = Sent.of(truth)
    return sent.ttft_s, sent.tpot_s


WAY_BACK_BOUND_S = 0.005  # generous: a few hundred µs on a quiet box, ms when neighbours take the 2 cores


def way_back_s(records, truth) -> float:
    """Median of the first content chunk's send (engine) → its arrival stamp (probe): what the probe adds to TTFT
    once the request is in, the part its own stamping decides."""
    return statistics.median((r.t_first_ns - truth[r.tag]["chunks"][0][0]) / 1e9 for r in records)


def within(measured: float, truth: float, *, rel: float = 0.02, abs_s: float = 0.001) -> bool:
    """The target: within 2 % AND within 1 ms of the engine's figure."""
    return abs(measured - truth) <= min(rel * truth, abs_s)


def test_the_engine_and_the_probe_share_one_clock():
    if sys.platform != "linux":
        pytest.skip("perf_counter is CLOCK_MONOTONIC, one clock for every process, on Linux")
    assert time.get_clock_info("perf_counter").implementation == "clock_gettime(CLOCK_MONOTONIC)"


@pytest.mark.parametrize("streams", [1, 16])
async def test_ttft_tpot_itl_against_the_engine_stamps(synthetic_engine, streams):
    """The synthetic engine's arrival and send stamps are the truth. TPOT and ITL (medians of per-request and
    per-gap figures) must be within 2 % and 1 ms of it. TTFT is never below the engine's, and what the probe adds
    to it on the way back (the first chunk's send → the probe's arrival stamp) is held to a generous 5 ms. TTFT
    also holds the send leg (the probe's connect and write, the engine's accept and read), which on this shared
    2-core box grows with the load of the box and, at 16 streams, with the burst a closed loop sends at once
    (2.5-31 % seen): bounded here only at one stream, generously (10 %); bench/probe_accuracy.py prints every
    figure against the target (docs/probe.md)."""
    sim = synthetic_engine(ttft_s=0.2, itl_s=0.02, tokens=24)
    result = await probe(sim, ProbeParams(levels=(streams,), requests=max(16, 2 * streams), max_tokens=24))
    fig, records, truth = result.levels[0], result.records[streams], sim.truth_by_tag()
    assert fig.ok == len(records) and fig.tokens_out_total == 24 * len(records)
    sent = {r.tag: Sent.of(truth[r.tag]) for r in records}
    for rec in records:
        s = sent[rec.tag]
        # One clock across the two processes: the request reaches the engine after the probe sent it, and every
        # chunk reaches the probe after the engine sent it (two clocks would break one of these).
        assert rec.t_send_ns < s.arrival_ns
        arrivals = itertools.accumulate(rec.gaps_ns, initial=rec.t_first_ns)
        assert all(a > c[0] for a, c in zip(arrivals, truth[rec.tag]["chunks"], strict=True))
        assert rec.ttft_s > s.ttft_s
    engine_tpot = statistics.median(s.tpot_s for s in sent.values())
    engine_itl = statistics.median(g for s in sent.values() for g in s.gaps_s)
    assert within(fig.tpot_s.p50, engine_tpot), (fig.tpot_s.p50, engine_tpot)
    assert within(fig.itl_s.p50, engine_itl), (fig.itl_s.p50, engine_itl)
    assert way_back_s(records, truth) <= WAY_BACK_BOUND_S
    engine_ttft = statistics.median(s.ttft_s for s in sent.values())
    assert fig.ttft_s.p50 > engine_ttft
    if streams == 1:
        assert fig.ttft_s.p50 == pytest.approx(engine_ttft, rel=0.10)


async def test_known_ttft_and_itl_recovered_within_2_percent(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.2, itl_s=0.02, tokens=24)  # role-only chunk and `: ping` sent at once
    result = await probe(sim, ProbeParams(levels=(1,), requests=6, max_tokens=24))
    fig = result.levels[0]
    records = result.records[1]
    truth = sim.truth_by_tag()
    assert fig.ok == 6 and fig.tokens_out_total == 6 * 24 and fig.token_source == "server usage"

    true_ttft, true_tpot = zip(*(true_figures(r, truth[r.tag]) for r in records), strict=True)
    for rec, t in zip(records, true_ttft, strict=True):
        assert rec.ttft_s >= t  # the request cannot arrive before it was sent, nor a chunk before it was sent
    assert way_back_s(records, truth) <= WAY_BACK_BOUND_S
    assert fig.ttft_s.p50 == pytest.approx(statistics.median(true_ttft), rel=0.10)  # with the send leg, see above
    assert fig.tpot_s.p50 == pytest.approx(statistics.median(true_tpot), rel=0.02)
    # ...and close to the configuration: TTFT also holds the request's trip into the engine (a strict lower
    # bound, slack above); the token pace is the engine's alone.
    assert 0.2 <= fig.ttft_s.p50 <= 0.2 * 1.05
    assert fig.tpot_s.p50 == pytest.approx(0.02, rel=0.02)
    # the role-only first chunk went out ~200 ms before the first token; a naive TTFT would be ≈ 0
    assert min(r.ttft_s for r in records) > 0.19
    assert fig.itl_kind == ITL_PER_CHUNK and fig.itl_s.p50 == pytest.approx(0.02, rel=0.05)
    assert fig.achieved_concurrency == pytest.approx(1.0, rel=0.05)


async def test_four_tokens_per_chunk_counted_from_usage(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.05, itl_s=0.01, tokens=32, tokens_per_chunk=4)
    result = await probe(sim, ProbeParams(levels=(1,), requests=4, max_tokens=32))
    fig = result.levels[0]
    truth = sim.truth_by_tag()
    assert fig.tokens_out_mean == 32  # not the 8 chunks
    assert not fig.tokens_approximate
    assert fig.itl_kind == ITL_PER_CHUNK  # no per-chunk counts: gaps are chunk gaps, labelled so
    sent_gaps = [(b[0] - a[0]) / 1e9 for r in result.records[1] for a, b in itertools.pairwise(truth[r.tag]["chunks"])]
    assert fig.itl_s.p50 == pytest.approx(statistics.median(sent_gaps), rel=0.02)
    assert statistics.median(sent_gaps) == pytest.approx(4 * 0.01, rel=0.05)  # one chunk every 4 tokens
    # The first text really is 3 tokens after the first token was "generated", and the probe's stamp is that chunk.
    assert way_back_s(result.records[1], truth) <= WAY_BACK_BOUND_S
    assert fig.ttft_s.p50 >= 0.05 + 3 * 0.01


async def test_four_tokens_per_chunk_with_continuous_usage_gives_per_token_itl(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.05, itl_s=0.01, tokens=32, tokens_per_chunk=4, continuous_usage=True)
    result = await probe(sim, ProbeParams(levels=(1,), requests=4, max_tokens=32))
    fig = result.levels[0]
    assert fig.itl_kind == ITL_PER_TOKEN
    assert fig.itl_s.p50 == pytest.approx(0.01, rel=0.05)
    assert all(r.first_chunk_tokens == 4 for r in result.records[1])
    assert fig.tpot_s.p50 == pytest.approx(0.01, rel=0.03)  # (t_last − t_first) / (32 − 4)


async def test_without_usage_the_chunk_count_is_flagged(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.02, itl_s=0.005, tokens=8, tokens_per_chunk=2, usage=False)
    fig = (await probe(sim, ProbeParams(levels=(1,), requests=3, max_tokens=8))).levels[0]
    assert fig.tokens_approximate and fig.token_source == "counted chunks"
    assert fig.tokens_out_mean == 4  # 4 chunks of 2 tokens: under-counted, and said so
    assert any("approximate" in w for w in fig.warnings)


async def test_four_slots_with_fifo_queue_give_max_usable_four(synthetic_engine):
    ttft, itl, tokens = 0.1, 0.02, 24
    service = ttft + (tokens - 1) * itl  # 0.56 s: long next to the client's round trip between two requests
    sim = synthetic_engine(ttft_s=ttft, itl_s=itl, tokens=tokens, slots=4)
    # Above the slots every request waits one service time: TTFT ≈ ttft + service. An SLO between one and two
    # service times, below ttft + service, passes c ≤ 4 and fails c = 8.
    slo = SLO(ttft_p90_s=service + ttft / 2, decode_p10_tok_s=10.0)
    result = await probe(sim, ProbeParams(levels=(1, 2, 4, 8), requests=4, max_tokens=tokens), slo)
    by_n = {f.concurrency: f for f in result.levels}
    assert result.verdict.max_usable_concurrency == 4
    assert result.verdict.knee == 4
    assert result.verdict.queueing is not None and "4 request(s) at a time" in result.verdict.queueing
    assert by_n[8].ttft_s.p50 == pytest.approx(ttft + service, rel=0.15)
    assert by_n[8].agg_tok_s == pytest.approx(by_n[4].agg_tok_s, rel=0.10)  # the slots are the ceiling
    assert by_n[8].achieved_concurrency == pytest.approx(8, rel=0.10)  # the client kept 8 in flight


async def test_injected_failures_counted_by_kind_and_left_out(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.02, itl_s=0.004, tokens=16, busy_rate=0.1, disconnect_rate=0.1,
                           empty_rate=0.1, stall_rate=0.1, stall_s=3.0, seed=11)
    result = await probe(sim, ProbeParams(levels=(2,), requests=40, max_tokens=16, timeout_s=1.0))
    fig = result.levels[0]
    truth = sim.truth_by_tag()
    records = result.records[2]
    expected = {}
    for rec in records:
        kind = OUTCOME_KIND[truth[rec.tag]["outcome"]]
        assert rec.error is kind, (rec.tag, rec.error_message)
        if kind is not None:
            expected[kind.value] = expected.get(kind.value, 0) + 1
    assert fig.errors == expected
    assert len(expected) == 4  # every kind occurred at least once with this seed
    assert fig.ttft_s.n == fig.ok == sum(1 for r in records if r.ok)
    assert fig.ttft_s.max < 0.5  # no stalled or broken request leaked into the latency figures
    assert fig.error_rate == pytest.approx(sum(expected.values()) / 40)


async def test_cancel_keeps_completed_levels(synthetic_engine):
    sim = synthetic_engine(ttft_s=0.02, itl_s=0.005, tokens=8)
    engine = engine_for(sim)
    first_level = asyncio.Event()

    async def on_level(fig):
        first_level.set()

    p = Probe(engine, MODEL, ProbeParams(levels=(1, 2, 4), requests=4, max_tokens=8), SLO(), on_level=on_level)
    task = asyncio.create_task(p.run())
    await first_level.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await engine.aclose()
    assert p.result.status == "cancelled"
    assert [f.concurrency for f in p.result.levels] == [1]
    assert p.result.verdict is not None and p.result.verdict.stopped == "cancelled"
