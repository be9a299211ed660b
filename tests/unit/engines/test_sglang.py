"""SGLang adapter against the SGLang contract server (reference/engines-api.md §3)."""

from __future__ import annotations

import pytest

from console.config import EngineConfig, Timeouts
from console.engines.base import ChatMessage, ChatRequest, EventKind, Health, Op, TokenSource
from console.engines.sglang import SGLangEngine
from console.errors import AuthError, BadResponseError, BusyError, StreamError, UnsupportedError
from tests.fakes.openai_family import ChatScenario, FakeSGLang

REQ = ChatRequest(model="Qwen/Qwen2.5-0.5B-Instruct", messages=(ChatMessage("user", "why is the sky blue"),))


def engine(fake: FakeSGLang, **cfg: object) -> SGLangEngine:
    return SGLangEngine(EngineConfig(name="sg", url=fake.url, kind="sglang",
                                     timeouts=Timeouts.within(5.0, connect_s=1.0), **cfg))  # type: ignore[arg-type]


async def test_info_reads_health_and_version_once(sglang_server: FakeSGLang):
    async with engine(sglang_server) as eng:
        first = await eng.info()
        second = await eng.info()
    assert (first.kind, first.health, first.version) == ("sglang", Health.OK, "0.5.4")
    assert first.latency_ms is not None and first.latency_ms >= 0
    assert second.version == "0.5.4"
    assert len(sglang_server.requests_to("/get_server_info")) == 1
    assert len(sglang_server.requests_to("/health")) == 2


async def test_starting_server_is_loading_and_chat_is_busy(sglang_server: FakeSGLang):
    sglang_server.starting = True
    async with engine(sglang_server) as eng:
        info = await eng.info()
        assert info.health is Health.LOADING
        assert "503" in info.reason
        with pytest.raises(BusyError):
            async for _ in eng.chat(REQ):
                pass


async def test_models_context_from_max_model_len(sglang_server: FakeSGLang):
    async with engine(sglang_server) as eng:
        models = await eng.list_models()
        loaded = await eng.loaded_models()
    assert [(m.name, m.context_length) for m in models] == [("Qwen/Qwen2.5-0.5B-Instruct", 32768)]
    assert [(m.name, m.context_length, m.status) for m in loaded] == [("Qwen/Qwen2.5-0.5B-Instruct", 32768, "loaded")]


async def test_chat_stream_content_and_server_usage(sglang_server: FakeSGLang):
    async with engine(sglang_server) as eng:
        events = [ev async for ev in eng.chat(REQ)]
    text = "".join(e.text for e in events if e.kind is EventKind.CONTENT)
    assert text == sglang_server.reply
    usage = next(e.usage for e in events if e.kind is EventKind.USAGE)
    assert usage is not None and usage.source is TokenSource.SERVER_USAGE
    assert usage.completion_tokens == len(sglang_server.reply.split())
    assert usage.prompt_tokens == len(["why", "is", "the", "sky", "blue"]) + 3
    assert events[-1].kind is EventKind.DONE and events[-1].done_reason == "stop"
    sent = sglang_server.requests_to("/v1/chat/completions")[0].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_error_mid_stream_is_one_error_event(sglang_server: FakeSGLang):
    sglang_server.queue(ChatScenario(error_after=2, error={"message": "CUDA out of memory", "code": 500}))
    async with engine(sglang_server) as eng:
        events = [ev async for ev in eng.chat(REQ)]
    assert [e.kind for e in events] == [EventKind.CONTENT, EventKind.CONTENT, EventKind.ERROR]
    assert isinstance(events[-1].error, StreamError)
    assert "CUDA out of memory" in str(events[-1].error)


async def test_context_overflow_flat_error_body(sglang_server: FakeSGLang):
    sglang_server.context_length = 3
    async with engine(sglang_server) as eng:
        with pytest.raises(BadResponseError, match=r"longer than the model's context length \(3 tokens\)"):
            async for _ in eng.chat(REQ):
                pass


async def test_api_key_guards_everything_but_health(sglang_server: FakeSGLang, monkeypatch: pytest.MonkeyPatch):
    sglang_server.api_key = "s3cret"
    async with engine(sglang_server) as eng:
        with pytest.raises(AuthError, match="Unauthorized"):
            await eng.info()  # /health is open, /get_server_info is not
        with pytest.raises(AuthError):
            await eng.list_models()
    monkeypatch.setenv("SG_KEY", "s3cret")
    async with engine(sglang_server, api_key_env="SG_KEY") as eng:
        assert (await eng.info()).health is Health.OK
        assert [m.name for m in await eng.list_models()] == ["Qwen/Qwen2.5-0.5B-Instruct"]


async def test_metrics_use_sglang_names(sglang_server: FakeSGLang):
    async with engine(sglang_server) as eng:
        snap = await eng.metrics()
    assert (snap.running, snap.waiting, snap.kv_cache_usage) == (2.0, 1.0, 0.25)
    assert snap.generation_tokens_total == 567.0


async def test_one_model_per_process_says_why(sglang_server: FakeSGLang):
    async with engine(sglang_server) as eng:
        assert not eng.capabilities.supports(Op.LOAD)
        assert "--model-path" in (eng.capabilities.reason(Op.SWAP) or "")
        with pytest.raises(UnsupportedError, match="one per process"):
            await eng.load("other")
