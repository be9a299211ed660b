"""Every OpenAI-compatible adapter against a server that misbehaves: typed errors only, never a raw exception."""

from __future__ import annotations

import time

import pytest

from console.config import EngineConfig, Timeouts
from console.engines.base import ChatEvent, ChatMessage, ChatRequest, EventKind
from console.engines.llamacpp import LlamaCppEngine
from console.engines.openai import OpenAICompatEngine
from console.engines.vllm import VLLMEngine
from console.errors import (
    AuthError,
    BadResponseError,
    BusyError,
    EngineError,
    EngineTimeoutError,
    NotFoundError,
    StreamError,
)
from tests.fakes.hostile_server import (
    UNAUTHORIZED_BODIES,
    HostileServer,
)

KINDS = [OpenAICompatEngine, VLLMEngine, LlamaCppEngine]
REQ = ChatRequest(model="nope", messages=(ChatMessage("user", "hi"),))
# Generous: the client read timeout is 1 s and the server stalls 30 s; anything near 30 s means no timeout.
STALL_BOUND_S = 10.0


def make(cls: type[OpenAICompatEngine], server: HostileServer) -> OpenAICompatEngine:
    return cls(EngineConfig(name="hostile", url=server.url, timeouts=Timeouts.within(1.0, connect_s=1.0)))


async def chat_events(eng: OpenAICompatEngine) -> list[ChatEvent]:
    return [ev async for ev in eng.chat(REQ)]


async def raised(coro: object) -> EngineError:
    """The typed error an awaitable raised; a raw exception or none fails the test."""
    try:
        await coro  # type: ignore[misc]
    except EngineError as exc:
        return exc
    raise AssertionError("expected an EngineError")


@pytest.fixture(params=KINDS, ids=lambda c: c.kind)
def kind(request: pytest.FixtureRequest) -> type[OpenAICompatEngine]:
    return request.param


async def test_garbage_models_json(hostile_server, kind):
    hostile_server.misbehave("garbage_models")
    async with make(kind, hostile_server) as eng:
        err = await raised(eng.list_models())
    assert isinstance(err, BadResponseError) and "not JSON" in str(err)


@pytest.mark.parametrize("preset", ["truncated_stream", "incomplete_body", "reset_mid_stream"])
async def test_broken_streams_end_in_one_stream_error(hostile_server, kind, preset):
    hostile_server.misbehave(preset)
    async with make(kind, hostile_server) as eng:
        events = await chat_events(eng)
    assert [e.kind for e in events] == [EventKind.CONTENT, EventKind.ERROR]
    assert events[0].text == "partial"
    assert isinstance(events[-1].error, StreamError)


async def test_truncated_stream_says_it_ended_early(hostile_server, kind):
    hostile_server.misbehave("truncated_stream")
    async with make(kind, hostile_server) as eng:
        events = await chat_events(eng)
    assert "ended early" in str(events[-1].error)


async def test_stall_before_headers_times_out(hostile_server, kind):
    hostile_server.misbehave("stall")
    async with make(kind, hostile_server) as eng:
        t0 = time.monotonic()
        err = await raised(eng.list_models())
        assert time.monotonic() - t0 < STALL_BOUND_S
    assert isinstance(err, EngineTimeoutError)


async def test_stall_mid_stream_is_a_timeout_event(hostile_server, kind):
    hostile_server.misbehave("stall")
    async with make(kind, hostile_server) as eng:
        t0 = time.monotonic()
        events = await chat_events(eng)
        assert time.monotonic() - t0 < STALL_BOUND_S
    assert events[-1].kind is EventKind.ERROR
    assert isinstance(events[-1].error, EngineTimeoutError)


@pytest.mark.parametrize("body_kind", sorted(UNAUTHORIZED_BODIES))
async def test_401_in_every_body_shape_says_set_api_key_env(hostile_server, kind, body_kind):
    hostile_server.misbehave(f"unauthorized_{body_kind}")
    async with make(kind, hostile_server) as eng:
        for err in (await raised(eng.list_models()), await raised(chat_events(eng))):
            assert isinstance(err, AuthError)
            assert err.status == 401
            assert "api_key_env" in str(err)


async def test_503_busy(hostile_server, kind):
    hostile_server.misbehave("busy")
    async with make(kind, hostile_server) as eng:
        err = await raised(chat_events(eng))
    assert isinstance(err, BusyError) and "Loading model" in str(err)


async def test_404_model(hostile_server, kind):
    hostile_server.misbehave("model_not_found")
    async with make(kind, hostile_server) as eng:
        err = await raised(chat_events(eng))
    assert isinstance(err, NotFoundError) and "does not exist" in str(err)
    assert err.hint == "check the model name 'nope' with `enginedeck models hostile`"


async def test_404_on_a_health_check_does_not_blame_a_model(hostile_server):
    async with make(VLLMEngine, hostile_server) as eng:  # the hostile server answers 404 on every unknown path
        err = await raised(eng._request("GET", "/health", what="check health"))
    assert isinstance(err, NotFoundError) and "model" not in (err.hint or "")
    assert "the engine does not serve this path" in (err.hint or "")
