"""The OpenAI-compatible base: models list tolerance, health, capabilities, auth header."""

from __future__ import annotations

import json

import pytest

from console.config import EngineConfig, Timeouts
from console.engines.base import Health, Op
from console.engines.openai import OpenAICompatEngine
from console.errors import BadResponseError, UnsupportedError
from tests.fakes.hostile_server import (
    MODELS,
    HostileServer,
    Reply,
)


def engine_for(server: HostileServer, **cfg: object) -> OpenAICompatEngine:
    return OpenAICompatEngine(EngineConfig(name="fake", url=server.url, timeouts=Timeouts.within(2.0, connect_s=1.0),
                                           **cfg))


async def test_models_tolerate_extra_fields_meta_parent_and_strays(hostile_server):
    body = {"object": "list", "data": [
        {"id": "base", "object": "model", "owned_by": "vllm", "max_model_len": 4096, "parent": None,
         "root": "/m", "permission": [{"x": 1}]},
        {"id": "lora-a", "object": "model", "parent": "base", "max_model_len": None},
        {"id": "g", "owned_by": "llamacpp", "meta": {"n_ctx_train": 8192, "size": 123456}},
        {"object": "model"},  # no id: skipped
        "junk",
    ]}
    hostile_server.route(*MODELS, Reply(body=json.dumps(body)))
    async with engine_for(hostile_server) as eng:
        models = await eng.list_models()
        loaded = await eng.loaded_models()
    assert [m.name for m in models] == ["base", "lora-a", "g"]
    assert models[0].context_length == 4096 and models[0].parent is None
    assert models[1].parent == "base" and models[1].context_length is None
    assert models[2].size == 123456 and models[2].details["owned_by"] == "llamacpp"
    assert [m.name for m in loaded] == ["base", "lora-a", "g"]
    assert all(m.status == "loaded" for m in loaded)


async def test_models_with_null_data_is_an_empty_list(hostile_server):
    hostile_server.route(*MODELS, Reply(body=b'{"object":"list","data":null}'))
    async with engine_for(hostile_server) as eng:
        assert await eng.list_models() == []


@pytest.mark.parametrize("body", [b"[1, 2]", b'{"data": "nope"}', b"not json at all"])
async def test_models_with_the_wrong_shape_is_a_bad_response(hostile_server, body):
    hostile_server.route(*MODELS, Reply(body=body))
    async with engine_for(hostile_server) as eng:
        with pytest.raises(BadResponseError):
            await eng.list_models()


async def test_info_ok_down_and_loading(hostile_server):
    hostile_server.route(*MODELS, Reply(body=b'{"data":[]}'))
    async with engine_for(hostile_server) as eng:
        info = await eng.info()
        assert info.health is Health.OK and info.latency_ms is not None and info.kind == "openai"
        hostile_server.misbehave("busy")
        assert (await eng.info()).health is Health.LOADING
    gone = HostileServer().start()
    url = gone.url
    gone.stop()
    cfg = EngineConfig(name="gone", url=url, timeouts=Timeouts.within(1.0, connect_s=1.0))
    async with OpenAICompatEngine(cfg) as eng:
        info = await eng.info()
    assert info.health is Health.DOWN and "cannot connect" in info.reason


async def test_capabilities_say_why_load_is_missing(hostile_server):
    async with engine_for(hostile_server) as eng:
        caps = eng.capabilities
        assert caps.supports(Op.CHAT) and caps.supports(Op.LIST)
        assert not caps.supports(Op.LOAD)
        assert "started with" in (caps.reason(Op.UNLOAD) or "")
        with pytest.raises(UnsupportedError, match="cannot load"):
            await eng.load("x")
        with pytest.raises(UnsupportedError, match="metrics"):
            await eng.metrics()


async def test_api_key_is_sent_as_bearer(hostile_server, monkeypatch):
    monkeypatch.setenv("ED_TEST_KEY", "sekret")
    hostile_server.route(*MODELS, Reply(body=b'{"data":[]}'))
    async with engine_for(hostile_server, api_key_env="ED_TEST_KEY") as eng:
        await eng.list_models()
    assert hostile_server.requests_to("/v1/models")[0].headers["authorization"] == "Bearer sekret"
