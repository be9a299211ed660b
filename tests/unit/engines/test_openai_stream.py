"""The OpenAI-compatible SSE stream: events, timing stamps, usage sources, errors by the documented convention."""

from __future__ import annotations

import json

import pytest

from console.config import EngineConfig, Timeouts
from console.engines.base import ChatEvent, ChatMessage, ChatRequest, EventKind, TokenSource
from console.engines.openai import OpenAICompatEngine, sse_data
from console.engines.wire import LineSplitter
from console.errors import BadResponseError, NotFoundError, StreamError, UnreachableError
from tests.fakes.hostile_server import (
    CHAT,
    GOOD_STREAM,
    HostileServer,
    Reply,
    chunk,
    split_every,
    sse,
    usage_chunk,
)

REQ = ChatRequest(model="m", messages=(ChatMessage("user", "hi"),), temperature=0.2, max_tokens=8, seed=7,
                  extra={"top_k": 5})


def engine_for(server: HostileServer, read_s: float = 5.0) -> OpenAICompatEngine:
    return OpenAICompatEngine(EngineConfig(name="fake", url=server.url, kind="openai",
                                           timeouts=Timeouts.within(read_s, connect_s=1.0)))


async def collect(server: HostileServer, reply: Reply, req: ChatRequest = REQ) -> list[ChatEvent]:
    server.route(*CHAT, reply)
    async with engine_for(server) as eng:
        return [ev async for ev in eng.chat(req)]


def kinds(events: list[ChatEvent]) -> list[EventKind]:
    return [e.kind for e in events]


def stream(*chunks: bytes) -> Reply:
    return Reply(chunks=list(chunks), content_type="text/event-stream")


# -- the line splitter ----------------------------------------------------------------------------------------

def test_splitter_joins_lines_and_utf8_cut_across_reads():
    text = 'data: {"x": "héllo 🦙"}\r\n\r\ndata: [DONE]\n'.encode()
    sp = LineSplitter()
    lines = [ln for i in range(len(text)) for ln in sp.feed(text[i : i + 1])]
    assert lines == ['data: {"x": "héllo 🦙"}', "", "data: [DONE]"]
    assert sp.flush() is None


def test_splitter_waits_on_a_trailing_cr_and_keeps_an_unterminated_tail():
    sp = LineSplitter()
    assert list(sp.feed(b"a\r")) == []
    assert list(sp.feed(b"\nb\rc")) == ["a", "b"]
    assert sp.flush() == "c"


def test_sse_data_accepts_both_prefixes_and_skips_comments():
    assert sse_data("data: {}") == "{}"
    assert sse_data("data:{}") == "{}"
    assert sse_data(": ping") is None
    assert sse_data("event: message") is None
    assert sse_data('{"error": "x"}') == '{"error": "x"}'


# -- good streams ---------------------------------------------------------------------------------------------

async def test_stream_yields_content_then_usage_then_done(hostile_server):
    events = await collect(hostile_server, stream(*GOOD_STREAM))
    assert kinds(events) == [EventKind.CONTENT, EventKind.CONTENT, EventKind.USAGE, EventKind.DONE]
    assert "".join(e.text for e in events) == "Hello"
    usage = events[2].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.source) == (5, 2, TokenSource.SERVER_USAGE)
    assert events[-1].done_reason == "stop"
    stamps = [e.t_ns for e in events]
    assert stamps == sorted(stamps) and all(t > 0 for t in stamps)


async def test_request_body_asks_for_usage_and_maps_options(hostile_server):
    await collect(hostile_server, stream(*GOOD_STREAM))
    body = hostile_server.requests_to("/v1/chat/completions")[0].json()
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["max_tokens"], body["seed"], body["top_k"]) == (0.2, 8, 7, 5)
    assert "top_p" not in body
    assert body["messages"] == [{"role": "user", "content": "hi"}]


