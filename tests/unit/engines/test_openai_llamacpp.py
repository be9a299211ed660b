"""LlamaCppEngine against a scripted llama-server: single-model mode, router mode, slots, props, metrics."""

from __future__ import annotations

import json

import pytest

from console.config import EngineConfig, Timeouts
from console.engines.base import ChatMessage, ChatRequest, EventKind, Health, Op, TokenSource
from console.engines.llamacpp import NO_METRICS, NOT_PROBED, SINGLE_MODEL, LlamaCppEngine
from console.errors import BadResponseError, EngineTimeoutError, NotFoundError, UnsupportedError
from tests.fakes.hostile_server import (
    CHAT,
    MODELS,
    HostileServer,
    Reply,
    Seen,
    chunk,
    sse,
    usage_chunk,
)

PROPS = {"default_generation_settings": {"n_ctx": 1024}, "total_slots": 4, "model_alias": "smollm2",
         "model_path": "/m/smol.gguf", "build_info": "b6000-abc", "endpoint_metrics": True, "is_sleeping": False}
SINGLE_MODELS = {"object": "list", "models": [{"name": "smollm2", "details": {"format": "gguf"}}],
                 "data": [{"id": "smollm2", "object": "model", "owned_by": "llamacpp",
                           "meta": {"n_ctx": 1024, "n_ctx_train": 8192, "n_params": 134515008,
                                    "size": 96576768, "ftype": "Q4_1"}}]}
METRICS = "llamacpp:requests_processing 1\nllamacpp:requests_deferred 2\nllamacpp:tokens_predicted_total 9\n"


def single(server: HostileServer) -> None:
    server.route("GET", "/health", Reply(body=b'{"status":"ok"}'))
    server.route(*MODELS, Reply(body=json.dumps(SINGLE_MODELS)))
    server.route("GET", "/props", Reply(body=json.dumps(PROPS)))
    server.route("GET", "/slots", Reply(body=json.dumps(
        [{"id": i, "n_ctx": 256, "speculative": False, "is_processing": i == 0} for i in range(4)])))
    server.route("GET", "/metrics", Reply(body=METRICS, content_type="text/plain"))


class FakeRouter:
    """Router state: each model's status; a load takes two polls of /models, `bad` models fail to start."""

    def __init__(self, server: HostileServer, *, bad: tuple[str, ...] = (), stuck: tuple[str, ...] = ()) -> None:
        self.status = {"smol-a": "unloaded", "smol-b": "unloaded", "broken": "unloaded", "slow": "unloaded"}
        self.polls: dict[str, int] = {}
        self.bad, self.stuck = bad, stuck
        server.route("GET", "/health", Reply(body=b'{"status":"ok"}'))
        server.route("GET", "/props", Reply(body=json.dumps({"role": "router", "build_info": "b6000-abc",
                                                             "model_path": "none"})))
        server.route(*MODELS, self.models)
        server.route("GET", "/models", self.models)
        server.route("POST", "/models/load", self.load)
        server.route("POST", "/models/unload", self.unload)
        server.route("GET", "/metrics", self.metrics)
        server.route(*CHAT, Reply(chunks=sse(chunk("hi"), chunk(finish="stop"), usage_chunk(3, 1)),
                                  content_type="text/event-stream"))

    def models(self, _: Seen) -> Reply:
        data = []
        for name, state in self.status.items():
            if state == "loading" and name not in self.stuck:
                self.polls[name] = self.polls.get(name, 0) + 1
                if self.polls[name] >= 2:
                    self.status[name] = state = "failed" if name in self.bad else "loaded"
            status: dict[str, object] = {"value": state, "args": ["llama-server", "--ctx-size", "2048"]}
            if state == "failed":
                status = {"value": "unloaded", "failed": True, "exit_code": 1}
            data.append({"id": name, "object": "model", "owned_by": "llamacpp", "status": status})
        return Reply(body=json.dumps({"object": "list", "data": data}))

    def load(self, seen: Seen) -> Reply:
        name = seen.json()["model"]
        if name not in self.status:
            return Reply(status=404, body=b'{"error":{"message":"File Not Found","type":"not_found_error",'
                                          b'"code":404}}')
        for other, state in self.status.items():  # --models-max 1
            if state == "loaded":
                self.status[other] = "unloaded"
        self.status[name], self.polls[name] = "loading", 0
        return Reply(body=b'{"success":true}')

    def unload(self, seen: Seen) -> Reply:
        self.status[seen.json()["model"]] = "unloaded"
        return Reply(body=b'{"success":true}')

    def metrics(self, seen: Seen) -> Reply:
        if "model" not in seen.query:
            return Reply(status=400, body=b'{"error":{"code":400,"message":"model name is missing from the request"}}')
        return Reply(body=METRICS, content_type="text/plain")


