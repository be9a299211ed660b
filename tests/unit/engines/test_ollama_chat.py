"""OllamaEngine.chat: the event stream, arrival times, final stats, request options, and mid-stream failures."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from console.config import EngineConfig, Timeouts
from console.engines.base import ChatEvent, ChatMessage, ChatRequest, EventKind, TokenSource
from console.engines.ollama import OllamaEngine, chat_body, usage_from_final
from console.errors import EngineError, EngineTimeoutError, NotFoundError, StreamError, UnreachableError
from tests.fakes.ollama_server import (
    HOSTILE_REPLY,
    HOSTILE_THINKING,
    STATS,
    FakeModel,
    FakeOllama,
    Scenario,
    ollama_contract_server,
)

REPLY = FakeModel("x").reply


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with ollama_contract_server() as server:
        yield server


@pytest.fixture
async def engine(fake: FakeOllama) -> AsyncIterator[OllamaEngine]:
    async with OllamaEngine(EngineConfig(name="box-ollama", url=fake.url, kind="ollama")) as eng:
        yield eng  # type: ignore[misc]


def ask(model: str = "llama3.2:1b", text: str = "Why is the sky blue?", **kw: object) -> ChatRequest:
    return ChatRequest(model, (ChatMessage("user", text),), **kw)  # type: ignore[arg-type]


async def collect(engine: OllamaEngine, request: ChatRequest) -> list[ChatEvent]:
    return [e async for e in engine.chat(request)]


def kinds(events: list[ChatEvent]) -> list[EventKind]:
    return [e.kind for e in events]


def text(events: list[ChatEvent], kind: EventKind = EventKind.CONTENT) -> str:
    return "".join(e.text for e in events if e.kind is kind)


async def test_content_usage_done(engine: OllamaEngine) -> None:
    t0 = time.perf_counter_ns()
    events = await collect(engine, ask())
    assert text(events) == REPLY
    assert kinds(events)[-2:] == [EventKind.USAGE, EventKind.DONE]
    assert set(kinds(events)[:-2]) == {EventKind.CONTENT}
    stamps = [e.t_ns for e in events]
    assert stamps == sorted(stamps) and stamps[0] >= t0
    usage = events[-2].usage
    assert usage is not None and usage.source is TokenSource.OLLAMA_EVAL and not usage.source.approximate
    assert usage.completion_tokens == len(events) - 2  # one token per chunk here
    assert usage.prompt_tokens == 5 + 12
    assert usage.total_ms and usage.generation_ms and usage.prompt_ms and usage.load_ms
    assert usage.total_ms >= usage.generation_ms
    assert events[-1].done_reason == "stop"


async def test_reasoning_comes_first(engine: OllamaEngine) -> None:
    events = await collect(engine, ask("qwen3:4b"))
    first_content = kinds(events).index(EventKind.CONTENT)
    assert set(kinds(events)[:first_content]) == {EventKind.REASONING}
    assert text(events, EventKind.REASONING).startswith("The user asks")
    assert text(events) == REPLY


async def test_tool_calls(engine: OllamaEngine, fake: FakeOllama) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    events = await collect(engine, ask("qwen3:4b", extra={"tools": tools, "think": False}))
    (call,) = [e.tool_call for e in events if e.kind is EventKind.TOOL_CALL]
    assert call is not None
    assert call["function"]["name"] == "get_weather" and call["function"]["arguments"] == {"city": "Tokyo"}
    assert EventKind.REASONING not in kinds(events)  # think false was passed through at the top level
    assert fake.requests_to("/api/chat")[-1].body["think"] is False


async def test_request_options(engine: OllamaEngine, fake: FakeOllama) -> None:
    req = ask(temperature=0.2, top_p=0.9, max_tokens=3, context_length=8192, seed=7, keep_alive="1h",
              extra={"top_k": 20, "format": "json"})
    events = await collect(engine, req)
    body = fake.requests_to("/api/chat")[-1].body
    assert body["stream"] is True and body["keep_alive"] == "1h" and body["format"] == "json"
    assert body["options"] == {"temperature": 0.2, "top_p": 0.9, "num_predict": 3, "num_ctx": 8192, "seed": 7,
                               "top_k": 20}
    assert body["messages"] == [{"role": "user", "content": "Why is the sky blue?"}]
    assert len([e for e in events if e.kind is EventKind.CONTENT]) == 3
    assert events[-1].done_reason == "length"
    (loaded,) = fake.ps()
    assert loaded["context_length"] == 8192


def test_chat_body_leaves_out_what_is_unset() -> None:
    assert chat_body(ask()) == {"model": "llama3.2:1b", "stream": True,
                                "messages": [{"role": "user", "content": "Why is the sky blue?"}]}


async def test_arrival_times_follow_the_tokens(engine: OllamaEngine, fake: FakeOllama) -> None:
    fake.queue(Scenario(token_delay_s=0.06, first_token_delay_s=0.1))
    t0 = time.perf_counter_ns()
    events = await collect(engine, ask())
    content = [e for e in events if e.kind is EventKind.CONTENT]
    assert (content[0].t_ns - t0) / 1e6 > 50  # generous: the first token was held back 100 ms
    gaps = [(b.t_ns - a.t_ns) / 1e6 for a, b in itertools.pairwise(content)]
    assert min(gaps) > 25  # each chunk stamped when it arrived, not when the stream ended


async def test_first_token_s(engine: OllamaEngine) -> None:
    assert 0 <= await engine.first_token_s("llama3.2:1b") < 10


async def test_hostile_text_is_passed_through_unchanged(engine: OllamaEngine) -> None:
    # The adapter reports what the model said; the display neutralises it (console/logs/sanitize.py).
    events = await collect(engine, ask("hostile:latest"))
    assert text(events) == HOSTILE_REPLY


async def test_hostile_thinking_via_queued_scenario(engine: OllamaEngine, fake: FakeOllama) -> None:
    fake.queue(Scenario(thinking=HOSTILE_THINKING))
    events = await collect(engine, ask("qwen3:4b"))
    assert text(events, EventKind.REASONING) == HOSTILE_THINKING


# --- failures ----------------------------------------------------------------------------------------------------

def only_error(events: list[ChatEvent], kind: type[EngineError] = StreamError) -> EngineError:
    assert events[-1].kind is EventKind.ERROR
    assert EventKind.DONE not in kinds(events)
    err = events[-1].error
    assert isinstance(err, kind) and err.engine == "box-ollama"
    return err


async def test_midstream_error_line(engine: OllamaEngine, fake: FakeOllama) -> None:
    fake.queue(Scenario(error_after=3))
    events = await collect(engine, ask())
    assert kinds(events) == [EventKind.CONTENT] * 3 + [EventKind.ERROR]
    assert "an error was encountered while running the model" in str(only_error(events))


async def test_error_line_before_any_content(engine: OllamaEngine, fake: FakeOllama) -> None:
    fake.queue(Scenario(error_after=0, error_message="model requires more system memory"))
    events = await collect(engine, ask())
    assert len(events) == 1 and "more system memory" in str(only_error(events))


async def test_garbage_line(engine: OllamaEngine, fake: FakeOllama) -> None:
    fake.queue(Scenario(garbage_after=2))
    events = await collect(engine, ask())
    assert kinds(events) == [EventKind.CONTENT] * 2 + [EventKind.ERROR]
    assert "not Ollama JSON" in str(only_error(events)) and "502 Bad Gateway" in str(only_error(events))


async def test_connection_dropped_mid_stream(engine: OllamaEngine, fake: FakeOllama) -> None:
    fake.queue(Scenario(drop_after=4))
    events = await collect(engine, ask())
    assert kinds(events)[:4] == [EventKind.CONTENT] * 4
    assert "connection broke" in str(only_error(events))


async def test_stream_ends_without_done(engine: OllamaEngine, fake: FakeOllama) -> None:
    fake.queue(Scenario(end_without_done=True))
    events = await collect(engine, ask())
    assert text(events) == REPLY
    assert "without its final line" in str(only_error(events))


async def test_silence_mid_stream_is_a_timeout_event() -> None:
    with ollama_contract_server() as fake:
        fake.queue(Scenario(first_token_delay_s=0.1, token_delay_s=1.0))
        cfg = EngineConfig(name="box-ollama", url=fake.url, kind="ollama", timeouts=Timeouts.within(0.4))
        async with OllamaEngine(cfg) as eng:
            events = await collect(eng, ask())
    assert kinds(events) == [EventKind.CONTENT, EventKind.ERROR]
    assert "no new line within 0.4 s (idle_timeout)" in str(only_error(events, EngineTimeoutError))


async def test_missing_stats_mean_zero(engine: OllamaEngine, fake: FakeOllama) -> None:
    fake.queue(Scenario(omit_stats=True))
    events = await collect(engine, ask())
    usage = events[-2].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (0, 0)
    assert (usage.load_ms, usage.prompt_ms, usage.generation_ms, usage.total_ms) == (0, 0, 0, 0)
    assert events[-1].kind is EventKind.DONE


async def test_some_stats_missing(engine: OllamaEngine, fake: FakeOllama) -> None:
    fake.queue(Scenario(omit_stats=("prompt_eval_count", "load_duration")))
    usage = (await collect(engine, ask()))[-2].usage
    assert usage is not None and usage.prompt_tokens == 0 and usage.load_ms == 0
    assert usage.completion_tokens and usage.completion_tokens > 0 and usage.generation_ms


def test_usage_from_final_converts_nanoseconds() -> None:
    final = dict(zip(STATS, (10_706_818_083, 6_338_219_291, 26, 130_079_000, 259, 4_232_710_000), strict=True))
    usage = usage_from_final(final)
    assert (usage.prompt_tokens, usage.completion_tokens) == (26, 259)
    assert usage.total_ms == pytest.approx(10_706.818083)
    assert usage.load_ms == pytest.approx(6_338.219291)
    assert usage.prompt_ms == pytest.approx(130.079)
    assert usage.generation_ms == pytest.approx(4_232.71)


async def test_unknown_model_raises_before_any_event(engine: OllamaEngine) -> None:
    with pytest.raises(NotFoundError, match="model 'nope' not found"):
        await collect(engine, ask("nope"))


async def test_unreachable_raises() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    async with OllamaEngine(EngineConfig(name="gone", url=url, kind="ollama")) as eng:
        with pytest.raises(UnreachableError, match="cannot connect"):
            await collect(eng, ask())


async def test_stopping_early_releases_the_connection(engine: OllamaEngine, fake: FakeOllama) -> None:
    fake.queue(Scenario(token_delay_s=0.05))
    stream = engine.chat(ask())
    async for event in stream:
        assert event.kind is EventKind.CONTENT
        break
    await stream.aclose()  # type: ignore[attr-defined]
    events = await collect(engine, ask())  # the pool is usable again
    assert events[-1].kind is EventKind.DONE


async def test_each_chat_stream_has_a_connection_of_its_own(engine: OllamaEngine, fake: FakeOllama) -> None:
    # Chat streams go through console/engines/stream.py (one request per connection, stamped on arrival), not
    # the httpx pool: each says `Connection: close`, and the next one opens afresh.
    assert kinds(await collect(engine, ask()))[-1] is EventKind.DONE
    assert kinds(await collect(engine, ask()))[-1] is EventKind.DONE
    first, second = fake.requests_to("/api/chat")
    assert first.headers["connection"] == second.headers["connection"] == "close"
    assert first.peer != second.peer