async def test_role_only_and_empty_chunks_are_not_tokens(hostile_server):
    events = await collect(hostile_server, stream(*sse(
        chunk("", role="assistant"), chunk(None), chunk(""), chunk("x", finish="stop"))))
    assert kinds(events) == [EventKind.CONTENT, EventKind.USAGE, EventKind.DONE]
    usage = events[1].usage
    assert usage is not None
    # no usage and no timings: the count of output chunks stands in, flagged approximate
    assert usage.completion_tokens == 1 and usage.source is TokenSource.CHUNKS and usage.source.approximate


async def test_events_split_across_reads_and_inside_utf8(hostile_server):
    body = sse(chunk("", role="assistant"), chunk("héllo 🦙 "), chunk("wörld", finish="stop"))
    reply = Reply(chunks=split_every(body, 3), content_type="text/event-stream", delay_s=0.002)
    events = await collect(hostile_server, reply)
    assert "".join(e.text for e in events if e.kind is EventKind.CONTENT) == "héllo 🦙 wörld"
    assert events[-1].kind is EventKind.DONE


async def test_no_space_prefix_comments_and_pings_are_accepted(hostile_server):
    body = sse(": ping", chunk("a"), ": keep-alive", chunk("b", finish="length"), space=False)
    events = await collect(hostile_server, stream(*body))
    assert [e.text for e in events if e.kind is EventKind.CONTENT] == ["a", "b"]
    assert events[-1].done_reason == "length"


async def test_reasoning_and_tool_calls_are_kept_apart_from_content(hostile_server):
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body = sse(chunk(reasoning="think"), chunk(reasoning_content="more"), chunk("answer"),
               chunk(tool_calls=[call], finish="tool_calls"))
    events = await collect(hostile_server, stream(*body))
    assert kinds(events)[:4] == [EventKind.REASONING, EventKind.REASONING, EventKind.CONTENT, EventKind.TOOL_CALL]
    assert events[0].text == "think" and events[1].text == "more" and events[2].text == "answer"
    assert events[3].tool_call == call
    assert events[-1].done_reason == "tool_calls"


async def test_continuous_usage_gives_tokens_per_chunk(hostile_server):
    def with_usage(c: dict, done: int) -> dict:
        return {**c, "usage": {"prompt_tokens": 3, "completion_tokens": done, "total_tokens": 3 + done}}

    body = sse(with_usage(chunk("", role="assistant"), 0), with_usage(chunk("ab"), 2), with_usage(chunk("c"), 3),
               with_usage(chunk(finish="stop"), 3), usage_chunk(3, 3))
    events = await collect(hostile_server, stream(*body))
    content = [e for e in events if e.kind is EventKind.CONTENT]
    assert [e.tokens for e in content] == [2, 1]
    usage = next(e.usage for e in events if e.kind is EventKind.USAGE)
    assert usage is not None and usage.completion_tokens == 3


async def test_llamacpp_timings_alone_are_the_token_source(hostile_server):
    timings = {"cache_n": 4, "prompt_n": 6, "prompt_ms": 12.5, "predicted_n": 2, "predicted_ms": 40.0}
    final = {**chunk(finish="stop"), "timings": timings}
    events = await collect(hostile_server, stream(*sse(chunk("a"), chunk("b"), final)))
    usage = next(e.usage for e in events if e.kind is EventKind.USAGE)
    assert usage is not None
    assert usage.source is TokenSource.LLAMACPP_TIMINGS
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (10, 2, 4)
    assert (usage.prompt_ms, usage.generation_ms) == (12.5, 40.0)


async def test_usage_and_timings_together_keep_server_counts_and_engine_times(hostile_server):
    final = {**usage_chunk(7, 2), "timings": {"prompt_n": 7, "prompt_ms": 3.0, "predicted_n": 2, "predicted_ms": 9.0}}
    events = await collect(hostile_server, stream(*sse(chunk("a"), chunk("b", finish="stop"), final)))
    usage = next(e.usage for e in events if e.kind is EventKind.USAGE)
    assert usage is not None
    assert (usage.source, usage.completion_tokens, usage.generation_ms) == (TokenSource.SERVER_USAGE, 2, 9.0)