def make(server: HostileServer, load_timeout_s: float = 10.0) -> LlamaCppEngine:
    return LlamaCppEngine(EngineConfig(name="llama", url=server.url, kind="llamacpp",
                                       timeouts=Timeouts.within(5.0, connect_s=1.0)),
                          load_timeout_s=load_timeout_s)


# -- single-model mode ----------------------------------------------------------------------------------------

async def test_single_model_info_models_slots_metrics(hostile_server):
    single(hostile_server)
    async with make(hostile_server) as eng:
        info = await eng.info()
        assert (info.health, info.version) == (Health.OK, "b6000-abc")
        assert info.extra["total_slots"] == 4 and info.extra["n_ctx"] == 1024 and info.extra["router"] is False
        [model] = await eng.list_models()
        assert (model.name, model.context_length, model.quantization, model.parameter_size, model.size) == (
            "smollm2", 1024, "Q4_1", "135M", 96576768)
        assert [m.status for m in await eng.loaded_models()] == ["loaded"]
        slots = await eng.slots()
        assert [s.processing for s in slots] == [True, False, False, False] and slots[0].n_ctx == 256
        snap = await eng.metrics()
        assert (snap.running, snap.waiting, snap.generation_tokens_total) == (1, 2, 9)


async def test_single_model_cannot_load_and_says_how_to(hostile_server):
    single(hostile_server)
    async with make(hostile_server) as eng:
        await eng.info()
        assert eng.capabilities.reason(Op.LOAD) == SINGLE_MODEL
        with pytest.raises(UnsupportedError, match="router mode"):
            await eng.load("other")
        with pytest.raises(UnsupportedError, match="router mode"):
            await eng.swap("smollm2", "other")


@pytest.mark.parametrize(("router", "reason"), [(False, SINGLE_MODEL), (True, None)])
async def test_the_mode_is_not_guessed_before_the_models_list_is_read(hostile_server, router, reason):
    FakeRouter(hostile_server) if router else single(hostile_server)
    async with make(hostile_server) as eng:
        assert eng.capabilities.reason(Op.LOAD) == NOT_PROBED  # not "started with -m": nobody asked yet
        await eng.settle_capabilities()
        await eng.settle_capabilities()
        await eng.info()
        assert eng.capabilities.reason(Op.LOAD) == reason and eng.capabilities.reason(Op.SWAP) == reason
    assert len(hostile_server.requests_to(MODELS[1])) == 1  # asked once, whoever asked first


async def test_loading_503_metrics_off_and_sleeping(hostile_server):
    single(hostile_server)
    hostile_server.route("GET", "/health", Reply(status=503, body=b'{"error":{"code":503,"message":"Loading model",'
                                                                  b'"type":"unavailable_error"}}'))
    async with make(hostile_server) as eng:
        assert (await eng.info()).health is Health.LOADING
        hostile_server.route("GET", "/health", Reply(body=b'{"status":"ok"}'))
        hostile_server.route("GET", "/props", Reply(body=json.dumps(
            {**PROPS, "endpoint_metrics": False, "is_sleeping": True})))
        assert (await eng.info()).health is Health.SLEEPING
        assert eng.capabilities.reason(Op.METRICS) == NO_METRICS


