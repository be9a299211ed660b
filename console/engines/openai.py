"""The OpenAI-compatible base adapter: /v1/models and streamed /v1/chat/completions over SSE.

vLLM, llama.cpp, SGLang, TGI and LM Studio all speak this dialect with small differences; their adapters
subclass `OpenAICompatEngine` and override `info()`, `_chat_payload()`, `_events_from_chunk()` or the
capability table. A plain OpenAI-compatible server (kind "openai") serves what it was started with and can
only list, chat and answer health.

Stream convention (every subclass keeps it): `chat()` is an async generator. A failure BEFORE the stream
starts (connect refused, HTTP status >= 400, a body that is not a stream) RAISES a typed `EngineError` from
the first iteration. A failure AFTER it started (an `error` object in an SSE event, a reset connection, a
read timeout, an end without `[DONE]` or a finish reason) is YIELDED as one `EventKind.ERROR` event carrying
the typed error, and the generator then ends. A successful stream ends with exactly one USAGE event
followed by one DONE event.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import httpx

from console.config import EngineConfig
from console.engines.base import (
    Capabilities,
    ChatEvent,
    ChatRequest,
    Engine,
    EngineInfo,
    EventKind,
    Health,
    LoadedModel,
    MetricsSnapshot,
    ModelInfo,
    Op,
    TokenSource,
    Usage,
)
from console.engines.http import ERROR_BODY_LIMIT, build_client, request, request_json
from console.engines.metrics import parse_metrics
from console.engines.stream import StreamClient, StreamResponse
from console.engines.wire import parse_json
from console.errors import (
    BadResponseError,
    BusyError,
    EngineError,
    EngineTimeoutError,
    StreamError,
    UnreachableError,
)

_SERVES_WHAT_IT_STARTED_WITH = (
    "an OpenAI-compatible server serves the model it was started with; it has no API to {op} models"
)


def _fixed_reason(op: str) -> str:
    return _SERVES_WHAT_IT_STARTED_WITH.format(op=op)


def sse_data(line: str) -> str | None:
    """The payload of an SSE `data:` line (with or without the space); None for comments, blanks, other fields.

    A bare JSON line is accepted too: a few servers send their error object without the `data:` prefix.
    """
    if line.startswith("data:"):
        value = line[5:]
        return value[1:] if value.startswith(" ") else value
    if line.startswith("{"):
        return line
    return None


def error_text(err: Any) -> str:
    """The human part of an `error` value found inside a stream event (object or string)."""
    if isinstance(err, Mapping):
        msg = err.get("message") or err.get("error") or json.dumps(err)
        return str(msg)[:ERROR_BODY_LIMIT]
    return str(err)[:ERROR_BODY_LIMIT]


@dataclass
class StreamState:
    """What a stream has said so far. Subclasses may read and extend it in `_events_from_chunk`."""

    output_chunks: int = 0  # chunks that carried content, reasoning or a tool call
    finish_reason: str | None = None
    usage: Mapping[str, Any] | None = None
    usage_t_ns: int = 0
    timings: Mapping[str, Any] | None = None
    timings_t_ns: int = 0
    completion_seen: int = 0  # last cumulative completion_tokens of continuous usage
    extra: dict[str, Any] = field(default_factory=dict)


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def usage_from(state: StreamState, end_t_ns: int) -> ChatEvent:
    """The one USAGE event of a finished stream, from the best source the server gave.

    Server `usage` wins; llama.cpp `timings` fill engine-side times (and the counts when usage is absent);
    with neither, the count of output chunks stands in, flagged approximate (TokenSource.CHUNKS).
    """
    u = state.usage or {}
    tm = state.timings or {}
    details = u.get("prompt_tokens_details")
    cached = _int_or_none(details.get("cached_tokens")) if isinstance(details, Mapping) else None
    if cached is None:
        cached = _int_or_none(tm.get("cache_n"))
    prompt_ms = _float_or_none(tm.get("prompt_ms"))
    generation_ms = _float_or_none(tm.get("predicted_ms"))
    if state.usage is not None:
        usage = Usage(
            prompt_tokens=_int_or_none(u.get("prompt_tokens")),
            completion_tokens=_int_or_none(u.get("completion_tokens")),
            source=TokenSource.SERVER_USAGE,
            prompt_ms=prompt_ms, generation_ms=generation_ms, cached_tokens=cached,
        )
        t_ns = max(state.usage_t_ns, state.timings_t_ns)
    elif state.timings is not None:
        prompt_n = _int_or_none(tm.get("prompt_n"))
        usage = Usage(
            # timings.prompt_n counts only the tokens evaluated now; the cached ones were part of the prompt too
            prompt_tokens=None if prompt_n is None else prompt_n + (cached or 0),
            completion_tokens=_int_or_none(tm.get("predicted_n")),
            source=TokenSource.LLAMACPP_TIMINGS,
            prompt_ms=prompt_ms, generation_ms=generation_ms, cached_tokens=cached,
        )
        t_ns = state.timings_t_ns
    else:
        usage = Usage(completion_tokens=state.output_chunks, source=TokenSource.CHUNKS)
        t_ns = end_t_ns
    return ChatEvent(EventKind.USAGE, t_ns=t_ns or end_t_ns, usage=usage)


def one_model_per_process(how_to_change: str) -> dict[Op, str]:
    """Why load, unload and swap are refused by a server that serves the one model it was started with;
    `how_to_change` says what to restart it with and ends in `{op}`."""
    return {Op.LOAD: how_to_change.format(op="serve another model"),
            Op.UNLOAD: how_to_change.format(op="free its memory"),
            Op.SWAP: how_to_change.format(op="switch models")}


class OpenAICompatEngine(Engine):
    """An engine that speaks the OpenAI HTTP API (kind "openai"). Subclasses add their native endpoints."""

    kind = "openai"
    metrics_kind: ClassVar[str | None] = None  # name table in console.engines.metrics; None: no /metrics
    metrics_path: ClassVar[str] = "/metrics"
    models_path: ClassVar[str] = "/v1/models"
    chat_path: ClassVar[str] = "/v1/chat/completions"
    # Operations this kind never supports, with the reason a person can act on. Subclasses replace it.
    UNSUPPORTED: ClassVar[Mapping[Op, str]] = {
        Op.LOAD: _fixed_reason("load"),
        Op.UNLOAD: _fixed_reason("unload"),
        Op.SWAP: _fixed_reason("swap"),
        Op.PULL: _fixed_reason("pull"),
        Op.DELETE: _fixed_reason("delete"),
        Op.SHOW: "the OpenAI API has no model details beyond the list",
        Op.METRICS: "a plain OpenAI-compatible server has no known /metrics; pick its engine kind in the config",
        Op.SLEEP: _fixed_reason("sleep"),
        Op.WAKE: _fixed_reason("wake"),
        Op.LORA_LOAD: _fixed_reason("load LoRA adapters into"),
        Op.LORA_UNLOAD: _fixed_reason("unload LoRA adapters from"),
    }

    def __init__(self, cfg: EngineConfig, *, max_connections: int = 100) -> None:
        super().__init__(cfg.name, cfg.url)
        self.cfg = cfg
        self._client = build_client(cfg, max_connections=max_connections)
        self._streams = StreamClient(cfg, max_connections=max_connections)
        self._caps = Capabilities(dict(self.UNSUPPORTED))

    # -- capabilities -------------------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        """Cheap: what is known now. Kinds whose abilities depend on server flags refine it in
        `probe_capabilities()`; `settle_capabilities()` makes sure that has run."""
        return self._caps

    def _set_capability(self, op: Op, reason: str | None) -> None:
        """Mark `op` supported (reason None) or unsupported with `reason`."""
        unsupported = dict(self._caps.unsupported)
        if reason is None:
            unsupported.pop(op, None)
        else:
            unsupported[op] = reason
        self._caps = Capabilities(unsupported)

    # -- plumbing -----------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _json(self, method: str, path: str, *, what: str = "", **kwargs: Any) -> Any:
        return await request_json(self._client, method, path, engine=self.name, what=what, **kwargs)

    async def _request(self, method: str, path: str, *, what: str = "", ok: tuple[int, ...] = (200,),
                       **kwargs: Any) -> httpx.Response:
        return await request(self._client, method, path, engine=self.name, what=what, ok=ok, **kwargs)

    def _bad(self, message: str) -> BadResponseError:
        return BadResponseError(message, engine=self.name)

    # -- health -------------------------------------------------------------------------------------------

    async def info(self) -> EngineInfo:
        """Health from GET /v1/models: answered = ok, refused or silent = down, 503 = loading.

        Auth and bad-response errors raise: the engine is up, the problem is ours to fix (key, kind).
        """
        t0 = time.perf_counter()
        try:
            await self._request("GET", self.models_path, what="list models")
        except (UnreachableError, EngineTimeoutError) as exc:
            return EngineInfo(self.kind, self.base_url, None, Health.DOWN, reason=str(exc))
        except BusyError as exc:
            return EngineInfo(self.kind, self.base_url, None, Health.LOADING, reason=str(exc))
        latency = (time.perf_counter() - t0) * 1000
        return EngineInfo(self.kind, self.base_url, None, Health.OK, latency_ms=latency)

    # -- models -------------------------------------------------------------------------------------------

    async def _model_entries(self, path: str | None = None, **kwargs: Any) -> list[Mapping[str, Any]]:
        """The `data` entries of a models list; tolerates `data: null`, extra fields and stray non-objects."""
        body = await self._json("GET", path or self.models_path, what="list models", **kwargs)
        if not isinstance(body, Mapping):
            raise self._bad(f"answered the models list with {type(body).__name__}, not an object")
        data = body.get("data")
        if data is None:
            return []
        if not isinstance(data, list):
            raise self._bad("answered the models list with a `data` that is not a list")
        return [e for e in data if isinstance(e, Mapping) and isinstance(e.get("id"), str) and e["id"]]

    def _model_info(self, entry: Mapping[str, Any]) -> ModelInfo:
        meta = m if isinstance(m := entry.get("meta"), Mapping) else {}
        parent = entry.get("parent")
        return ModelInfo(
            name=entry["id"],
            size=_int_or_none(meta.get("size")),
            context_length=_int_or_none(entry.get("max_model_len")),
            parent=parent if isinstance(parent, str) and parent else None,
            details={k: v for k, v in entry.items() if k not in ("id", "object")},
        )

    async def list_models(self) -> list[ModelInfo]:
        return [self._model_info(e) for e in await self._model_entries()]

    async def loaded_models(self) -> list[LoadedModel]:
        """A plain OpenAI-compatible server has loaded exactly what it serves."""
        return [
            LoadedModel(name=m.name, size=m.size, context_length=m.context_length, status=m.status or "loaded",
                        details=dict(m.details))
            for m in await self.list_models()
        ]

    # -- metrics ------------------------------------------------------------------------------------------

    def _metrics_params(self) -> dict[str, str]:
        return {}

    async def metrics(self) -> MetricsSnapshot:
        """GET /metrics, parsed with the name table of `metrics_kind`."""
        self.capabilities.require(Op.METRICS, self.name)
        resp = await self._request("GET", self.metrics_path, what="read /metrics", params=self._metrics_params())
        return parse_metrics(resp.text, self.metrics_kind or self.kind, engine=self.name)

    # -- chat ---------------------------------------------------------------------------------------------

    def _chat_payload(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body of a streamed chat. `request.extra` is passed through and wins over our defaults."""
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for key in ("temperature", "top_p", "max_tokens", "seed"):
            value = getattr(request, key)
            if value is not None:
                payload[key] = value
        payload.update(request.extra)
        return payload

    def _events_from_chunk(self, chunk: dict[str, Any], t_ns: int, state: StreamState) -> list[ChatEvent]:
        """Events of one parsed SSE JSON object (errors are handled before this is called).

        Only choice 0 is read (enginedeck never asks for n > 1). Role-only and empty deltas produce nothing,
        so they never count as a first token. Usage and timings are remembered for the final USAGE event.
        Parsed JSON objects are always dicts: `isinstance(x, dict)` is checked here, per chunk, because the
        `Mapping` ABC check costs several times more (measured, docs/probe.md "Client overhead").
        """
        usage = chunk.get("usage")
        tokens: int | None = None
        if isinstance(usage, dict):
            state.usage, state.usage_t_ns = usage, t_ns
            done_so_far = _int_or_none(usage.get("completion_tokens"))
            if done_so_far is not None and chunk.get("choices"):
                # continuous usage: every chunk carries the running total, so this chunk's share is the step
                tokens = done_so_far - state.completion_seen
                state.completion_seen = done_so_far
        timings = chunk.get("timings")
        if isinstance(timings, dict):
            state.timings, state.timings_t_ns = timings, t_ns
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return []
        choice = choices[0]
        if isinstance(choice.get("finish_reason"), str):
            state.finish_reason = choice["finish_reason"]
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return []
        events: list[ChatEvent] = []
        for key in ("reasoning_content", "reasoning"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                events.append(ChatEvent(EventKind.REASONING, t_ns=t_ns, text=text))
                break  # some servers send the same text under both names
        text = delta.get("content")
        if isinstance(text, str) and text:
            events.append(ChatEvent(EventKind.CONTENT, t_ns=t_ns, text=text))
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            events.extend(ChatEvent(EventKind.TOOL_CALL, t_ns=t_ns, tool_call=c) for c in calls
                          if isinstance(c, dict))
        if events:
            state.output_chunks += 1
            if tokens is not None:
                events[0] = replace(events[0], tokens=tokens)
        return events

    def _stream_error(self, message: str) -> StreamError:
        return StreamError(message, engine=self.name)

    async def chat(self, request: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        """Stream one chat. See the module docstring for the raise-before / yield-after error convention."""
        payload = self._chat_payload(request)
        async with self._streams.open("POST", self.chat_path, json_body=payload,
                                      what=f"chat with {request.model}", model=request.model) as resp:
            if resp.headers.get("content-type", "").startswith("application/json"):
                async for event in self._whole_reply(resp):
                    yield event
                return
            async for event in self._stream_events(resp, request):
                yield event

    async def _whole_reply(self, resp: StreamResponse) -> AsyncIterator[ChatEvent]:
        """A server that ignored `stream: true` and sent one JSON reply: still events, same shape."""
        body = await resp.read()
        t_ns = time.perf_counter_ns()
        data = parse_json(body, engine=self.name, what="chat reply")
        if not isinstance(data, Mapping):
            raise self._bad("answered the chat with JSON that is not an object")
        if "error" in data:
            raise self._bad(f"answered the chat with an error: {error_text(data['error'])}")
        state = StreamState()
        choices = data.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        if not isinstance(first, Mapping) or not isinstance(message := first.get("message"), Mapping):
            raise self._bad("answered the chat with JSON that has no choices[0].message")
        # A whole message reads like one big delta.
        chunk = {**data, "choices": [{"delta": message, "finish_reason": first.get("finish_reason")}]}
        for event in self._events_from_chunk(chunk, t_ns, state):
            yield event
        yield usage_from(state, t_ns)
        yield ChatEvent(EventKind.DONE, t_ns=t_ns, done_reason=state.finish_reason)

    async def _stream_events(self, resp: StreamResponse, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        state = StreamState()
        t_ns = time.perf_counter_ns()
        endpoint = f"POST {self.chat_path}"
        try:
            # Each line carries the arrival stamp of the read that completed it, taken before any parsing.
            async for t_ns, line in resp.lines():
                outcome = self._line_events(line, t_ns, state)
                if outcome is None:
                    continue
                for event in outcome:
                    yield event
                    if event.kind in (EventKind.DONE, EventKind.ERROR):
                        return
                request.check_output(state.output_chunks, engine=self.name, endpoint=endpoint)
        except EngineError as exc:
            err = exc
            if isinstance(exc, StreamError):
                err = self._stream_error(f"the stream broke after {state.output_chunks} output chunk(s): "
                                         f"{exc.message}")
            yield ChatEvent(EventKind.ERROR, t_ns=time.perf_counter_ns(), error=err)
            return
        end_ns = time.perf_counter_ns()
        if state.finish_reason is None:
            err = self._stream_error(
                f"stream ended early: no [DONE] and no finish reason after {state.output_chunks} output chunk(s)"
            )
            yield ChatEvent(EventKind.ERROR, t_ns=end_ns, error=err)
            return
        # A finish reason without [DONE] (some servers close right after it) is a complete reply.
        yield usage_from(state, end_ns)
        yield ChatEvent(EventKind.DONE, t_ns=end_ns, done_reason=state.finish_reason)

    def _line_events(self, line: str, t_ns: int, state: StreamState) -> list[ChatEvent] | None:
        """Events for one SSE line; None for lines that carry nothing (comments, blanks, other fields)."""
        data = sse_data(line)
        if data is None:
            return None
        data = data.strip()
        if not data:
            return None
        if data == "[DONE]":
            return [usage_from(state, t_ns), ChatEvent(EventKind.DONE, t_ns=t_ns, done_reason=state.finish_reason)]
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser follows
            err = self._stream_error(f"sent a stream event that is not JSON: {data[:80]!r}")
            return [ChatEvent(EventKind.ERROR, t_ns=t_ns, error=err)]
        if not isinstance(chunk, dict):
            return None
        if chunk.get("error") is not None:
            return [ChatEvent(EventKind.ERROR, t_ns=t_ns,
                              error=self._stream_error(f"reported an error mid-stream: {error_text(chunk['error'])}"))]
        return self._events_from_chunk(chunk, t_ns, state)

