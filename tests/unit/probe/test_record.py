"""Per-request measurement from scripted event streams: which chunk starts TTFT, token counts, TPOT, ITL,
and how each failure is classified. Event times are fixed, so every figure is exact."""

import asyncio

import pytest

from console.engines.base import (
    ChatEvent,
    ChatMessage,
    ChatRequest,
    EventKind,
    TokenSource,
    Usage,
)
from console.errors import AuthError, BadResponseError, BusyError, EngineTimeoutError, StreamError, UnreachableError
from console.probe.figures import ITL_PER_CHUNK, ITL_PER_TOKEN, LevelTrace, summarise
from console.probe.record import ErrorKind, classify
from console.probe.request import measure
from tests.fakes.chat_only import ChatOnlyEngine

MS = 1_000_000
REQ = ChatRequest(model="m", messages=(ChatMessage("user", "[t] hi"),))


class ScriptedEngine(ChatOnlyEngine):
    """Yields events at fixed offsets (ms) from the moment chat() is first iterated."""

    kind = "scripted"

    def __init__(self, script, *, raise_first=None, hang=False):
        super().__init__("scripted")
        self.script = script
        self.raise_first = raise_first
        self.hang = hang

    async def chat(self, request):
        import time

        t0 = time.perf_counter_ns()
        if self.raise_first is not None:
            raise self.raise_first
        for offset_ms, kind, kw in self.script:
            yield ChatEvent(kind, t_ns=t0 + int(offset_ms * MS), **kw)
        if self.hang:
            await asyncio.sleep(10)


def content(ms, text="x", tokens=None):
    return (ms, EventKind.CONTENT, {"text": text, "tokens": tokens})


def usage(ms, n, source=TokenSource.SERVER_USAGE, **timings):
    return (ms, EventKind.USAGE, {"usage": Usage(prompt_tokens=7, completion_tokens=n, source=source, **timings)})


def done(ms):
    return (ms, EventKind.DONE, {})


async def run(script, **kw):
    return await measure(ScriptedEngine(script, **kw), REQ, index=0, tag="t", warmup=False, timeout_s=2)


async def test_empty_and_reasoning_chunks():
    rec = await run([
        (5, EventKind.CONTENT, {"text": ""}),  # an empty delta is not a first token
        (100, EventKind.REASONING, {"text": "hmm"}),
        content(150), content(170), usage(171, 3), done(172),
    ])
    assert rec.ok
    assert rec.ttft_s == pytest.approx(0.100, abs=0.002)  # reasoning counts as the first token
    assert rec.ttfa_s == pytest.approx(0.150, abs=0.002)  # the first answer comes later
    assert rec.e2e_s == pytest.approx(0.170, abs=0.002)  # the trailing usage/done does not lengthen it
    assert rec.chunks == 3 and rec.tokens_out == 3 and rec.token_source is TokenSource.SERVER_USAGE
    assert rec.tokens_in == 7
    assert rec.tpot_s == pytest.approx(0.035, abs=0.001)  # 70 ms over 2 tokens after the first


async def test_multi_token_chunks_with_per_chunk_counts():
    rec = await run([content(80, tokens=4), content(120, tokens=4), content(160, tokens=4), usage(161, 12),
                     done(161)])
    assert rec.tokens_out == 12 and rec.first_chunk_tokens == 4 and rec.chunk_tokens_known
    assert rec.tpot_s == pytest.approx(0.080 / 8)  # (t_last − t_first) / (N − k1)
    assert rec.itl_samples_s() == pytest.approx([0.010] * 8)  # each 40 ms gap spread over its 4 tokens
    assert rec.max_stall_s == pytest.approx(0.040)


async def test_multi_token_chunks_without_per_chunk_counts_are_inter_chunk():
    rec = await run([content(80), content(120), content(160), usage(161, 12), done(161)])
    assert rec.tokens_out == 12  # from usage, not the 3 chunks
    assert not rec.chunk_tokens_known
    assert rec.itl_samples_s() == pytest.approx([0.040, 0.040])  # one sample per chunk gap
    trace = LevelTrace()
    fig = summarise(1, [rec], trace)
    assert fig.itl_kind == ITL_PER_CHUNK


async def test_chunk_count_fallback_is_flagged_approximate():
    rec = await run([content(10), content(20), usage(21, 2, TokenSource.CHUNKS), done(21)])
    assert rec.token_source is TokenSource.CHUNKS and rec.tokens_out == 2
    fig = summarise(1, [rec], LevelTrace())
    assert fig.tokens_approximate
    assert any("approximate" in w for w in fig.warnings)


async def test_ollama_queue_wait_from_engine_timings():
    rec = await run([content(10), content(20), usage(21, 2, TokenSource.OLLAMA_EVAL, load_ms=1.0, prompt_ms=4.0,
                                                     generation_ms=10.0, total_ms=115.0), done(21)])
    assert rec.queue_ms == pytest.approx(100.0)
    assert rec.server_decode_tok_s == pytest.approx(200.0)


@pytest.mark.parametrize(("exc", "kind"), [
    (BusyError("busy", status=503), ErrorKind.BUSY),
    (AuthError("no", status=401), ErrorKind.HTTP_4XX),
    (BadResponseError("bad", status=400), ErrorKind.HTTP_4XX),
    (BadResponseError("boom", status=500), ErrorKind.HTTP_5XX),
    (UnreachableError("refused"), ErrorKind.DISCONNECT),
    (EngineTimeoutError("slow"), ErrorKind.TIMEOUT),
])
async def test_failures_before_the_stream(exc, kind):
    rec = await run([], raise_first=exc)
    assert rec.error is kind and not rec.ok and rec.ttft_s is None
    assert classify(exc) is kind


async def test_failures_during_the_stream():
    broke = await run([content(10), (20, EventKind.ERROR, {"error": StreamError("cut")})])
    assert broke.error is ErrorKind.DISCONNECT
    no_done = await run([content(10), content(20)])
    assert no_done.error is ErrorKind.DISCONNECT  # ended without its final chunk
    empty = await run([(10, EventKind.CONTENT, {"text": ""}), usage(11, 0), done(12)])
    assert empty.error is ErrorKind.EMPTY
    stalled = await measure(ScriptedEngine([content(10)], hang=True), REQ, index=0, tag="t", warmup=False,
                            timeout_s=0.2)
    assert stalled.error is ErrorKind.TIMEOUT


async def test_failures_are_left_out_of_latency_figures():
    good = await run([content(100), content(110), usage(111, 2), done(111)])
    bad = await run([content(1), (2, EventKind.ERROR, {"error": StreamError("cut")})])
    fig = summarise(2, [good, bad], LevelTrace())
    assert fig.ok == 1 and fig.attempted == 2 and fig.error_rate == 0.5
    assert fig.errors == {"disconnect": 1}
    assert fig.ttft_s.n == 1 and fig.ttft_s.p50 == pytest.approx(0.100, abs=0.002)


async def test_per_token_itl_label_in_summary():
    rec = await run([content(10, tokens=2), content(30, tokens=2), usage(31, 4), done(31)])
    assert summarise(1, [rec], LevelTrace()).itl_kind == ITL_PER_TOKEN
