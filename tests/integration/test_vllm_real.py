"""VLLMEngine against the real vLLM (CPU build) of the engine lab: one server for the whole module.

The lab starts vLLM with VLLM_SERVER_DEV_MODE=1 and runtime LoRA on; the CPU build refuses --enable-sleep-mode,
so sleep must come out as unsupported with the reason, and runtime LoRA as supported.
"""

from __future__ import annotations

import pytest

from console.config import EngineConfig, Timeouts
from console.engines.base import ChatMessage, ChatRequest, EventKind, Health, Op, TokenSource
from console.engines.vllm import NO_SLEEP_FLAG, VLLMEngine
from console.errors import NotFoundError
from tests.lab_fixtures import LabVllmServer

pytestmark = pytest.mark.vllm
LORA = "lab-lora"


def engine(server: LabVllmServer) -> VLLMEngine:
    return VLLMEngine(EngineConfig(name="lab-vllm", url=server.url, kind="vllm",
                                   timeouts=Timeouts.within(120.0, connect_s=3.0)))


def hello(model: str) -> ChatRequest:
    return ChatRequest(model=model, messages=(ChatMessage("user", "Say hello in three words."),), max_tokens=6,
                       temperature=0.0)


async def test_health_version_models_and_probed_capabilities(vllm_server: LabVllmServer):
    async with engine(vllm_server) as eng:
        info = await eng.info()
        assert info.health is Health.OK, info.reason
        assert info.version and info.version[0].isdigit()
        assert info.extra == {"dev_mode": True, "sleep_mode": False, "runtime_lora": True}
        assert eng.capabilities.reason(Op.SLEEP) == NO_SLEEP_FLAG
        assert eng.capabilities.supports(Op.LORA_LOAD) and eng.capabilities.supports(Op.UNLOAD)
        [model] = await eng.list_models()
        assert model.name == vllm_server.model and model.context_length == 2048 and model.parent is None
        assert [(m.name, m.status) for m in await eng.loaded_models()] == [(vllm_server.model, "loaded")]


async def test_streaming_chat_with_usage_per_chunk_and_metrics(vllm_server: LabVllmServer):
    async with engine(vllm_server) as eng:
        before = await eng.metrics()
        events = [e async for e in eng.chat(hello(vllm_server.model))]
        after = await eng.metrics()
    assert [e.kind for e in events][-2:] == [EventKind.USAGE, EventKind.DONE]
    content = [e for e in events if e.kind is EventKind.CONTENT]
    assert content
    usage = events[-2].usage
    assert usage is not None and usage.source is TokenSource.SERVER_USAGE and usage.completion_tokens
    # continuous usage stats: every content event knows its token count, and they add up
    assert all(e.tokens is not None for e in content)
    assert sum(e.tokens or 0 for e in content) <= usage.completion_tokens
    assert after.running is not None and after.waiting is not None and after.kv_cache_usage is not None
    assert before.generation_tokens_total is not None and after.generation_tokens_total is not None
    assert after.generation_tokens_total >= before.generation_tokens_total + usage.completion_tokens
    assert after.sleeping is False


async def test_runtime_lora_load_chat_unload(vllm_server: LabVllmServer):
    async with engine(vllm_server) as eng:
        await eng.info()
        await eng.load_lora(LORA, str(vllm_server.lora_path))
        try:
            models = {m.name: m for m in await eng.list_models()}
            assert models[LORA].parent == vllm_server.model
            events = [e async for e in eng.chat(hello(LORA))]
            assert events[-1].kind is EventKind.DONE, events[-1]
            assert any(e.kind is EventKind.CONTENT for e in events)
        finally:
            await eng.unload(LORA)
        assert LORA not in {m.name for m in await eng.list_models()}
        with pytest.raises(NotFoundError):
            await eng.unload(LORA)
