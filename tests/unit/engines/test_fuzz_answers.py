"""Fuzzed answers into every adapter's parsing: whatever bytes an engine sends, a read returns its typed value or
raises a typed EngineError — never a TypeError, KeyError, AttributeError or a hang.

The answers are drawn three ways: raw bytes; JSON of any shape built from the field names the engines really use
(so a parser meets `"models": 5`, `"data": [null]`, `"size": "big"` on its real code paths); and streams of such
JSON as NDJSON or SSE events. Every path of the server gives the example's answer, with a status drawn from the
ones engines send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.config import EngineConfig, Timeouts
from console.engines.base import ChatMessage, ChatRequest, Engine, Op
from console.engines.registry import ENGINE_CLASSES, build_engine
from console.errors import EngineError
from tests.fakes.http_fake import FakeHandler, ThreadedFake

FIELDS = [
    "models", "data", "name", "model", "id", "object", "size", "size_vram", "digest", "details", "family",
    "quantization_level", "parameter_size", "expires_at", "context_length", "modified_at", "owned_by", "parent",
    "max_model_len", "status", "value", "args", "choices", "delta", "content", "reasoning_content", "role",
    "message", "done", "done_reason", "finish_reason", "usage", "prompt_tokens", "completion_tokens",
    "eval_count", "prompt_eval_count", "eval_duration", "timings", "predicted_n", "version", "build_info",
    "default_generation_settings", "n_ctx", "total_slots", "slots", "is_processing", "loaded_instances", "state",
    "router", "model_path", "model_id", "max_total_tokens", "error", "type", "code", "tool_calls", "function",
    "arguments", "model_info", "capabilities", "template", "parameters", "license", "is_sleeping", "n_ctx_slot",
]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                    st.text(max_size=20), st.sampled_from(["", "ok", "loaded", "unloaded", "stop", "assistant"]))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(FIELDS), inner, max_size=6),
), max_leaves=30)


def _stream(values: list[Any], sse: bool) -> bytes:
    lines = [json.dumps(v).encode() for v in values]
    if sse:
        return b"".join(b"data: " + line + b"\n\n" for line in lines) + b"data: [DONE]\n\n"
    return b"".join(line + b"\n" for line in lines)


ANSWERS = st.one_of(
    st.tuples(st.just("application/json"), st.binary(max_size=300)),
    st.tuples(st.just("application/json"), JSON.map(lambda v: json.dumps(v).encode())),
    st.tuples(st.just("text/event-stream"), st.lists(JSON, max_size=6).map(lambda vs: _stream(vs, sse=True))),
    st.tuples(st.just("application/x-ndjson"), st.lists(JSON, max_size=6).map(lambda vs: _stream(vs, sse=False))),
    st.tuples(st.just("text/plain"), st.text(max_size=200).map(str.encode)),
)
STATUSES = st.sampled_from([200, 200, 200, 200, 401, 404, 500, 503])


class _Answer(FakeHandler):
    answer: tuple[int, str, bytes] = (200, "application/json", b"{}")

    def dispatch(self, method: str) -> None:
        self.read_body()
        status, content_type, body = type(self).answer
        self.send_body(status, body, {"Content-Type": content_type, "Content-Length": str(len(body))})


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[ThreadedFake]:
    server = ThreadedFake(_Answer, name="fuzz").start()
    try:
        yield server
    finally:
        server.stop()


async def _read_all(engine: Engine) -> None:
    """Every read the adapter has, each allowed to fail only with an EngineError."""
    request = ChatRequest("m", (ChatMessage("user", "hi"),), max_tokens=4)
    calls: list[Any] = [engine.info, engine.list_models, engine.loaded_models]
    if engine.capabilities.supports(Op.METRICS):
        calls.append(engine.metrics)
    if engine.capabilities.supports(Op.SHOW):
        calls.append(lambda: engine.show("m"))

    async def chat() -> None:
        async for _ in engine.chat(request):
            pass

    for call in [*calls, chat]:
        with contextlib.suppress(EngineError):
            await asyncio.wait_for(call(), 10)


_lock = threading.Lock()


@pytest.mark.timeout(600)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(ENGINE_CLASSES)), status=STATUSES, answer=ANSWERS)
def test_any_answer_is_a_value_or_a_typed_error(fuzz_server: ThreadedFake, kind: str, status: int,
                                                answer: tuple[str, bytes]) -> None:
    _Answer.answer = (status, *answer)
    cfg = EngineConfig(name="fuzzed", url=fuzz_server.url, kind=kind, timeouts=Timeouts.within(5.0, connect_s=1.0))

    async def run() -> None:
        async with build_engine(cfg, kind) as engine:
            await _read_all(engine)

    with _lock:
        asyncio.run(run())
