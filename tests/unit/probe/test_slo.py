"""SLO judgement, max usable concurrency, the knee, slot-queueing detection and the --slo parser."""

import pytest

from console.config import SLO
from console.errors import ConfigError
from console.probe.figures import LevelFigures
from console.probe.slo import find_knee, judge, max_usable, parse_slo, slot_queueing, verdict
from console.probe.stats import Dist


def dist(v):
    return Dist.of([v] * 10)


def level(n, *, ttft, tok_s, decode=50.0, e2e=None, errors=0.0, ok=10):
    return LevelFigures(
        concurrency=n, attempted=10, ok=ok, errors={}, error_rate=errors, window_s=1.0,
        ttft_s=dist(ttft), ttfa_s=None, e2e_s=dist(e2e if e2e is not None else ttft + 1.0), tpot_s=None,
        decode_tok_s=dist(decode), itl_s=None, itl_kind="per-token", max_stall_s=None, tokens_out_total=0,
        tokens_out_mean=None, tokens_in_mean=None, token_source="server usage", tokens_approximate=False,
        agg_tok_s=tok_s, req_s=1.0, achieved_concurrency=float(n),
    )


def test_each_criterion_fails_on_its_own():
    slo = SLO(ttft_p90_s=1.0, decode_p10_tok_s=10.0, max_error_rate=0.01)
    assert judge(level(1, ttft=0.5, tok_s=10), slo).passed
    assert "TTFT" in judge(level(1, ttft=1.5, tok_s=10), slo).reasons[0]
    assert "decode" in judge(level(1, ttft=0.5, tok_s=10, decode=5.0), slo).reasons[0]
    assert "errors" in judge(level(1, ttft=0.5, tok_s=10, errors=0.05), slo).reasons[0]
    assert not judge(level(1, ttft=0.5, tok_s=10, ok=0), slo).passed


def test_max_usable_needs_every_lower_level_to_pass():
    slo = SLO(ttft_p90_s=1.0)
    levels = [level(1, ttft=0.2, tok_s=10), level(2, ttft=2.0, tok_s=18), level(4, ttft=0.3, tok_s=30)]
    assert max_usable([judge(f, slo) for f in levels]) == 1  # c=4 passing after a failing c=2 does not count
    assert max_usable([judge(level(1, ttft=3.0, tok_s=1), slo)]) is None


def test_knee_is_the_last_level_before_throughput_flattens_and_ttft_jumps():
    levels = [level(1, ttft=0.1, tok_s=40), level(2, ttft=0.1, tok_s=78), level(4, ttft=0.11, tok_s=150),
              level(8, ttft=0.3, tok_s=152), level(16, ttft=0.7, tok_s=151)]
    assert find_knee(levels) == 4
    rising = [level(1, ttft=0.1, tok_s=40), level(2, ttft=0.2, tok_s=70)]  # TTFT doubles but tok/s still rises
    assert find_knee(rising) is None


def test_slot_queueing_is_recognised_and_named_for_ollama():
    # P = 1, service time 1 s: at N users TTFT ≈ 0.1 + (N − 1) × 1 s, decode unchanged.
    levels = [level(1, ttft=0.1, tok_s=40, e2e=1.0), level(2, ttft=1.1, tok_s=40, e2e=2.0),
              level(4, ttft=3.1, tok_s=41, e2e=4.0)]
    knee = find_knee(levels)
    assert knee == 1
    text = slot_queueing(levels, knee, "ollama")
    assert text is not None and "OLLAMA_NUM_PARALLEL=1" in text
    v = verdict(levels, SLO(), engine_kind="ollama")
    assert v.slots_estimate == 1 and v.max_usable_concurrency == 1


def test_slow_decode_is_not_called_slot_queueing():
    levels = [level(1, ttft=0.1, tok_s=40, e2e=1.0), level(2, ttft=1.1, tok_s=40, e2e=2.0, decode=20.0)]
    assert slot_queueing(levels, 1, "ollama") is None


def test_verdict_round_trips():
    from console.probe.slo import Verdict

    v = verdict([level(1, ttft=0.1, tok_s=40), level(2, ttft=5.0, tok_s=41)], SLO(), stopped="x")
    assert Verdict.from_dict(v.to_dict()) == v


def test_parse_slo():
    base = SLO()
    s = parse_slo("ttft_p90=800ms,decode_p10=12,errors=2%", base)
    assert s == SLO(ttft_p90_s=0.8, decode_p10_tok_s=12.0, max_error_rate=0.02)
    assert parse_slo("ttft_p90=2s", base).ttft_p90_s == 2.0
    assert parse_slo("errors=0.05", base).max_error_rate == 0.05
    assert parse_slo(None, base) is base
    for bad in ("ttft_p90=fast", "latency=1s", "errors=150%", "ttft_p90"):
        with pytest.raises(ConfigError):
            parse_slo(bad, base)