async def test_finish_reason_then_eof_without_done_is_complete(hostile_server):
    events = await collect(hostile_server, stream(*sse(chunk("a"), chunk(finish="stop"), done=False)))
    assert kinds(events) == [EventKind.CONTENT, EventKind.USAGE, EventKind.DONE]


async def test_non_streamed_json_reply_still_becomes_events(hostile_server):
    reply = {"choices": [{"message": {"role": "assistant", "content": "whole"}, "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    events = await collect(hostile_server, Reply(body=json.dumps(reply)))
    assert kinds(events) == [EventKind.CONTENT, EventKind.USAGE, EventKind.DONE]
    assert events[0].text == "whole"


# -- failures: raised before the stream, yielded after it started ----------------------------------------------

async def test_error_object_mid_stream_is_one_error_event(hostile_server):
    hostile_server.misbehave("error_in_stream")
    async with engine_for(hostile_server) as eng:
        events = [ev async for ev in eng.chat(REQ)]
    assert kinds(events) == [EventKind.CONTENT, EventKind.ERROR]
    assert isinstance(events[-1].error, StreamError)
    assert "Internal server error" in str(events[-1].error)


async def test_error_string_mid_stream_is_an_error_event(hostile_server):
    events = await collect(hostile_server, stream(*sse(chunk("a"), {"error": "Input validation error"})))
    assert events[-1].kind is EventKind.ERROR and "Input validation error" in str(events[-1].error)


async def test_garbage_event_is_an_error_event(hostile_server):
    events = await collect(hostile_server, stream(*sse(chunk("a"), "{not json")))
    assert events[-1].kind is EventKind.ERROR
    assert isinstance(events[-1].error, StreamError)


async def test_http_404_before_stream_raises_not_found(hostile_server):
    hostile_server.misbehave("model_not_found")
    async with engine_for(hostile_server) as eng:
        with pytest.raises(NotFoundError, match="does not exist"):
            async for _ in eng.chat(REQ):
                pass


async def test_http_400_context_error_raises_bad_response_with_the_message(hostile_server):
    body = {"error": {"message": "This model's maximum context length is 2048 tokens.", "type": "BadRequestError",
                      "param": "input_tokens", "code": 400}}
    hostile_server.route(*CHAT, Reply(status=400, body=json.dumps(body)))
    async with engine_for(hostile_server) as eng:
        with pytest.raises(BadResponseError, match="maximum context length is 2048") as info:
            async for _ in eng.chat(REQ):
                pass
    assert info.value.status == 400


async def test_connection_refused_raises_unreachable():
    server = HostileServer().start()
    url = server.url
    server.stop()  # nothing listens on that port any more
    eng = OpenAICompatEngine(EngineConfig(name="gone", url=url, timeouts=Timeouts.within(1.0, connect_s=1.0)))
    async with eng:
        with pytest.raises(UnreachableError):
            async for _ in eng.chat(REQ):
                pass


async def test_consumer_may_stop_early_and_the_connection_is_released(hostile_server):
    hostile_server.route(*CHAT, Reply(chunks=sse(*[chunk(str(i)) for i in range(50)], chunk(finish="stop")),
                                      content_type="text/event-stream", delay_s=0.01))
    cfg = EngineConfig(name="fake", url=hostile_server.url, timeouts=Timeouts.within(2.0, connect_s=1.0))
    # one connection in the pool: a response left open by an abandoned stream would starve the next chat
    async with OpenAICompatEngine(cfg, max_connections=1) as eng:
        for _ in range(3):
            agen = eng.chat(REQ)
            first = await anext(agen)
            assert first.kind is EventKind.CONTENT
            await agen.aclose()
