"""LlamaCppEngine against the real llama-server of the engine lab: single-model mode and router mode."""

from __future__ import annotations

import pytest

from console.config import EngineConfig, Timeouts
from console.engines.base import ChatMessage, ChatRequest, EventKind, Health, Op, TokenSource
from console.engines.llamacpp import LlamaCppEngine
from console.errors import UnsupportedError
from tests.lab_fixtures import LabRouter, LabServer

pytestmark = pytest.mark.llama


def engine(url: str) -> LlamaCppEngine:
    return LlamaCppEngine(EngineConfig(name="lab-llama", url=url, kind="llamacpp",
                                       timeouts=Timeouts.within(60.0, connect_s=3.0)), load_timeout_s=120.0)


def hello(model: str, max_tokens: int = 8) -> ChatRequest:
    return ChatRequest(model=model, messages=(ChatMessage("user", "Say hello in three words."),),
                       max_tokens=max_tokens, temperature=0.0)


async def test_info_models_and_capabilities(llama_server: LabServer):
    async with engine(llama_server.url) as eng:
        info = await eng.info()
        assert info.health is Health.OK and info.version
        assert info.extra["router"] is False and info.extra["total_slots"] == 4
        [model] = await eng.list_models()
        assert model.name == llama_server.model
        assert model.context_length and model.size and model.quantization
        assert [m.name for m in await eng.loaded_models()] == [llama_server.model]
        assert not eng.capabilities.supports(Op.LOAD)
        with pytest.raises(UnsupportedError, match="router mode"):
            await eng.unload(llama_server.model)


async def test_chat_stream_has_content_usage_and_timings(llama_server: LabServer):
    async with engine(llama_server.url) as eng:
        events = [e async for e in eng.chat(hello(llama_server.model))]
    kinds = [e.kind for e in events]
    assert kinds[-2:] == [EventKind.USAGE, EventKind.DONE]
    content = [e for e in events if e.kind is EventKind.CONTENT]
    assert content and all(e.text for e in content)
    usage = events[-2].usage
    assert usage is not None and usage.source is TokenSource.SERVER_USAGE
    assert usage.completion_tokens == len(content)  # llama-server sends one token per chunk
    assert usage.prompt_tokens and usage.prompt_tokens > 0
    assert usage.generation_ms is not None and usage.prompt_ms is not None  # from `timings`
    stamps = [e.t_ns for e in events]
    assert stamps == sorted(stamps)


async def test_metrics_count_the_chat_and_slots_are_listed(llama_server: LabServer):
    async with engine(llama_server.url) as eng:
        before = await eng.metrics()
        async for _ in eng.chat(hello(llama_server.model, max_tokens=4)):
            pass
        after = await eng.metrics()
        slots = await eng.slots()
    assert before.generation_tokens_total is not None and after.generation_tokens_total is not None
    assert after.generation_tokens_total > before.generation_tokens_total
    assert after.running is not None and after.waiting is not None
    assert len(slots) == 4 and all(s.n_ctx for s in slots)


async def test_router_load_swap_unload(router: LabRouter):
    a, b = router.models
    async with engine(router.url) as eng:
        await eng.info()
        assert eng.capabilities.supports(Op.SWAP)
        await eng.load(a)
        assert [(m.name, m.status) for m in await eng.loaded_models()] == [(a, "loaded")]
        result = await eng.swap(a, b)
        assert result.ok, result.error
        assert result.unload_s is not None and result.load_s is not None and result.first_token_s is not None
        assert [(m.name, m.status) for m in await eng.loaded_models()] == [(b, "loaded")]
        snap = await eng.metrics()
        assert any(f'model="{b}"' in key for key in snap.raw)
        assert len(await eng.slots(b)) >= 1
        await eng.unload(b)
        assert await eng.loaded_models() == []


async def test_router_swap_to_a_missing_model_restores_the_old_one(router: LabRouter):
    a = router.models[0]
    async with engine(router.url) as eng:
        await eng.load(a)
        result = await eng.swap(a, "no-such-model")
        assert not result.ok and result.rolled_back
        assert "no-such-model" in (result.error or "")
        assert [(m.name, m.status) for m in await eng.loaded_models()] == [(a, "loaded")]