async def test_metrics_501_turns_the_capability_off(hostile_server):
    single(hostile_server)
    hostile_server.route("GET", "/metrics", Reply(status=501, body=b'{"error":{"code":501,"message":"This server '
                                                                   b'does not support metrics endpoint.",'
                                                                   b'"type":"not_supported_error"}}'))
    async with make(hostile_server) as eng:
        with pytest.raises(UnsupportedError, match="--metrics"):
            await eng.metrics()
        assert not eng.capabilities.supports(Op.METRICS)


async def test_timings_in_the_stream_fill_engine_times(hostile_server):
    single(hostile_server)
    final = {**usage_chunk(31, 2), "timings": {"cache_n": 0, "prompt_n": 31, "prompt_ms": 11.3,
                                               "predicted_n": 2, "predicted_ms": 34.5}}
    hostile_server.route(*CHAT, Reply(chunks=sse(chunk(role="assistant", content=None), chunk("a"),
                                                 chunk("b"), chunk(finish="stop"), final),
                                      content_type="text/event-stream"))
    async with make(hostile_server) as eng:
        events = [e async for e in eng.chat(ChatRequest("smollm2", (ChatMessage("user", "hi"),)))]
    usage = next(e.usage for e in events if e.kind is EventKind.USAGE)
    assert usage is not None and usage.source is TokenSource.SERVER_USAGE
    assert (usage.prompt_ms, usage.generation_ms) == (11.3, 34.5)


# -- router mode ----------------------------------------------------------------------------------------------

async def test_router_is_detected_and_lists_status_and_context(hostile_server):
    FakeRouter(hostile_server)
    async with make(hostile_server) as eng:
        info = await eng.info()
        assert info.extra["router"] is True
        assert eng.capabilities.supports(Op.LOAD) and eng.capabilities.supports(Op.SWAP)
        models = {m.name: m for m in await eng.list_models()}
        assert models["smol-a"].status == "unloaded" and models["smol-a"].context_length == 2048
        assert await eng.loaded_models() == []


async def test_router_load_waits_until_loaded_then_unload(hostile_server):
    fake = FakeRouter(hostile_server)
    async with make(hostile_server) as eng:
        await eng.load("smol-a")
        assert fake.status["smol-a"] == "loaded"
        assert [(m.name, m.status) for m in await eng.loaded_models()] == [("smol-a", "loaded")]
        await eng.load("smol-a")  # already loaded: no second POST
        assert len(hostile_server.requests_to("/models/load")) == 1
        snap = await eng.metrics()
        assert snap.running == 1 and 'llamacpp:requests_processing{model="smol-a"}' in snap.raw
        await eng.unload("smol-a")
        await eng.unload("smol-a")  # already unloaded: nothing to do
        assert await eng.loaded_models() == []
        assert len(hostile_server.requests_to("/models/unload")) == 1


async def test_router_load_failure_and_timeout_are_typed(hostile_server):
    FakeRouter(hostile_server, bad=("broken",), stuck=("slow",))
    async with make(hostile_server, load_timeout_s=0.5) as eng:
        with pytest.raises(BadResponseError, match="exited with code 1"):
            await eng.load("broken")
        with pytest.raises(EngineTimeoutError, match="still loading"):
            await eng.load("slow")
        with pytest.raises(NotFoundError, match="no model named 'ghost'"):
            await eng.load("ghost")


async def test_router_swap_times_each_step_and_restores_on_failure(hostile_server):
    fake = FakeRouter(hostile_server, bad=("broken",))
    async with make(hostile_server) as eng:
        await eng.load("smol-a")
        ok = await eng.swap("smol-a", "smol-b")
        assert ok.ok and None not in (ok.unload_s, ok.load_s, ok.first_token_s)
        assert (fake.status["smol-a"], fake.status["smol-b"]) == ("unloaded", "loaded")
        bad = await eng.swap("smol-b", "broken")
        assert not bad.ok and bad.rolled_back and "broken" in (bad.error or "")
        assert fake.status["smol-b"] == "loaded"
    chat = hostile_server.requests_to("/v1/chat/completions")[0].json()
    assert chat["model"] == "smol-b"
