"""Send one chat request through the Engine protocol and turn its event stream into a `RequestRecord`.

The adapters stamp every event on arrival, before parsing; this module only reads those stamps, so its own
work never shifts a timing. It tells the overhead meter how long each event took from arrival to here.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

from console.engines.base import ChatEvent, ChatRequest, Engine, EventKind, TokenSource, Usage
from console.engines.stream import WIRE_STAMPS
from console.errors import EngineError
from console.probe.figures import LevelTrace
from console.probe.overhead import OverheadMeter
from console.probe.record import ErrorKind, RequestRecord, classify

CONTENT_KINDS = (EventKind.CONTENT, EventKind.REASONING, EventKind.TOOL_CALL)


def _carries_output(ev: ChatEvent) -> bool:
    return ev.kind in CONTENT_KINDS and bool(ev.text or ev.tool_call)


class _Tally:
    """Mutable state while one stream is read; frozen into a RequestRecord at the end."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.first_answer: int | None = None
        self.last: int | None = None
        self.chunks = 0
        self.tokens_known = True
        self.first_tokens: int | None = None
        self.gaps: list[int] = []
        self.gap_tokens: list[int] = []
        self.token_sum = 0
        self.usage: Usage | None = None
        self.done = False

    def output(self, ev: ChatEvent) -> None:
        if self.first is None:
            self.first = ev.t_ns
            self.first_tokens = ev.tokens
        elif self.last is not None:
            self.gaps.append(ev.t_ns - self.last)
            self.gap_tokens.append(ev.tokens or 0)
        if ev.kind is EventKind.CONTENT and self.first_answer is None:
            self.first_answer = ev.t_ns
        self.last = ev.t_ns
        self.chunks += 1
        if ev.tokens is None:
            self.tokens_known = False
        else:
            self.token_sum += ev.tokens


async def measure(
    engine: Engine, request: ChatRequest, *, index: int, tag: str, warmup: bool, timeout_s: float,
    meter: OverheadMeter | None = None, trace: LevelTrace | None = None, t_sched_ns: int | None = None,
) -> RequestRecord:
    """Run one request to its end. Never raises for an engine failure: the record carries the error kind.

    A cancelled request (the level's filler, or the whole probe) still leaves its busy time in `trace`.
    """
    tally = _Tally()
    wire: list[int] = []
    stamps = WIRE_STAMPS.set(wire)
    t_handed = time.perf_counter_ns()
    if meter is not None:
        meter.begin()
    try:
        error, message, status = await _read(engine, request, tally, timeout_s, meter, trace)
    except asyncio.CancelledError:
        if trace is not None:
            trace.busy(t_handed, time.perf_counter_ns())
        raise
    finally:
        WIRE_STAMPS.reset(stamps)
        if meter is not None:
            meter.end()
    t_end = time.perf_counter_ns()
    if trace is not None:
        trace.busy(t_handed, t_end)
    # Timings start when the request's bytes left (waiting for a connection on a busy loop is the client's delay,
    # not the engine's); an adapter that does not say when falls back to the hand-off.
    t_send = wire[0] if wire else t_handed

    if error is None and not tally.done:
        error, message = ErrorKind.DISCONNECT, "the stream ended without its final chunk"
    if error is None and tally.chunks == 0:
        error, message = ErrorKind.EMPTY, "the stream carried no content"
    if error is None and tally.first is not None and tally.first <= t_send:
        error, message = ErrorKind.INVALID, "first token stamped before the request was sent"

    usage = tally.usage
    tokens_out: int | None = None
    source: TokenSource | None = None
    if usage is not None and usage.completion_tokens is not None:
        tokens_out, source = usage.completion_tokens, usage.source
    elif tally.chunks and tally.tokens_known:
        tokens_out, source = tally.token_sum, TokenSource.SERVER_USAGE
    elif tally.chunks:
        tokens_out, source = tally.chunks, TokenSource.CHUNKS
    return RequestRecord(
        index=index, tag=tag, warmup=warmup, t_send_ns=t_send, t_end_ns=t_end, t_sched_ns=t_sched_ns,
        t_first_ns=tally.first, t_first_answer_ns=tally.first_answer, t_last_ns=tally.last,
        chunks=tally.chunks, chunk_tokens_known=tally.tokens_known and tally.chunks > 0,
        first_chunk_tokens=tally.first_tokens if tally.tokens_known else None,
        gaps_ns=tuple(tally.gaps), gap_tokens=tuple(tally.gap_tokens) if tally.tokens_known else (),
        tokens_out=tokens_out, tokens_in=usage.prompt_tokens if usage else None, token_source=source,
        load_ms=usage.load_ms if usage else None, prompt_ms=usage.prompt_ms if usage else None,
        generation_ms=usage.generation_ms if usage else None, total_ms=usage.total_ms if usage else None,
        error=error, error_message=message, http_status=status,
    )


async def _read(engine: Engine, request: ChatRequest, tally: _Tally, timeout_s: float,
                meter: OverheadMeter | None, trace: LevelTrace | None) -> tuple[ErrorKind | None, str, int | None]:
    """Read the reply's events into `tally`; return the error kind, message and HTTP status (when the engine
    answered with one) an engine failure ended it with."""
    try:
        async with asyncio.timeout(timeout_s), aclosing(engine.chat(request)) as stream:
            async for ev in stream:
                if meter is not None:
                    meter.chunk(time.perf_counter_ns() - ev.t_ns)
                if _carries_output(ev):
                    tally.output(ev)
                    if trace is not None:
                        trace.output(ev.t_ns)
                elif ev.kind is EventKind.USAGE and ev.usage is not None:
                    tally.usage = ev.usage
                elif ev.kind is EventKind.DONE:
                    tally.done = True
                    if ev.usage is not None:
                        tally.usage = ev.usage
                elif ev.kind is EventKind.ERROR:
                    if ev.error is None:
                        return ErrorKind.DISCONNECT, "the stream reported an error", None
                    return classify(ev.error), str(ev.error), ev.error.status
    except EngineError as exc:
        return classify(exc), str(exc), exc.status
    except TimeoutError:
        return ErrorKind.TIMEOUT, f"no complete reply within {timeout_s:g} s", None
    return None, "", None
