"""Pressure: the same six figures for every kind, each with its source or the reason it is missing."""

from __future__ import annotations

import json

import pytest

from console.config import EngineConfig
from console.engines.base import EngineInfo, Health, LoadedModel, SlotState
from console.engines.llamacpp import LlamaCppEngine
from console.engines.metrics import parse_metrics
from console.engines.poll import EngineStatus, poll_engine
from console.engines.pressure import FIGURES, InFlight, pressure_of
from tests.fakes.hostile_server import HostileServer, Reply
from tests.unit.engines.test_openai_llamacpp import METRICS, single

VLLM = """\
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting{engine="0",model_name="m"} 5.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.42
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 200.0
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 50.0
"""
# Seen on the lab's llama-server: two identical prompts of 47 tokens; the second found 46 in the cache, and
# prompt_tokens_total counts only the processed ones (47 + 1).
LLAMA = "llamacpp:prompt_tokens_total 48\nllamacpp:prompt_tokens_cached_total 46\n" \
        "llamacpp:requests_processing 1\nllamacpp:requests_deferred 0\n"
SGLANG = "sglang:num_running_reqs 2\nsglang:num_queue_reqs 0\nsglang:token_usage 0.1\nsglang:cache_hit_rate 0.75\n"
TGI = "tgi_batch_current_size 4\ntgi_queue_size 7\n"


def status(kind: str, metrics_text: str | None = None, **kw: object) -> EngineStatus:
    info = EngineInfo(kind, "http://127.0.0.1:1", "1", Health.OK)
    metrics = parse_metrics(metrics_text, kind) if metrics_text is not None else None
    return EngineStatus(name="e", url="http://127.0.0.1:1", kind=kind, info=info, metrics=metrics, **kw)  # type: ignore[arg-type]


def values(s: EngineStatus) -> dict[str, float | None]:
    return {f.name: f.value for f in pressure_of(s).figures}


def test_every_figure_is_there_with_a_value_or_a_reason():
    for s in (status("vllm", VLLM), status("ollama"), status("tgi", TGI), status("lmstudio"),
              status("sglang", SGLANG), status("llamacpp", LLAMA), status("openai")):
        p = pressure_of(s)
        assert [f.name for f in p.figures] == list(FIGURES)
        for f in p.figures:
            assert (f.value is None) == bool(f.missing), (s.kind, f)
            assert (f.value is None) or f.source, (s.kind, f)


def test_vllm():
    assert values(status("vllm", VLLM)) == {"running": 3, "waiting": 5, "kv_cache_pct": 42.0, "slots_busy": None,
                                            "slots_total": None, "prompt_cache_hit_pct": 25.0}
    assert "no fixed slots" in (pressure_of(status("vllm", VLLM)).get("slots_busy").missing or "")


def test_llamacpp_cache_hits_add_the_processed_tokens_to_the_cached_ones():
    slots = (SlotState(0, 1024, True), SlotState(1, 1024, False))
    p = pressure_of(status("llamacpp", LLAMA, slots=slots))
    assert p.value("prompt_cache_hit_pct") == round(100 * 46 / 94, 3)
    assert (p.value("slots_busy"), p.value("slots_total")) == (1, 2)
    assert "older builds" in (p.get("kv_cache_pct").missing or "")


def test_sglang_reports_its_own_hit_rate_and_tgi_has_no_kv_figure():
    assert values(status("sglang", SGLANG))["prompt_cache_hit_pct"] == 75.0
    tgi = pressure_of(status("tgi", TGI))
    assert (tgi.value("running"), tgi.value("waiting")) == (4, 7)
    assert "no KV-cache" in (tgi.get("kv_cache_pct").missing or "")


def test_ollama_says_why_nothing_is_there():
    p = pressure_of(status("ollama", loaded=(LoadedModel("m", size=10, size_vram=10),)))
    assert all(f.value is None for f in p.figures)
    assert "gateway" in (p.get("running").missing or "")
    assert "OLLAMA_NUM_PARALLEL" in (p.get("slots_total").missing or "")


def test_a_gateway_in_front_counts_only_what_the_engine_does_not():
    front = InFlight(running=2, waiting=1, source="gateway front")
    ollama = pressure_of(status("ollama"), front)
    assert ollama.get("running").as_json() == {"value": 2.0, "source": "gateway front", "missing": None}
    assert ollama.get("waiting").value == 1.0 and ollama.get("kv_cache_pct").value is None
    vllm = pressure_of(status("vllm", VLLM), front)  # the engine's own queue wins over the gateway's view of it
    assert (vllm.value("running"), vllm.get("running").source) == (3.0, "vllm:num_requests_running")


def test_metrics_off_and_engine_down_say_so():
    off = status("llamacpp", metrics_error="llama-server was started without --metrics")
    assert "without --metrics" in (pressure_of(off).get("running").missing or "")
    assert "without --metrics" in (pressure_of(off).get("kv_cache_pct").missing or "")  # not "older builds"
    down = EngineStatus(name="e", url="u", kind="vllm", error="cannot connect")
    assert "did not answer: cannot connect" in (pressure_of(down).get("waiting").missing or "")


@pytest.fixture
def llama(hostile_server: HostileServer) -> LlamaCppEngine:
    single(hostile_server)
    return LlamaCppEngine(EngineConfig(name="l", url=hostile_server.url, kind="llamacpp"))


async def test_poll_reads_the_slots_of_llamacpp(llama: LlamaCppEngine):
    async with llama:
        s = await poll_engine(llama)
    assert s.error is None and s.slots is not None
    p = pressure_of(s)
    assert (p.value("slots_busy"), p.value("slots_total"), p.value("running"), p.value("waiting")) == (1, 4, 1, 2)
    assert METRICS  # the metrics the scripted server sends


async def test_no_slots_flag_is_the_reason(hostile_server: HostileServer, llama: LlamaCppEngine):
    hostile_server.route("GET", "/slots", Reply(status=501, body=json.dumps(
        {"error": {"code": 501, "message": "This server does not support slots endpoint.",
                   "type": "not_supported_error"}})))
    async with llama:
        s = await poll_engine(llama)
    assert s.error is None and s.slots is None  # not a failure of the poll
    assert "--no-slots" in (pressure_of(s).get("slots_total").missing or "")
