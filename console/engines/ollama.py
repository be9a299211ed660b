"""Ollama: the native API (shared/reference/ollama-api.md), partly through the official `ollama` client.

The official AsyncClient does show, pull and delete. It is built on the first of those calls: importing it brings
pydantic (~14 MB and ~0.2 s), which a dashboard that only polls never needs. Every other call goes straight to one
httpx pool (console/engines/http.py's `build_client`), which the official client is handed too, each for a reason:
- `GET /` and `/api/version`: the client has no method for them;
- `/api/tags`: the client's `ListResponse` drops `details.context_length` and `capabilities`;
- `/api/ps`: the dashboard reads it every poll, and validating it with pydantic was most of an idle dashboard's CPU;
- load and unload: the reply comes only once the model is resident, which can take minutes, and the client has no
  per-call timeout.
So every call shares one pool, one TLS setup and one set of timeouts, and the raw ones map their errors through
console/engines/http.py like every other adapter. The chat stream goes through console/engines/stream.py instead:
the client parses every line before handing it over, and the probe needs each read stamped on arrival, cheaply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

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
    ModelDetail,
    ModelInfo,
    Op,
    PullProgress,
    TokenSource,
    Usage,
)
from console.engines.http import build_client, error_for_status, error_for_transport, request, request_json
from console.engines.stream import StreamClient, StreamResponse
from console.errors import (
    BadResponseError,
    EngineError,
    EngineTimeoutError,
    StreamError,
    UnreachableError,
)

if TYPE_CHECKING:
    import ollama
    from ollama import ProgressResponse

# How long unload() waits for /api/ps to stop listing the model (the server answers before memory is freed).
UNLOAD_WAIT_S = 30.0
# Keys of ChatRequest.extra that are top-level fields of /api/chat; every other key is a model option.
CHAT_TOP_LEVEL = frozenset({"think", "format", "tools", "truncate", "shift", "logprobs", "top_logprobs"})

_NO_SLEEP = "Ollama has no sleep mode: unload frees the memory, and the next request loads the model again"
_NO_LORA = "Ollama applies LoRA adapters only when a model is created (ADAPTER in a Modelfile), not at run time"
CAPABILITIES = Capabilities({
    Op.SLEEP: _NO_SLEEP,
    Op.WAKE: _NO_SLEEP,
    Op.LORA_LOAD: _NO_LORA,
    Op.LORA_UNLOAD: _NO_LORA,
    Op.METRICS: "Ollama has no /metrics endpoint; enginedeck reads /api/ps for what is loaded",
})


class OllamaEngine(Engine):
    kind = "ollama"

    def __init__(self, cfg: EngineConfig, *, max_connections: int = 100) -> None:
        super().__init__(cfg.name, cfg.url)
        self.unload_wait_s = UNLOAD_WAIT_S
        t = cfg.timeouts
        # A load answers only once the runner is up (Ollama itself gives up on a stalled load after 5 minutes).
        self._load_timeout = httpx.Timeout(connect=t.connect_s, read=max(t.request_s, t.load_s),
                                           write=t.request_s, pool=t.request_s)
        # Keys come only from the config: this pool never sends $OLLAMA_API_KEY (an ollama.com key), as the
        # official client would on its own, to whatever host this engine is.
        self._http = build_client(cfg, max_connections=max_connections)
        self._streams = StreamClient(cfg, max_connections=max_connections)
        self._official: ollama.AsyncClient | None = None

    @property
    def _client(self) -> ollama.AsyncClient:
        """The official client, built on first use, whose every request goes out through this engine's pool."""
        if self._official is None:
            import ollama

            # AsyncClient hands its keywords on to the httpx.AsyncClient it builds (its documented way to set
            # httpx options). follow_redirects=False: the pool follows none, so the official calls follow none.
            self._official = ollama.AsyncClient(host=self.base_url, transport=PoolTransport(self._http),
                                                follow_redirects=False, trust_env=False)
        return self._official

    @property
    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    async def aclose(self) -> None:
        await self._http.aclose()  # the official client, if built, sends through it

    # --- reading ------------------------------------------------------------------------------------------------

    async def info(self) -> EngineInfo:
        t0 = time.perf_counter()
        try:
            await request(self._http, "GET", "/", engine=self.name, what="say it is running")
            latency_ms = (time.perf_counter() - t0) * 1000
            data = await request_json(self._http, "GET", "/api/version", engine=self.name,
                                      what="report its version")
        except EngineError as exc:
            return EngineInfo(self.kind, self.base_url, None, Health.DOWN, reason=str(exc))
        version = data.get("version") if isinstance(data, dict) else None
        if not isinstance(version, str):
            return EngineInfo(self.kind, self.base_url, None, Health.DOWN, latency_ms=latency_ms,
                              reason="GET /api/version named no version: is this an Ollama server?")
        return EngineInfo(self.kind, self.base_url, version, Health.OK, latency_ms=latency_ms)

    async def list_models(self) -> list[ModelInfo]:
        data = await request_json(self._http, "GET", "/api/tags", engine=self.name, what="list its models")
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list):
            raise BadResponseError("answered /api/tags without a list of models", engine=self.name)
        return [_model_info(m) for m in models if isinstance(m, dict)]

    async def loaded_models(self) -> list[LoadedModel]:
        what = "list loaded models"
        data = await request_json(self._http, "GET", "/api/ps", engine=self.name, what=what)
        try:
            models = data.get("models") if isinstance(data, dict) else None
            if not isinstance(models, list):
                raise ValueError("no list of models")
            return [_loaded_model(m) for m in models]
        except ValueError as exc:
            raise BadResponseError(f"answered something that is not Ollama's API when asked to {what} ({exc})",
                                   engine=self.name) from None

    async def show(self, model: str) -> ModelDetail:
        with self._mapped(f"show {model}", model=model):
            resp = await self._client.show(model)
        # /api/show carries no digest; /api/tags does.
        digest = next((m.digest for m in await self.list_models() if same_model(m.name, model)), None)
        info = {k: v for k, v in (resp.modelinfo or {}).items() if v not in (None, [])}
        arch = info.get("general.architecture")
        ctx = info.get(f"{arch}.context_length") if isinstance(arch, str) else None
        d = resp.details
        return ModelDetail(
            name=model, digest=digest, parameters=resp.parameters, template=resp.template, license=resp.license,
            family=d.family if d else None, quantization=d.quantization_level if d else None,
            context_length=ctx if isinstance(ctx, int) else None, model_info=info,
            capabilities=tuple(resp.capabilities or ()),
        )

    # --- changing what is loaded or installed -------------------------------------------------------------------

    async def load(self, model: str, keep_alive: str | float | None = None) -> None:
        """An empty prompt loads the model; the server answers once it is resident. Then /api/ps must list it."""
        body: dict[str, Any] = {"model": model, "stream": False}
        if (ka := keep_alive_value(keep_alive)) is not None:
            body["keep_alive"] = ka
        data = await request_json(self._http, "POST", "/api/generate", engine=self.name, what=f"load {model}",
                                  model=model, json=body, timeout=self._load_timeout)
        reason = data.get("done_reason") if isinstance(data, dict) else None
        if reason not in (None, "load"):  # servers before done_reason existed send none
            raise BadResponseError(f"was asked to load {model} but answered done_reason={reason!r}",
                                   engine=self.name, hint="keep_alive 0 unloads; give a positive keep_alive")
        if not any(same_model(m.name, model) for m in await self.loaded_models()):
            raise BadResponseError(f"said {model} is loaded, but /api/ps does not list it", engine=self.name)

    async def unload(self, model: str) -> None:
        """keep_alive 0 with an empty prompt; the server answers at once, so wait until /api/ps drops the model."""
        await request_json(self._http, "POST", "/api/generate", engine=self.name, what=f"unload {model}",
                           model=model, json={"model": model, "keep_alive": 0, "stream": False},
                           timeout=self._load_timeout)
        deadline = time.monotonic() + self.unload_wait_s
        pause = 0.05
        while any(same_model(m.name, model) for m in await self.loaded_models()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise EngineTimeoutError(
                    f"was asked to unload {model}, but /api/ps still lists it after {self.unload_wait_s:g} s",
                    engine=self.name, hint="a request may still be running on it; check `enginedeck ps` again",
                )
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.5)

    async def pull(self, model: str) -> AsyncIterator[PullProgress]:
        finished = False
        with self._mapped(f"pull {model}", model=model):
            # Annotated as an AsyncIterator, it is an async generator (closing it closes the response); the pull
            # tests fail if a release changes that.
            stream = cast("AsyncGenerator[ProgressResponse, None]", await self._client.pull(model, stream=True))
            async with contextlib.aclosing(stream):
                async for part in stream:
                    finished = finished or part.status == "success"
                    yield PullProgress(status=part.status or "", digest=part.digest, total=part.total,
                                       completed=part.completed, t_ns=time.perf_counter_ns())
        if not finished:
            raise StreamError(f"the pull of {model} ended before it reported success", engine=self.name,
                              hint="run the pull again; Ollama resumes where it stopped")

    async def delete(self, model: str) -> None:
        with self._mapped(f"delete {model}", model=model):
            resp = await self._client.delete(model)
        if resp.status != "success":
            raise BadResponseError(f"did not confirm deleting {model}", engine=self.name)

    # --- chat ---------------------------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        """Stream /api/chat. Failures before the stream opens raise; failures after it yield one ERROR event."""
        async with self._streams.open("POST", "/api/chat", json_body=chat_body(request),
                                      what=f"chat with {request.model}", model=request.model) as resp:
            async for event in self._events(resp, request):
                yield event

    async def _events(self, resp: StreamResponse, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        output = 0
        try:
            # Each line carries the arrival stamp of the read that completed it, taken before any parsing.
            async for t_ns, line in resp.lines():
                if line.strip():
                    events, finished = self._parse_line(line, t_ns)
                    for event in events:
                        yield event
                    if finished:
                        return
                    output += 1
                    request.check_output(output, engine=self.name, endpoint="POST /api/chat")
        except EngineError as exc:  # broken, cut short, stalled or past a limit: the typed error, as an event
            yield ChatEvent(EventKind.ERROR, time.perf_counter_ns(), error=exc)
            return
        yield self._stream_error("the reply ended without its final line; it may be cut short")

    def _parse_line(self, line: str, t_ns: int) -> tuple[list[ChatEvent], bool]:
        """The events one NDJSON line carries, and whether the stream is over."""
        try:
            part = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser follows
            part = None
        if not isinstance(part, dict):
            return [self._stream_error(f"sent a line that is not Ollama JSON: {line[:80]!r}", t_ns)], True
        if part.get("error"):
            return [self._stream_error(f"reported an error mid-reply: {part['error']}", t_ns)], True
        events: list[ChatEvent] = []
        msg = m if isinstance(m := part.get("message"), dict) else {}
        if isinstance(thinking := msg.get("thinking"), str) and thinking:
            events.append(ChatEvent(EventKind.REASONING, t_ns, text=thinking))
        if isinstance(content := msg.get("content"), str) and content:
            events.append(ChatEvent(EventKind.CONTENT, t_ns, text=content))
        calls = msg.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict):
                events.append(ChatEvent(EventKind.TOOL_CALL, t_ns, tool_call=call))
        if part.get("done") is True:
            events.append(ChatEvent(EventKind.USAGE, t_ns, usage=usage_from_final(part)))
            reason = part.get("done_reason")
            events.append(ChatEvent(EventKind.DONE, t_ns, done_reason=reason if isinstance(reason, str) else None))
            return events, True
        return events, False

    def _stream_error(self, message: str, t_ns: int | None = None) -> ChatEvent:
        return ChatEvent(EventKind.ERROR, t_ns or time.perf_counter_ns(),
                         error=StreamError(message, engine=self.name))

    # --- errors of the official client --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _mapped(self, what: str, *, model: str | None = None) -> Iterator[None]:
        """Turn whatever the official client raises into one of console/errors.py."""
        from ollama import ResponseError

        try:
            yield
        except ResponseError as exc:
            if exc.status_code == -1:  # an {"error": ...} line after the stream began
                raise StreamError(f"reported an error while trying to {what}: {exc.error}", engine=self.name,
                                  hint="see the engine's log for the cause") from None
            raise error_for_status(exc.status_code, str(exc.error), engine=self.name, what=what,
                                   model=model) from None
        except ConnectionError:  # the client turns httpx.ConnectError into this builtin (non-streaming calls)
            raise UnreachableError(f"cannot connect to {self.base_url} to {what}", engine=self.name,
                                   hint="is `ollama serve` running and listening on that address?") from None
        except httpx.HTTPError as exc:  # timeouts, resets, and connect errors of streaming calls
            raise error_for_transport(exc, engine=self.name, url=self.base_url) from None
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            # A body that is not JSON, JSON of the wrong shape (pydantic's ValueError), or JSON the official client
            # unpacks without looking (`null` where it expects an object): the engine's fault, in words.
            raise BadResponseError(f"answered something that is not Ollama's API when asked to {what} "
                                   f"({type(exc).__name__})", engine=self.name) from None


