"""VLLMEngine against a scripted vLLM: health, capability probing, sleep mode, runtime LoRA, chat payload."""

from __future__ import annotations

import json

import pytest

from console.config import EngineConfig, Timeouts
from console.engines.base import ChatMessage, ChatRequest, EventKind, Health, Op
from console.engines.vllm import NO_DEV_MODE, NO_RUNTIME_LORA, NO_SLEEP_FLAG, VLLMEngine
from console.errors import NotFoundError, UnsupportedError
from tests.fakes.hostile_server import (
    CHAT,
    GOOD_STREAM,
    MODELS,
    HostileServer,
    Reply,
    Seen,
)

METRICS = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="smollm2"} 1.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="smollm2"} 0.5
"""


class FakeVLLM:
    """A vLLM's state behind the hostile server's routes: sleeping flag and LoRA adapters."""

    def __init__(self, server: HostileServer, *, dev_mode: bool = True, sleep_flag: bool = True,
                 runtime_lora: bool = True) -> None:
        self.sleeping = False
        self.adapters: dict[str, str] = {}
        server.route("GET", "/health", Reply(body=b""))
        server.route("GET", "/version", Reply(body=b'{"version":"0.32.0"}'))
        server.route(*MODELS, self.models)
        server.route(*CHAT, Reply(chunks=GOOD_STREAM, content_type="text/event-stream"))
        server.route("GET", "/metrics", Reply(body=METRICS, content_type="text/plain; version=0.0.4"))
        if dev_mode:
            server.route("GET", "/is_sleeping", lambda _: Reply(body=json.dumps({"is_sleeping": self.sleeping})))
            server.route("GET", "/server_info", Reply(body=json.dumps(
                {"vllm_config": {"model_config": {"enable_sleep_mode": sleep_flag}}})))
            server.route("POST", "/sleep", self.sleep)
            server.route("POST", "/wake_up", self.wake)
        if runtime_lora:
            server.route("POST", "/v1/load_lora_adapter", self.load_lora)
            server.route("POST", "/v1/unload_lora_adapter", self.unload_lora)

    def models(self, _: Seen) -> Reply:
        data = [{"id": "smollm2", "object": "model", "owned_by": "vllm", "root": "/models/smol", "parent": None,
                 "max_model_len": 2048, "permission": []}]
        data += [{"id": n, "object": "model", "owned_by": "vllm", "root": p, "parent": "smollm2",
                  "max_model_len": None} for n, p in self.adapters.items()]
        return Reply(body=json.dumps({"object": "list", "data": data}))

    def sleep(self, seen: Seen) -> Reply:
        assert seen.query == {"level": ["1"]}
        self.sleeping = True
        return Reply(body=b"")

    def wake(self, _: Seen) -> Reply:
        self.sleeping = False
        return Reply(body=b"")

    def load_lora(self, seen: Seen) -> Reply:
        body = seen.json()
        if "lora_name" not in body or "lora_path" not in body:
            return Reply(status=400, body=b'{"error":{"message":"Both names needed","type":"InvalidUserInput",'
                                          b'"code":400}}')
        self.adapters[body["lora_name"]] = body["lora_path"]
        return Reply(body=f"Success: LoRA adapter '{body['lora_name']}' added successfully.",
                     content_type="text/plain")

    def unload_lora(self, seen: Seen) -> Reply:
        name = seen.json()["lora_name"]
        if self.adapters.pop(name, None) is None:
            return Reply(status=404, body=b'{"error":{"message":"not loaded","type":"NotFoundError","code":404}}')
        return Reply(body=b"Success", content_type="text/plain")


def make(server: HostileServer) -> VLLMEngine:
    return VLLMEngine(EngineConfig(name="vllm", url=server.url, kind="vllm",
                                   timeouts=Timeouts.within(5.0, connect_s=1.0)))


async def test_info_reads_version_and_probes_sleep_and_lora(hostile_server):
    FakeVLLM(hostile_server)
    async with make(hostile_server) as eng:
        assert not eng.capabilities.supports(Op.SLEEP)  # not probed yet: off, and the reason says so
        info = await eng.info()
        assert (info.health, info.version, info.kind) == (Health.OK, "0.32.0", "vllm")
        assert info.extra == {"dev_mode": True, "sleep_mode": True, "runtime_lora": True}
        for op in (Op.SLEEP, Op.WAKE, Op.LORA_LOAD, Op.LORA_UNLOAD, Op.LOAD, Op.UNLOAD, Op.METRICS):
            assert eng.capabilities.supports(op), op
        assert not eng.capabilities.supports(Op.SWAP)
    # the probe sent no usable LoRA request
    assert [s.json() for s in hostile_server.requests_to("/v1/load_lora_adapter")] == [{}]


async def test_without_dev_mode_or_runtime_lora_everything_says_why(hostile_server):
    FakeVLLM(hostile_server, dev_mode=False, runtime_lora=False)
    async with make(hostile_server) as eng:
        await eng.info()
        caps = eng.capabilities
        assert caps.reason(Op.SLEEP) == NO_DEV_MODE
        assert caps.reason(Op.LORA_LOAD) == NO_RUNTIME_LORA
        assert "--enable-sleep-mode" in (caps.reason(Op.UNLOAD) or "")
        with pytest.raises(UnsupportedError, match="VLLM_SERVER_DEV_MODE"):
            await eng.unload("smollm2")
        with pytest.raises(UnsupportedError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
            await eng.load_lora("a", "/x")


async def test_dev_mode_without_the_sleep_flag(hostile_server):
    FakeVLLM(hostile_server, sleep_flag=False)
    async with make(hostile_server) as eng:
        await eng.info()
        assert eng.capabilities.reason(Op.SLEEP) == NO_SLEEP_FLAG
        assert eng.capabilities.supports(Op.LORA_LOAD)


async def test_health_503_is_a_dead_engine_and_refused_mentions_loading(hostile_server):
    hostile_server.route("GET", "/health", Reply(status=503, body=b""))
    async with make(hostile_server) as eng:
        info = await eng.info()
    assert info.health is Health.DOWN and "dead" in info.reason
    gone = HostileServer().start()
    url = gone.url
    gone.stop()
    async with VLLMEngine(EngineConfig(name="v", url=url, timeouts=Timeouts.within(1.0, connect_s=1.0))) as eng:
        info = await eng.info()
    assert info.health is Health.DOWN and "loads a model" in info.reason


async def test_runtime_lora_load_list_chat_unload(hostile_server):
    fake = FakeVLLM(hostile_server)
    async with make(hostile_server) as eng:
        await eng.info()
        await eng.load_lora("lora-a", "/loras/a")
        models = {m.name: m for m in await eng.list_models()}
        assert models["smollm2"].context_length == 2048
        assert models["lora-a"].parent == "smollm2"
        assert {m.name for m in await eng.loaded_models()} == {"smollm2", "lora-a"}
        await eng.load("lora-a")  # already loaded: nothing to do
        with pytest.raises(UnsupportedError, match="load_lora"):
            await eng.load("lora-b")
        await eng.unload("lora-a")  # an adapter: unload = remove it
        assert fake.adapters == {}
        with pytest.raises(NotFoundError):
            await eng.unload("lora-a")


async def test_unload_base_sleeps_and_load_wakes(hostile_server):
    fake = FakeVLLM(hostile_server)
    async with make(hostile_server) as eng:
        await eng.info()
        await eng.unload("smollm2")
        assert fake.sleeping
        assert (await eng.info()).health is Health.SLEEPING
        assert [m.status for m in await eng.loaded_models()] == ["sleeping"]
        await eng.load("smollm2")
        assert not fake.sleeping and (await eng.info()).health is Health.OK


async def test_chat_asks_for_continuous_usage_and_metrics_parse(hostile_server):
    FakeVLLM(hostile_server)
    async with make(hostile_server) as eng:
        events = [e async for e in eng.chat(ChatRequest("smollm2", (ChatMessage("user", "hi"),)))]
        snap = await eng.metrics()
    assert events[-1].kind is EventKind.DONE
    body = hostile_server.requests_to("/v1/chat/completions")[0].json()
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert (snap.running, snap.kv_cache_usage) == (1.0, 0.5)
