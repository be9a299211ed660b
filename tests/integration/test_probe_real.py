"""The probe against real engines from the lab: it must tell llama-server with 1 slot from one with 4, and
measure vLLM with its own token counts. Short runs (small outputs, few requests): CI has 2 cores."""

import pytest

from console.config import SLO, EngineConfig
from console.engines.registry import build_engine
from console.probe.figures import ITL_PER_TOKEN
from console.probe.ladder import Probe
from console.probe.params import ProbeParams


async def probe(url, kind, model, params):
    engine = build_engine(EngineConfig(name=kind, url=url, kind=kind), kind, max_connections=params.connections)
    try:
        # A lenient SLO: this box is slow and shared, and every level must run for the comparison.
        return await Probe(engine, model, params, SLO(ttft_p90_s=120.0, decode_p10_tok_s=0.1)).run()
    finally:
        await engine.aclose()


@pytest.mark.llama
async def test_probe_tells_one_slot_from_four(llama_server, llama_server_np1):
    params = ProbeParams(levels=(1, 4), requests=4, max_tokens=16, prompt_tokens=32, ignore_eos=True)
    four = await probe(llama_server.url, "llamacpp", llama_server.model, params)
    one = await probe(llama_server_np1.url, "llamacpp", llama_server_np1.model, params)
    for result in (four, one):
        assert result.status == "complete"
        assert all(f.ok == f.attempted for f in result.levels)
        assert all(not f.tokens_approximate for f in result.levels)
        assert result.levels[1].tokens_out_mean == 16  # ignore_eos: exactly max_tokens, from the server's count
    f4, f1 = four.levels[1], one.levels[1]  # concurrency 4
    # One slot: each request waits behind three whole replies, so about 3/4 of its time passes before its first
    # token. Four slots start all four at once (sharing 2 CPU cores, so prefill and decode are slower instead).
    share1 = f1.ttft_s.p50 / f1.e2e_s.p50
    share4 = f4.ttft_s.p50 / f4.e2e_s.p50
    assert share1 > 0.65 and share1 - share4 > 0.15, (share1, share4)
    assert f1.decode_tok_s.p50 > f4.decode_tok_s.p50  # the lone slot decodes alone, at full speed
    # The engine's own gauges, read while the level ran, agree.
    assert f1.engine.samples > 0 and f4.engine.samples > 0
    assert f1.engine.running_max == 1 and f4.engine.running_max >= 2


@pytest.mark.vllm
async def test_probe_measures_vllm(vllm_server):
    params = ProbeParams(levels=(1, 2), requests=2, max_tokens=8, prompt_tokens=16, ignore_eos=True)
    result = await probe(vllm_server.url, "vllm", vllm_server.model, params)
    assert result.status == "complete"
    for fig in result.levels:
        assert fig.ok == fig.attempted
        assert fig.token_source == "server usage" and fig.tokens_out_mean == 8
        assert fig.itl_kind == ITL_PER_TOKEN  # continuous usage stats: tokens counted per chunk
        assert fig.engine.samples > 0
    assert result.verdict is not None and result.verdict.max_usable_concurrency is not None