class PoolTransport(httpx.AsyncBaseTransport):
    """The official client's way out: each of its requests is sent again through this engine's pool client.

    So the official calls get what every other call gets: the pool's connections, its headers (the configured key,
    never the $OLLAMA_API_KEY the official client adds from the environment), its timeouts, and the bounds of
    console/engines/transport.py. Of the official request only the method, the URL (the same engine: the client
    was given this engine's address) and the body with its content type go on.
    """

    def __init__(self, pool: httpx.AsyncClient) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()  # show, pull and delete send small JSON bodies
        kind = request.headers.get("content-type")
        resend = self._pool.build_request(request.method, request.url, content=body,
                                          headers={"Content-Type": kind} if body and kind else None)
        return await self._pool.send(resend, stream=True)

    async def aclose(self) -> None:
        """Nothing of its own to close: the engine closes the pool."""


# --- translation helpers (pure; unit-tested directly) ----------------------------------------------------------------

def same_model(a: str, b: str) -> bool:
    """Ollama names without a tag mean `:latest`; names compare without case."""

    def norm(name: str) -> str:
        name = name.strip().lower()
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return norm(a) == norm(b)


def keep_alive_value(value: str | float | None) -> str | float | int | None:
    """The API takes numbers as seconds and strings as Go durations, and rejects a bare numeric string ("3600")
    that OLLAMA_KEEP_ALIVE accepts; send such a string as the number it means."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    return value


def chat_body(r: ChatRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, value in (("temperature", r.temperature), ("top_p", r.top_p), ("num_predict", r.max_tokens),
                       ("num_ctx", r.context_length), ("seed", r.seed)):
        if value is not None:
            options[key] = value
    body: dict[str, Any] = {
        "model": r.model,
        "messages": [{"role": m.role, "content": m.content} for m in r.messages],
        "stream": True,
    }
    for key, value in r.extra.items():
        if key in CHAT_TOP_LEVEL:
            body[key] = value
        else:
            options[key] = value  # Ollama ignores an option it does not know, with a warning in its log
    if options:
        body["options"] = options
    if (ka := keep_alive_value(r.keep_alive)) is not None:
        body["keep_alive"] = ka
    return body


def usage_from_final(part: Mapping[str, Any]) -> Usage:
    """The final line's counts and nanosecond durations. Go omits zero fields, so a missing one means 0."""

    def number(key: str) -> float:
        value = part.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0

    return Usage(
        prompt_tokens=int(number("prompt_eval_count")),
        completion_tokens=int(number("eval_count")),
        source=TokenSource.OLLAMA_EVAL,
        load_ms=number("load_duration") / 1e6,
        prompt_ms=number("prompt_eval_duration") / 1e6,
        generation_ms=number("eval_duration") / 1e6,
        total_ms=number("total_duration") / 1e6,
    )


