"""LM Studio adapter against the LM Studio contract server (reference/engines-api.md §5)."""

from __future__ import annotations

import pytest

from console.config import EngineConfig, Timeouts
from console.engines.base import ChatMessage, ChatRequest, EventKind, Health, Op, TokenSource
from console.engines.lmstudio import LMStudioEngine
from console.errors import AuthError, BadResponseError, NotFoundError, UnsupportedError
from tests.fakes.hostile_server import HostileServer, Reply
from tests.fakes.openai_family import FakeLMStudio


def engine(fake: FakeLMStudio, **cfg: object) -> LMStudioEngine:
    return LMStudioEngine(EngineConfig(name="lms", url=fake.url, kind="lmstudio",
                                       timeouts=Timeouts.within(5.0, connect_s=1.0), **cfg))  # type: ignore[arg-type]


def req(model: str) -> ChatRequest:
    return ChatRequest(model=model, messages=(ChatMessage("user", "hello there"),))


async def test_info_reports_rest_v1(lmstudio_server: FakeLMStudio):
    async with engine(lmstudio_server) as eng:
        info = await eng.info()
    assert (info.kind, info.health, info.extra["rest_api"]) == ("lmstudio", Health.OK, "v1")


async def test_models_from_rest_v1_with_state_and_context(lmstudio_server: FakeLMStudio):
    async with engine(lmstudio_server) as eng:
        models = {m.name: m for m in await eng.list_models()}
    qwen = models["qwen2.5-7b-instruct"]
    assert (qwen.context_length, qwen.quantization, qwen.family, qwen.size, qwen.status) == (
        32768, "Q4_K_M", "qwen2", 4_680_000_000, "not-loaded")
    assert models["llama-3.2-1b-instruct"].context_length == 131072


async def test_load_then_ps_then_unload(lmstudio_server: FakeLMStudio):
    async with engine(lmstudio_server) as eng:
        await eng.load("qwen2.5-7b-instruct", keep_alive="10m")
        loaded = await eng.loaded_models()
        assert [(m.name, m.context_length, m.details["instance_id"]) for m in loaded] == [
            ("qwen2.5-7b-instruct", 4096, "qwen2.5-7b-instruct")]
        assert {m.name: m.status for m in await eng.list_models()}["qwen2.5-7b-instruct"] == "loaded"
        await eng.unload("qwen2.5-7b-instruct")
        assert await eng.loaded_models() == []
    assert lmstudio_server.requests_to("/api/v1/models/unload")[0].body == {"instance_id": "qwen2.5-7b-instruct"}


async def test_unload_unknown_and_load_failure(lmstudio_server: FakeLMStudio):
    async with engine(lmstudio_server) as eng:
        with pytest.raises(NotFoundError, match="not loaded"):
            await eng.unload("qwen2.5-7b-instruct")
        with pytest.raises(BadResponseError, match="not enough memory"):
            await eng.load("broken-model")
        with pytest.raises(NotFoundError, match="not found"):
            await eng.load("nope")


async def test_swap_times_each_step(lmstudio_server: FakeLMStudio):
    async with engine(lmstudio_server) as eng:
        await eng.load("qwen2.5-7b-instruct")
        result = await eng.swap("qwen2.5-7b-instruct", "llama-3.2-1b-instruct")
    assert result.ok and result.unload_s is not None and result.load_s is not None
    assert result.first_token_s is not None
    assert lmstudio_server.loaded_keys() == ["llama-3.2-1b-instruct"]


async def test_failed_swap_restores_the_old_model(lmstudio_server: FakeLMStudio):
    async with engine(lmstudio_server) as eng:
        await eng.load("qwen2.5-7b-instruct")
        result = await eng.swap("qwen2.5-7b-instruct", "broken-model")
    assert not result.ok and result.rolled_back
    assert lmstudio_server.loaded_keys() == ["qwen2.5-7b-instruct"]


async def test_legacy_server_falls_back_to_v0_and_refuses_load(lmstudio_server: FakeLMStudio):
    lmstudio_server.rest_v1 = False
    lmstudio_server.models["qwen2.5-7b-instruct"].instances.append({"id": "qwen2.5-7b-instruct", "config": {}})
    async with engine(lmstudio_server) as eng:
        info = await eng.info()
        assert info.extra["rest_api"] == "v0"
        assert [m.name for m in await eng.loaded_models()] == ["qwen2.5-7b-instruct"]
        assert {m.name: m.status for m in await eng.list_models()}["llama-3.2-1b-instruct"] == "not-loaded"
        assert not eng.capabilities.supports(Op.LOAD)
        with pytest.raises(UnsupportedError, match="REST v1"):
            await eng.load("llama-3.2-1b-instruct")


async def test_chat_jit_loads_and_streams_usage(lmstudio_server: FakeLMStudio):
    async with engine(lmstudio_server) as eng:
        events = [ev async for ev in eng.chat(req("llama-3.2-1b-instruct"))]
    assert "".join(e.text for e in events if e.kind is EventKind.CONTENT) == lmstudio_server.reply
    usage = next(e.usage for e in events if e.kind is EventKind.USAGE)
    assert usage is not None and usage.source is TokenSource.SERVER_USAGE and usage.completion_tokens
    assert lmstudio_server.loaded_keys() == ["llama-3.2-1b-instruct"]


async def test_auth_required(lmstudio_server: FakeLMStudio, monkeypatch: pytest.MonkeyPatch):
    lmstudio_server.api_key = "tok"
    async with engine(lmstudio_server) as eng:
        with pytest.raises(AuthError, match="Invalid or missing API token"):
            await eng.info()
    monkeypatch.setenv("LM_API_TOKEN", "tok")
    async with engine(lmstudio_server, api_key_env="LM_API_TOKEN") as eng:
        assert (await eng.info()).health is Health.OK


async def test_pull_and_metrics_unsupported_with_reasons(lmstudio_server: FakeLMStudio):
    async with engine(lmstudio_server) as eng:
        assert "lms get" in (eng.capabilities.reason(Op.PULL) or "")
        with pytest.raises(UnsupportedError, match="no /metrics"):
            await eng.metrics()


async def test_busy_503_is_loading_and_refused_is_down(hostile_server: HostileServer):
    hostile_server.route("GET", "/api/v1/models", Reply(status=503, body=b'{"error": "Model is loading"}'))
    eng = LMStudioEngine(EngineConfig(name="lms", url=hostile_server.url, kind="lmstudio"))
    async with eng:
        info = await eng.info()
    assert info.health is Health.LOADING and "Model is loading" in info.reason
    async with LMStudioEngine(EngineConfig(name="lms", url="http://127.0.0.1:9", kind="lmstudio")) as gone:
        assert (await gone.info()).health is Health.DOWN
