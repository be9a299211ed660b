"""The probe through the Ollama adapter against the Ollama contract server with OLLAMA_NUM_PARALLEL=1: token
counts from eval_count, the engine-side figures from the final stats, and the knee at one request at a time."""

from console.config import SLO, EngineConfig
from console.engines.registry import build_engine
from console.probe.ladder import Probe
from console.probe.params import ProbeParams
from tests.fakes.ollama_server import FakeModel, ollama_contract_server, slow


async def test_ollama_one_slot():
    with ollama_contract_server([FakeModel("llama3.2:1b", scenario=slow(0.02, 0.05))], num_parallel=1) as fake:
        params = ProbeParams(levels=(1, 2, 4), requests=4, max_tokens=16)
        engine = build_engine(EngineConfig(name="o", url=fake.url, kind="ollama"), "ollama",
                              max_connections=params.connections)
        try:
            result = await Probe(engine, "llama3.2:1b", params, SLO(ttft_p90_s=5.0)).run()
        finally:
            await engine.aclose()
    assert fake.max_active == 1
    by_n = {f.concurrency: f for f in result.levels}
    for fig in result.levels:
        assert fig.ok == fig.attempted and fig.token_source == "ollama eval_count" and not fig.tokens_approximate
        assert fig.engine.server_decode_tok_s_p50 is not None and fig.engine.queue_ms_p50 is not None
        assert fig.engine.cold_loads == 0  # the warm-up round absorbed the model load
    # one request at a time: throughput stays flat while the first token waits behind whole replies
    assert by_n[4].agg_tok_s < 1.1 * by_n[1].agg_tok_s
    assert by_n[2].ttft_s.p50 > 2 * by_n[1].ttft_s.p50
    assert result.verdict.knee == 1
