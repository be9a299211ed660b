"""TGI adapter against the TGI contract server (reference/engines-api.md §4)."""

from __future__ import annotations

import pytest

from console.config import EngineConfig, Timeouts
from console.engines.base import ChatMessage, ChatRequest, EventKind, Health, Op, TokenSource
from console.engines.tgi import TGIEngine
from console.errors import AuthError, BadResponseError, StreamError, UnreachableError
from tests.fakes.openai_family import ChatScenario, FakeTGI

MODEL = "HuggingFaceTB/SmolLM2-360M-Instruct"
REQ = ChatRequest(model="tgi", messages=(ChatMessage("user", "why is the sky blue"),), max_tokens=50)


def engine(fake: FakeTGI, **cfg: object) -> TGIEngine:
    return TGIEngine(EngineConfig(name="tgi", url=fake.url, kind="tgi",
                                  timeouts=Timeouts.within(5.0, connect_s=1.0), **cfg))  # type: ignore[arg-type]


async def test_info_health_version_and_limits(tgi_server: FakeTGI):
    async with engine(tgi_server) as eng:
        info = await eng.info()
    assert (info.kind, info.health, info.version) == ("tgi", Health.OK, "3.3.6")
    assert info.extra["model_id"] == MODEL
    assert info.extra["max_total_tokens"] == 4096


async def test_unhealthy_503_body_is_down_with_reason(tgi_server: FakeTGI):
    tgi_server.unhealthy = True
    async with engine(tgi_server) as eng:
        info = await eng.info()
    assert info.health is Health.DOWN
    assert "unhealthy" in info.reason and "503" in info.reason
    assert info.version == "3.3.6"  # /info still answers: the router is up, a shard is not


async def test_nothing_listening_is_down():
    eng = TGIEngine(EngineConfig(name="tgi", url="http://127.0.0.1:9", kind="tgi",
                                 timeouts=Timeouts.within(1.0, connect_s=0.5)))
    async with eng:
        info = await eng.info()
        assert info.health is Health.DOWN
        with pytest.raises(UnreachableError):
            await eng.list_models()


async def test_context_length_comes_from_info(tgi_server: FakeTGI):
    async with engine(tgi_server) as eng:
        models = await eng.list_models()
        loaded = await eng.loaded_models()
    assert [(m.name, m.context_length) for m in models] == [(MODEL, 4096)]
    assert models[0].details["max_input_tokens"] == 4095
    assert [(m.name, m.context_length) for m in loaded] == [(MODEL, 4096)]


async def test_stream_without_space_after_data_with_usage(tgi_server: FakeTGI):
    async with engine(tgi_server) as eng:
        events = [ev async for ev in eng.chat(REQ)]
    assert "".join(e.text for e in events if e.kind is EventKind.CONTENT) == tgi_server.reply
    usage = next(e.usage for e in events if e.kind is EventKind.USAGE)
    assert usage is not None and usage.source is TokenSource.SERVER_USAGE
    assert usage.completion_tokens == len(tgi_server.reply.split())
    assert events[-1].kind is EventKind.DONE


@pytest.mark.parametrize("error", ["Request failed during generation: CUDA OOM",
                                   {"message": "Request failed during generation: CUDA OOM",
                                    "http_status_code": 422}])
async def test_error_events_as_string_or_object(tgi_server: FakeTGI, error: object):
    tgi_server.queue(ChatScenario(error_after=1, error=error))
    async with engine(tgi_server) as eng:
        events = [ev async for ev in eng.chat(REQ)]
    assert [e.kind for e in events] == [EventKind.CONTENT, EventKind.ERROR]
    assert isinstance(events[-1].error, StreamError)
    assert "CUDA OOM" in str(events[-1].error)


async def test_validation_422_names_the_limit(tgi_server: FakeTGI):
    tgi_server.max_total_tokens = 20
    async with engine(tgi_server) as eng:
        with pytest.raises(BadResponseError, match="must be <= 20"):
            async for _ in eng.chat(REQ):
                pass


async def test_bare_401_is_auth_error_and_info_stays_open(tgi_server: FakeTGI, monkeypatch: pytest.MonkeyPatch):
    tgi_server.api_key = "k"
    async with engine(tgi_server) as eng:
        assert (await eng.info()).health is Health.OK
        with pytest.raises(AuthError, match="401"):
            async for _ in eng.chat(REQ):
                pass
    monkeypatch.setenv("TGI_KEY", "k")
    async with engine(tgi_server, api_key_env="TGI_KEY") as eng:
        assert any(e.kind is EventKind.DONE for e in [ev async for ev in eng.chat(REQ)])


async def test_metrics_and_capabilities(tgi_server: FakeTGI):
    async with engine(tgi_server) as eng:
        snap = await eng.metrics()
        assert (snap.running, snap.waiting, snap.prompt_tokens_total) == (4.0, 3.0, 900.0)
        assert not eng.capabilities.supports(Op.UNLOAD)
        assert "--model-id" in (eng.capabilities.reason(Op.LOAD) or "")