def _model_info(raw: Mapping[str, Any]) -> ModelInfo:
    details = d if isinstance(d := raw.get("details"), dict) else {}
    extra = {k: details[k] for k in ("format", "families", "parent_model") if details.get(k)}
    if isinstance(raw.get("capabilities"), list):
        extra["capabilities"] = tuple(raw["capabilities"])
    return ModelInfo(
        name=str(raw.get("model") or raw.get("name") or "?"),
        size=_int(raw.get("size")),
        digest=raw.get("digest") if isinstance(raw.get("digest"), str) else None,
        family=details.get("family") or None,
        quantization=details.get("quantization_level") or None,
        parameter_size=details.get("parameter_size") or None,
        context_length=_int(details.get("context_length")) or None,
        modified_at=_parse_time(raw.get("modified_at")),
        details=extra,
    )


def _loaded_model(raw: Any) -> LoadedModel:
    """One entry of /api/ps (`ProcessModelResponse`). Go omits nothing here but `details`; a field of another type
    is not Ollama's shape (ValueError), as the official client's validation would say."""
    if not isinstance(raw, dict):
        raise ValueError("a loaded model that is not an object")
    details = _field(raw, "details", dict) or {}
    expires = _field(raw, "expires_at", str)
    return LoadedModel(
        name=_field(raw, "name", str) or _field(raw, "model", str) or "?",
        size=_field(raw, "size", int),
        size_vram=_field(raw, "size_vram", int),
        context_length=_field(raw, "context_length", int) or None,
        expires_at=_aware(datetime.fromisoformat(expires)) if expires is not None else None,
        details={"digest": _field(raw, "digest", str), "family": _field(details, "family", str),
                 "parameter_size": _field(details, "parameter_size", str),
                 "quantization": _field(details, "quantization_level", str)},
    )


def _field(obj: Mapping[str, Any], key: str, kind: type) -> Any:
    """obj[key] when it is a `kind`, None when absent or null; ValueError when it is something else."""
    value = obj.get(key)
    if value is None or (isinstance(value, kind) and not isinstance(value, bool)):
        return value
    raise ValueError(f"{key} is a {type(value).__name__}, not a {kind.__name__}")


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return _aware(datetime.fromisoformat(value))
    except ValueError:
        return None
