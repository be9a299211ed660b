"""Contract servers for SGLang, TGI and LM Studio, following shared/reference/engines-api.md §3–§5.

None of these engines can run in CI, so these stand in for them on loopback. Each keeps the quirks a client
must survive:
- SGLang: `/health` 503 (empty) while starting; `--api-key` guards every path but `/health*` and `/metrics`
  with `401 {"error":"Unauthorized"}`; flat `{"object":"error",...}` error bodies; `/get_model_info`,
  `/get_server_info` (with `version`); `/v1/models` with `max_model_len`; chunks carry `"usage": null`.
- TGI: `/health` 503 `{"error":"unhealthy","error_type":"healthcheck"}`; `/info`; `/v1/models` with
  `owned_by` = model id and `created` 0; SSE written as `data:` without a space; `system_fingerprint`
  "<version>-native"; errors `{"error":"...","error_type":"..."}` (a string) and mid-stream
  `{"error":{"message":...,"http_status_code":...}}`; guarded routes answer a bare 401 with an empty body.
- LM Studio: REST v1 `/api/v1/models` (`loaded_instances`), load/unload by `instance_id`, legacy
  `/api/v0/models` (`state`), `/v1/models` with `owned_by:"organization_owner"`, JIT load on first chat.
  Assumptions not in the reference (LM Studio does not document them): the 401 body, the unknown-model error
  body, and the unknown-route answer `404 {"error":"Unexpected endpoint or method. (METHOD /path)"}`.

Every server streams chat with a role-only first chunk, one chunk per word, a finish chunk, a usage chunk
(`choices: []`) when `stream_options.include_usage` is set, then `[DONE]`. `queue(ChatScenario(...))` makes the
next chat misbehave (status before the stream, error or drop after N chunks, end without [DONE]).

Fixtures: `sglang_server`, `tgi_server`, `lmstudio_server` (import `*_server_fixture` to use them; each has
`.url`; knobs are plain attributes: `api_key`, `starting` (SGLang), `unhealthy` (TGI), `rest_v1` (LM Studio)).
Standalone:

    python -m tests.fakes.openai_family sglang --port 30000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from tests.fakes.http_fake import FakeHandler, ThreadedFake, sse_frame

REPLY = "Rayleigh scattering sends short blue wavelengths across the sky."
UNAUTHORIZED = {"error": "Unauthorized"}  # SGLang and vLLM
TGI_UNHEALTHY = {"error": "unhealthy", "error_type": "healthcheck"}


@dataclass(frozen=True)
class ChatScenario:
    """How the next chat misbehaves. Counts are of content chunks."""

    status: int | None = None  # answer this status with `body` instead of streaming
    body: Any = None
    error_after: int | None = None  # send an error event after this many content chunks, then stop
    error: Any = "CUDA out of memory"  # the event's `error` value (string or object), or the message
    drop_after: int | None = None  # close the connection after this many content chunks
    end_without_done: bool = False  # no finish chunk, no usage, no [DONE]
    token_delay_s: float = 0.0


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


def _prompt_tokens(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    return sum(len(str(m.get("content", "")).split()) + 3 for m in messages if isinstance(m, Mapping))


class Reply(Exception):
    """Raised by a route to answer at once: status, JSON body (or bytes), headers."""

    def __init__(self, status: int, body: Any = b"", headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class FakeEngine(ThreadedFake):
    """What the OpenAI-compatible engines share: auth knob, chat streaming, scripted scenarios. Subclasses add
    routes."""

    kind: ClassVar[str] = "openai"
    sse_prefix: ClassVar[bytes] = b"data: "

    def __init__(self, *, api_key: str | None = None, reply: str = REPLY, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(_Handler, name=self.kind, host=host, port=port)
        self.api_key = api_key
        self.reply = reply
        self._queued: deque[ChatScenario] = deque()

    def queue(self, scenario: ChatScenario) -> None:
        with self.lock:
            self._queued.append(scenario)

    def _next_scenario(self) -> ChatScenario:
        with self.lock:
            return self._queued.popleft() if self._queued else ChatScenario()

    # -- to override --------------------------------------------------------------------------------------

    def authorised(self, h: _Handler, path: str) -> None:
        """Raise Reply(401, ...) when the request needs a key it did not bring."""

    def route(self, h: _Handler, method: str, path: str, body: Any) -> None:
        raise Reply(404, {"detail": "Not Found"})

    def served_model(self, requested: str) -> str:
        return requested

    def chunk(self, model: str, delta: Mapping[str, Any], finish: str | None) -> dict[str, Any]:
        return {"id": "chatcmpl-" + uuid.uuid4().hex[:12], "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish}]}

    def midstream_error(self, error: Any) -> dict[str, Any]:
        return {"error": error if not isinstance(error, str) else {"message": error, "type": "InternalServerError",
                                                                   "code": 500}}

    def before_chat(self, model: str, body: Mapping[str, Any]) -> None:
        """Raise Reply to refuse a chat before the stream (unknown model, too long, not ready)."""

    # -- chat ---------------------------------------------------------------------------------------------

    def chat(self, h: _Handler, body: Any) -> None:
        if not isinstance(body, Mapping) or not isinstance(body.get("messages"), list):
            raise Reply(400, {"object": "error", "message": "messages: field required", "type": "BadRequestError",
                              "param": None, "code": 400})
        model = self.served_model(str(body.get("model", "")))
        self.before_chat(model, body)
        sc = self._next_scenario()
        if sc.status is not None:
            raise Reply(sc.status, sc.body if sc.body is not None else b"")
        words = _words(self.reply)
        limit = body.get("max_tokens")
        if isinstance(limit, int) and limit > 0:
            words = words[:limit]
        h.start_stream()
        h.send_event(self.chunk(model, {"role": "assistant", "content": ""}, None))
        for i, word in enumerate(words):
            if sc.error_after is not None and i == sc.error_after:
                h.send_event(self.midstream_error(sc.error))
                return
            if sc.drop_after is not None and i == sc.drop_after:
                h.drop()
                return
            h.pause(sc.token_delay_s)
            h.send_event(self.chunk(model, {"content": word}, None))
        if sc.end_without_done:
            return
        finish = "length" if isinstance(limit, int) and len(words) < len(_words(self.reply)) else "stop"
        h.send_event(self.chunk(model, {}, finish))
        options = body.get("stream_options")
        if isinstance(options, Mapping) and options.get("include_usage"):
            prompt = _prompt_tokens(body["messages"])
            usage_chunk = self.chunk(model, {}, None)
            usage_chunk["choices"] = []
            usage_chunk["usage"] = {"prompt_tokens": prompt, "completion_tokens": len(words),
                                    "total_tokens": prompt + len(words)}
            h.send_event(usage_chunk)
        h.send_event("[DONE]")


class _Handler(FakeHandler):
    protocol_version = "HTTP/1.0"  # one request per connection; a stream ends when the socket closes

    @property
    def fake(self) -> FakeEngine:
        fake = self.server.fake
        assert isinstance(fake, FakeEngine)
        return fake

    def dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        raw = self.read_body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        self.record(method, path, body)
        try:
            self.fake.authorised(self, path)
            self.fake.route(self, method, path, body)
        except Reply as r:
            self.answer(r.status, r.body, r.headers)

    def answer(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str)
                                                     else json.dumps(body).encode())
        ctype = "application/json" if not isinstance(body, bytes | str) else "text/plain; charset=utf-8"
        self.send_body(status, data, {"Content-Type": ctype, **(headers or {}), "Content-Length": str(len(data))})

    def start_stream(self) -> None:
        self.send_head(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})

    def send_event(self, event: Any) -> None:
        payload = event if isinstance(event, str) else json.dumps(event)
        self.write_raw(sse_frame(payload, self.fake.sse_prefix))


# --- SGLang ------------------------------------------------------------------------------------------------------

SGLANG_METRICS = """\
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="Qwen/Qwen2.5-0.5B-Instruct"} 2.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="Qwen/Qwen2.5-0.5B-Instruct"} 1.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="Qwen/Qwen2.5-0.5B-Instruct"} 0.25
# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="Qwen/Qwen2.5-0.5B-Instruct"} 1234.0
# HELP sglang:generation_tokens_total Number of generation tokens processed.
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="Qwen/Qwen2.5-0.5B-Instruct"} 567.0
"""


class FakeSGLang(FakeEngine):
    kind = "sglang"

    def __init__(self, *, model_path: str = "Qwen/Qwen2.5-0.5B-Instruct", served_name: str | None = None,
                 context_length: int = 32768, version: str = "0.5.4", starting: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_path = model_path
        self.served_name = served_name or model_path
        self.context_length = context_length
        self.version = version
        self.starting = starting

    def authorised(self, h: _Handler, path: str) -> None:
        # SGLang's middleware: exact bearer compare on every path but /health* and /metrics.
        if self.api_key and not path.startswith(("/health", "/metrics")) \
                and h.headers.get("authorization") != f"Bearer {self.api_key}":
            raise Reply(401, UNAUTHORIZED)

    def route(self, h: _Handler, method: str, path: str, body: Any) -> None:
        if method == "GET" and path in ("/health", "/health_generate"):
            raise Reply(503 if self.starting else 200, b"")
        if method == "GET" and path == "/get_model_info":
            raise Reply(200, {"model_path": self.model_path, "tokenizer_path": self.model_path,
                              "is_generation": True, "preferred_sampling_params": None,
                              "weight_version": "default"})
        if method == "GET" and path == "/get_server_info":
            raise Reply(200, {"model_path": self.model_path, "served_model_name": self.served_name,
                              "tp_size": 1, "dp_size": 1, "mem_fraction_static": 0.88, "api_key": None,
                              "context_length": None, "scheduler_info": {"max_total_num_tokens": 500000},
                              "internal_states": [{"last_gen_throughput": 42.0}], "version": self.version})
        if method == "GET" and path == "/v1/models":
            raise Reply(200, {"object": "list", "data": [
                {"id": self.served_name, "object": "model", "created": int(time.time()), "owned_by": "sglang",
                 "root": self.served_name, "max_model_len": self.context_length}]})
        if method == "GET" and path == "/metrics":
            raise Reply(200, SGLANG_METRICS, {"Content-Type": "text/plain; version=0.0.4"})
        if method == "POST" and path == "/v1/chat/completions":
            self.chat(h, body)
            return
        raise Reply(404, {"detail": "Not Found"})

    def before_chat(self, model: str, body: Mapping[str, Any]) -> None:
        if self.starting:
            raise Reply(503, {"object": "error", "message": "The server is starting", "type": "ServiceUnavailable",
                              "param": None, "code": 503})
        prompt = _prompt_tokens(body.get("messages"))
        if prompt > self.context_length:
            raise Reply(400, {"object": "error", "type": "BadRequestError", "param": None, "code": 400,
                              "message": f"The input ({prompt} tokens) is longer than the model's context "
                                         f"length ({self.context_length} tokens)."})

    def chunk(self, model: str, delta: Mapping[str, Any], finish: str | None) -> dict[str, Any]:
        out = super().chunk(model, delta, finish)
        out["usage"] = None  # SGLang dumps every field, so each chunk carries usage: null
        out["choices"][0]["matched_stop"] = None
        return out


# --- TGI ---------------------------------------------------------------------------------------------------------

TGI_METRICS = """\
# TYPE tgi_queue_size gauge
tgi_queue_size 3
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 4
# TYPE tgi_request_input_length histogram
tgi_request_input_length_bucket{le="+Inf"} 10
tgi_request_input_length_sum 900
tgi_request_input_length_count 10
# TYPE tgi_request_generated_tokens histogram
tgi_request_generated_tokens_bucket{le="+Inf"} 10
tgi_request_generated_tokens_sum 450
tgi_request_generated_tokens_count 10
"""


class FakeTGI(FakeEngine):
    kind = "tgi"
    sse_prefix = b"data:"  # axum's SSE writer puts no space after the colon

    def __init__(self, *, model_id: str = "HuggingFaceTB/SmolLM2-360M-Instruct", version: str = "3.3.6",
                 max_input_tokens: int = 4095, max_total_tokens: int = 4096, unhealthy: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_id = model_id
        self.version = version
        self.max_input_tokens = max_input_tokens
        self.max_total_tokens = max_total_tokens
        self.unhealthy = unhealthy

    def info(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "model_sha": "a1b2c3d4", "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": 128, "max_best_of": 2, "max_stop_sequences": 4,
                "max_input_tokens": self.max_input_tokens, "max_total_tokens": self.max_total_tokens,
                "validation_workers": 2, "max_client_batch_size": 4, "router": "text-generation-router",
                "version": self.version, "sha": "0123abcd", "docker_label": None}

    def authorised(self, h: _Handler, path: str) -> None:
        guarded = ("/generate", "/generate_stream", "/v1/chat/completions", "/v1/completions", "/invocations",
                   "/tokenize", "/vertex")
        auth = h.headers.get("authorization") or ""
        if self.api_key and path in guarded and auth.lower() != f"bearer {self.api_key}".lower():
            raise Reply(401, b"")  # TGI: a bare 401, empty body

    def route(self, h: _Handler, method: str, path: str, body: Any) -> None:
        if method == "GET" and path == "/health":
            raise Reply(503, TGI_UNHEALTHY) if self.unhealthy else Reply(200, b"")
        if method == "GET" and path == "/info":
            raise Reply(200, self.info())
        if method == "GET" and path == "/v1/models":
            raise Reply(200, {"object": "list", "data": [
                {"id": self.model_id, "object": "model", "created": 0, "owned_by": self.model_id}]})
        if method == "GET" and path == "/metrics":
            raise Reply(200, TGI_METRICS, {"Content-Type": "text/plain; version=0.0.4"})
        if method == "POST" and path == "/v1/chat/completions":
            self.chat(h, body)
            return
        raise Reply(404, b"")

    def served_model(self, requested: str) -> str:
        return self.model_id  # TGI ignores the requested name and answers with its own model

    def before_chat(self, model: str, body: Mapping[str, Any]) -> None:
        prompt = _prompt_tokens(body.get("messages"))
        new = body.get("max_tokens") if isinstance(body.get("max_tokens"), int) else 100
        if prompt + new > self.max_total_tokens:
            raise Reply(422, {"error": f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
                                       f"{self.max_total_tokens}. Given: {prompt} `inputs` tokens and {new} "
                                       f"`max_new_tokens`", "error_type": "validation"})

    def chunk(self, model: str, delta: Mapping[str, Any], finish: str | None) -> dict[str, Any]:
        out = super().chunk(model, delta, finish)
        out["system_fingerprint"] = f"{self.version}-native"
        return out

    def midstream_error(self, error: Any) -> dict[str, Any]:
        # The chat route sends an object with http_status_code; a string `error` with `error_type` is what
        # the native routes (and older chat routes) send, so a scenario may ask for that shape.
        if isinstance(error, str):
            return {"error": error, "error_type": "generation"}
        return {"error": error}


# --- LM Studio ---------------------------------------------------------------------------------------------------

@dataclass
class LMModel:
    key: str
    size_bytes: int = 4_680_000_000
    architecture: str = "qwen2"
    quant: str = "Q4_K_M"
    max_context_length: int = 32768
    params: str = "7B"
    publisher: str = "lmstudio-community"
    load_error: str | None = None
    instances: list[dict[str, Any]] = field(default_factory=list)


def lmstudio_models() -> list[LMModel]:
    return [
        LMModel("qwen2.5-7b-instruct"),
        LMModel("llama-3.2-1b-instruct", size_bytes=1_320_000_000, architecture="llama", quant="Q8_0",
                max_context_length=131072, params="1B"),
        LMModel("broken-model", load_error="Failed to load model: not enough memory"),
    ]


class FakeLMStudio(FakeEngine):
    kind = "lmstudio"

    def __init__(self, *, models: Sequence[LMModel] | None = None, rest_v1: bool = True,
                 default_context: int = 4096, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.models = {m.key: m for m in (lmstudio_models() if models is None else models)}
        self.rest_v1 = rest_v1
        self.default_context = default_context

    def loaded_keys(self) -> list[str]:
        with self.lock:
            return sorted(k for k, m in self.models.items() if m.instances)

    def _load(self, key: str, context: int | None = None) -> dict[str, Any]:
        with self.lock:
            m = self.models.get(key)
            if m is None:
                raise Reply(404, {"error": {"message": f'Model "{key}" not found', "type": "invalid_request_error",
                                            "code": "model_not_found"}})
            if m.load_error:
                raise Reply(500, {"error": {"message": m.load_error, "type": "server_error"}})
            instance_id = key if not m.instances else f"{key}:{len(m.instances) + 1}"
            m.instances.append({"id": instance_id, "config": {
                "context_length": context or self.default_context, "eval_batch_size": 512, "parallel": 4,
                "flash_attention": False, "offload_kv_cache_to_gpu": True}})
            return {"type": "llm", "instance_id": instance_id, "load_time_seconds": 0.05, "status": "loaded"}

    def authorised(self, h: _Handler, path: str) -> None:
        if self.api_key and h.headers.get("authorization") != f"Bearer {self.api_key}":
            raise Reply(401, {"error": {"message": "Invalid or missing API token", "type": "invalid_request_error",
                                        "code": "invalid_api_key"}})

    def route(self, h: _Handler, method: str, path: str, body: Any) -> None:
        with self.lock:
            models = list(self.models.values())
        if method == "GET" and path == "/api/v1/models" and self.rest_v1:
            raise Reply(200, {"models": [{
                "type": "llm", "publisher": m.publisher, "key": m.key, "display_name": m.key.title(),
                "architecture": m.architecture, "quantization": {"name": m.quant, "bits_per_weight": 4},
                "size_bytes": m.size_bytes, "params_string": m.params, "loaded_instances": list(m.instances),
                "max_context_length": m.max_context_length, "format": "gguf",
                "capabilities": {"vision": False, "trained_for_tool_use": True}} for m in models]})
        if method == "GET" and path == "/api/v0/models":
            raise Reply(200, {"object": "list", "data": [{
                "id": m.key, "object": "model", "type": "llm", "publisher": m.publisher, "arch": m.architecture,
                "compatibility_type": "gguf", "quantization": m.quant,
                "state": "loaded" if m.instances else "not-loaded",
                "max_context_length": m.max_context_length} for m in models]})
        if method == "GET" and path == "/v1/models":
            raise Reply(200, {"object": "list", "data": [
                {"id": m.key, "object": "model", "owned_by": "organization_owner"} for m in models]})
        if method == "POST" and path == "/api/v1/models/load" and self.rest_v1:
            key = body.get("model") if isinstance(body, Mapping) else None
            raise Reply(200, self._load(str(key), body.get("context_length")))
        if method == "POST" and path == "/api/v1/models/unload" and self.rest_v1:
            instance_id = body.get("instance_id") if isinstance(body, Mapping) else None
            with self.lock:
                for m in self.models.values():
                    if any(i["id"] == instance_id for i in m.instances):
                        m.instances = [i for i in m.instances if i["id"] != instance_id]
                        raise Reply(200, {"instance_id": instance_id})
            raise Reply(404, {"error": {"message": f"No loaded model instance with id {instance_id!r}",
                                        "type": "invalid_request_error"}})
        if method == "POST" and path == "/v1/chat/completions":
            self.chat(h, body)
            return
        raise Reply(404, {"error": f"Unexpected endpoint or method. ({method} {path})"})

    def before_chat(self, model: str, body: Mapping[str, Any]) -> None:
        with self.lock:
            m = self.models.get(model)
            if m is not None and not m.instances:
                self._load(model)  # JIT: the first request loads the model
        if m is None:
            raise Reply(404, {"error": {"message": f'Model "{model}" not found', "type": "invalid_request_error",
                                        "code": "model_not_found"}})


# --- fixtures and standalone -------------------------------------------------------------------------------------

@contextlib.contextmanager
def running(fake: FakeEngine) -> Iterator[FakeEngine]:
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(name="sglang_server")
def sglang_server_fixture() -> Iterator[FakeSGLang]:
    with running(FakeSGLang()) as fake:
        assert isinstance(fake, FakeSGLang)
        yield fake


@pytest.fixture(name="tgi_server")
def tgi_server_fixture() -> Iterator[FakeTGI]:
    with running(FakeTGI()) as fake:
        assert isinstance(fake, FakeTGI)
        yield fake


@pytest.fixture(name="lmstudio_server")
def lmstudio_server_fixture() -> Iterator[FakeLMStudio]:
    with running(FakeLMStudio()) as fake:
        assert isinstance(fake, FakeLMStudio)
        yield fake


FAKES: dict[str, type[FakeEngine]] = {"sglang": FakeSGLang, "tgi": FakeTGI, "lmstudio": FakeLMStudio}
DEFAULT_PORTS = {"sglang": 30000, "tgi": 3000, "lmstudio": 1234}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run an SGLang, TGI or LM Studio contract server.")
    parser.add_argument("kind", choices=sorted(FAKES))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--api-key", help="require `Authorization: Bearer KEY` as the engine would")
    args = parser.parse_args(argv)
    fake = FAKES[args.kind](api_key=args.api_key, host=args.host, port=args.port or DEFAULT_PORTS[args.kind])
    print(f"{args.kind} contract server on {fake.url}", flush=True)
    fake.serve_until_interrupted()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
