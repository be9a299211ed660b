"""A contract server that answers like Ollama, following shared/reference/ollama-api.md to the byte where it says.

No Ollama binary can run in CI, so this stands in for one: the native API (`/`, `/api/version`, `/api/tags`,
`/api/ps`, `/api/show`, `/api/generate`, `/api/chat`, `/api/pull`, `/api/delete`) and the OpenAI-compatible
subset (`/v1/models`, `/v1/chat/completions`). It keeps the quirks a client must survive: NDJSON with
`application/x-ndjson`, durations in nanoseconds and omitted when zero (Go `omitempty`), `done_reason` "load" and
"unload", `{"error": ...}` lines after a 200, the 503 busy body with its two spaces, 404 bodies with single quotes,
gin's plain-text 404/405, `/api/ps` sorted by `expires_at` descending, `data: null` from `/v1/models` when no
model exists, Go's HTML-escaping JSON encoder.

It is scriptable for tests: a catalogue of `FakeModel`s (one may fail to load), a registry of pullable models,
and `Scenario`s that change how the next replies behave (busy, error after N chunks, garbage line, dropped
connection, missing stats, slow tokens, hostile text), and it can stand behind a proxy that wants a token
(`require_token`) or one that echoes the Authorization header in every error body (`echo_auth=STATUS`). A scenario
may be queued for the next streaming request (`fake.queue(...)`) or attached to a model (`FakeModel.scenario`), so
the standalone server can demo them too:

    python -m tests.fakes.ollama_server --port 11434

Assumption not covered by the reference: an error after a `/v1/chat/completions` stream started is written as an
SSE event carrying an OpenAI-style error object.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fakes.http_fake import FakeHandler, Stopped, ThreadedFake, sse_frame

BUSY_BODY = {"error": "server busy, please try again.  maximum pending requests exceeded"}
MIDSTREAM_ERROR = "an error was encountered while running the model"
GIN_404 = "404 page not found"
GIN_405 = "405 method not allowed"
DEFAULT_NUM_CTX = 4096
# Go's time.Duration tops out at ~292 years; a negative keep_alive means "forever" and shows as that.
FOREVER = timedelta(microseconds=(2**63 - 1) // 1000)

HOSTILE_REPLY = (
    "Plain start \x1b[2J\x1b[31mred\x1b[0m \x1b]52;c;ZXZpbA==\x07 bell\x07 "
    "\x1b]8;;https://evil.invalid\x1b\\link\x1b]8;;\x1b\\ "
    "[bold]bold[/] [link=https://evil.invalid]click[/link] [/] \x9b31m c1 \x08\x08 end."
)
HOSTILE_THINKING = "thinking \x1b]0;pwned title\x07 [red]red[/red]"


@dataclass(frozen=True)
class Scenario:
    """How one reply misbehaves (or behaves). Counts are of streamed chunks, thinking and content alike."""

    reply: str | None = None  # replaces the model's reply text
    thinking: str | None = None  # replaces the model's thinking text (thinking-capable models only)
    token_delay_s: float = 0.0  # sleep between two chunks
    first_token_delay_s: float = 0.0  # sleep before the first chunk (prompt processing)
    status: int | None = None  # answer this status with `body` instead of streaming
    body: Mapping[str, Any] | str | None = None
    error_after: int | None = None  # write {"error": error_message} after this many chunks, then end
    error_message: str = MIDSTREAM_ERROR
    garbage_after: int | None = None  # write one line that is not JSON after this many chunks, then go on
    garbage: bytes = b"<html><body>502 Bad Gateway</body></html>"
    drop_after: int | None = None  # close the socket after this many chunks (no final chunk, no chunk trailer)
    end_without_done: bool = False  # end the stream cleanly but never send the done line
    omit_stats: bool | tuple[str, ...] = ()  # True: no stats at all; or the names of the stats to leave out
    done_reason: str | None = None  # force the final done_reason


BUSY = Scenario(status=503, body=BUSY_BODY)
HOSTILE = Scenario(reply=HOSTILE_REPLY, thinking=HOSTILE_THINKING)
STATS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration")


def slow(token_delay_s: float, first_token_delay_s: float = 0.0) -> Scenario:
    return Scenario(token_delay_s=token_delay_s, first_token_delay_s=first_token_delay_s)


@dataclass
class FakeModel:
    name: str  # full name with tag, e.g. "llama3.2:1b"
    family: str = "llama"
    parameter_size: str = "1.2B"
    quantization_level: str = "Q8_0"
    size: int = 1_321_098_329  # bytes on disk
    context_length: int | None = 131072  # native (trained) context; None: an older server that omits it
    capabilities: tuple[str, ...] = ("completion", "tools")
    reply: str = "The sky looks blue because air scatters short wavelengths more than long ones."
    thinking: str = ""
    tool_calls: tuple[Mapping[str, Any], ...] = ()  # emitted when the request offers tools
    load_error: str | None = None  # loading fails with a 500 carrying this text
    load_delay_s: float = 0.0
    vram_fraction: float = 1.0  # share of the runner in GPU memory; 0 = CPU only
    template: str = "{{ .System }}\n{{ .Prompt }}"
    parameters: str = 'stop                           "<|eot_id|>"\ntemperature                    0.6'
    license: str = "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT"
    modified_at: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(days=3))
    scenario: Scenario | None = None  # how every reply of this model behaves unless a queued scenario says else

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    def details(self, *, with_context: bool) -> dict[str, Any]:
        d: dict[str, Any] = {
            "parent_model": "", "format": "gguf", "family": self.family, "families": [self.family],
            "parameter_size": self.parameter_size, "quantization_level": self.quantization_level,
        }
        if with_context and self.context_length:
            d["context_length"] = self.context_length
        return d


def demo_models() -> list[FakeModel]:
    """The default catalogue: ordinary models plus one per scenario, so the standalone server can demo them."""
    return [
        FakeModel("llama3.2:1b"),
        FakeModel("qwen3:4b", family="qwen3", parameter_size="4.0B", quantization_level="Q4_K_M",
                  size=2_497_293_931, context_length=40960, capabilities=("completion", "tools", "thinking"),
                  thinking="The user asks about the sky. Rayleigh scattering explains it.",
                  tool_calls=({"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}},)),
        FakeModel("gemma3:4b", family="gemma3", parameter_size="4.3B", quantization_level="Q4_K_M",
                  size=3_338_801_804, capabilities=("completion", "vision"), vram_fraction=0.6),
        FakeModel("hostile:latest", scenario=HOSTILE),
        FakeModel("slowpoke:latest", scenario=slow(0.2, 0.5)),
        FakeModel("broken:latest", load_error="llama runner process has terminated: error loading model: "
                                              "unable to allocate CUDA0 buffer"),
    ]


def demo_registry() -> list[FakeModel]:
    """Models `/api/pull` can fetch."""
    return [FakeModel("tinyllama:latest", parameter_size="1.1B", quantization_level="Q4_0", size=637_700_138),
            FakeModel("llama3.2:1b")]


@dataclass
class Runner:
    """A loaded model, as /api/ps reports it."""

    model: FakeModel
    num_ctx: int
    expires_at: datetime
    gone_at: datetime  # when it leaves /api/ps (keep-alive expiry, or unload + unload_delay_s)
    keep_alive: timedelta
    sem: threading.Semaphore | None = None


# --- Go-shaped encoding ------------------------------------------------------------------------------------------

def go_json(obj: Any) -> bytes:
    """json.Marshal's output: compact, UTF-8, with <, >, & and U+2028/9 escaped (Go's HTML-safe default)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for raw, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                     ("\u2029", "\\u2029")):
        text = text.replace(raw, esc)
    return text.encode()


def go_time(dt: datetime) -> str:
    """RFC 3339 with trimmed fractional seconds and `Z` for UTC, as Go's time.Time marshals."""
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{dt.microsecond:06d}".rstrip("0")
    off = dt.utcoffset()
    if not off:
        zone = "Z"
    else:
        minutes = int(off.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        zone = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return f"{base}{'.' + frac if frac else ''}{zone}"


_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")


def parse_keep_alive(value: Any) -> timedelta:
    """api.Duration.UnmarshalJSON: numbers are seconds, strings are Go durations, negatives mean forever."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"Unsupported type: '{type(value).__name__}'")
    if isinstance(value, int | float):
        return FOREVER if value < 0 else timedelta(seconds=value)
    text = value.strip()
    if text in ("0", "+0", "-0"):
        return timedelta(0)
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body and body.replace(".", "", 1).isdigit():
        raise ValueError(f'time: missing unit in duration "{value}"')
    pos, seconds = 0, 0.0
    for m in _GO_DURATION.finditer(body):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    if not body or pos != len(body):
        raise ValueError(f'time: invalid duration "{value}"')
    return FOREVER if sign < 0 else timedelta(seconds=seconds)


def _tokens(text: str) -> list[str]:
    """Split a reply into chunk-sized pieces the way a tokenizer roughly would (word plus its trailing space)."""
    return re.findall(r"\S+\s*|\s+", text)


# --- the fake -----------------------------------------------------------------------------------------------------

class FakeOllama(ThreadedFake):
    """State and knobs of one contract server. Thread-safe: handlers run on the server's threads."""

    def __init__(
        self,
        models: Sequence[FakeModel] | None = None,
        *,
        registry: Sequence[FakeModel] | None = None,
        version: str = "0.12.6",
        require_token: str | None = None,
        echo_auth: int | None = None,
        num_parallel: int | None = None,
        default_keep_alive: timedelta = timedelta(minutes=5),
        unload_delay_s: float = 0.0,
        pull_step_delay_s: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(_Handler, name="ollama", host=host, port=port)
        self.models: dict[str, FakeModel] = {m.name: m for m in (demo_models() if models is None else models)}
        self.registry: dict[str, FakeModel] = {m.name: m for m in (demo_registry() if registry is None else registry)}
        self.version = version
        self.require_token = require_token  # a reverse proxy in front that wants a bearer token
        # A misbehaving proxy in front: every request answered with this status and a body that echoes the request's
        # Authorization header, the way some gateways "help" debugging (the key must never reach a screen or a file).
        self.echo_auth = echo_auth
        self.num_parallel = num_parallel  # None: unbounded; else requests per model wait for a slot
        self.default_keep_alive = default_keep_alive
        self.unload_delay_s = unload_delay_s  # how long an unloaded model still shows in /api/ps
        self.pull_step_delay_s = pull_step_delay_s
        self.runners: dict[str, Runner] = {}
        self.active = 0  # generations running now
        self.max_active = 0  # most generations that ever ran at once
        self._queued: deque[Scenario] = deque()

    # knobs
    def queue(self, scenario: Scenario, times: int = 1) -> None:
        """The next `times` streaming requests (generate, chat, /v1 chat) follow `scenario`."""
        with self.lock:
            self._queued.extend([scenario] * times)

    def add_model(self, model: FakeModel) -> None:
        with self.lock:
            self.models[model.name] = model

    def resolve(self, name: str) -> FakeModel | None:
        with self.lock:
            return self.models.get(name) or self.models.get(f"{name}:latest")

    def loaded_names(self) -> list[str]:
        with self.lock:
            self._prune()
            return sorted(self.runners)

    def _next_scenario(self, model: FakeModel) -> Scenario:
        with self.lock:
            if self._queued:
                return self._queued.popleft()
        return model.scenario or Scenario()

    # the scheduler, reduced to what a client can observe
    def _prune(self) -> None:
        now = datetime.now(UTC)
        for name in [n for n, r in self.runners.items() if r.gone_at <= now]:
            del self.runners[name]

    def load(self, model: FakeModel, keep_alive: timedelta | None, num_ctx: int | None) -> float:
        """Make `model` resident. Returns the seconds the load took; raises RuntimeError(load_error)."""
        t0 = time.perf_counter()
        with self.lock:
            self._prune()
            runner = self.runners.get(model.name)
            if runner and num_ctx and num_ctx != runner.num_ctx:
                del self.runners[model.name]  # a different num_ctx forces a reload
                runner = None
        if runner is None:
            if model.load_delay_s:
                self.stopping.wait(model.load_delay_s)
            if model.load_error:
                raise RuntimeError(model.load_error)
        with self.lock:
            ka = self.default_keep_alive if keep_alive is None else keep_alive
            runner = self.runners.get(model.name)
            if runner is None:
                sem = threading.Semaphore(self.num_parallel) if self.num_parallel else None
                runner = Runner(model, num_ctx or DEFAULT_NUM_CTX, datetime.now(UTC), datetime.now(UTC), ka, sem)
                self.runners[model.name] = runner
            runner.keep_alive = ka
            self._touch(runner)
        return time.perf_counter() - t0

    def _touch(self, runner: Runner) -> None:
        now = datetime.now(UTC)
        runner.expires_at = now + runner.keep_alive
        runner.gone_at = runner.expires_at

    def unload(self, model: FakeModel) -> None:
        with self.lock:
            runner = self.runners.get(model.name)
            if runner is None:
                return
            now = datetime.now(UTC)
            runner.expires_at = now  # in the past while stopping: the CLI shows "Stopping..."
            runner.gone_at = now + timedelta(seconds=self.unload_delay_s)
            self._prune()

    def ps(self) -> list[dict[str, Any]]:
        with self.lock:
            self._prune()
            runners = sorted(self.runners.values(), key=lambda r: r.expires_at, reverse=True)
            out = []
            for r in runners:
                m = r.model
                size = m.size + r.num_ctx * 32_768  # weights plus a KV cache that grows with num_ctx
                details = m.details(with_context=False)
                details["parent_model"] = ""
                out.append({
                    "name": m.name, "model": m.name, "size": size, "digest": m.digest, "details": details,
                    "expires_at": go_time(r.expires_at.astimezone()), "size_vram": int(size * m.vram_fraction),
                    "context_length": r.num_ctx,
                })
            return out


class _Handler(FakeHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Go's net/http sets TCP_NODELAY; without it small NDJSON chunks can sit ~40 ms in Nagle's buffer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def fake(self) -> FakeOllama:
        fake = self.server.fake
        assert isinstance(fake, FakeOllama)
        return fake

    def do_HEAD(self) -> None:
        self._guarded("HEAD")

    def do_PUT(self) -> None:
        self._guarded("PUT")

    def do_PATCH(self) -> None:
        self._guarded("PATCH")

    # --- plumbing -----------------------------------------------------------------------------------------------

    def _routes(self) -> dict[str, dict[str, Any]]:
        return {
            "/": {"GET": self._root, "HEAD": self._root},
            "/api/version": {"GET": self._version, "HEAD": self._version},
            "/api/tags": {"GET": self._tags, "HEAD": self._tags},
            "/api/ps": {"GET": self._ps},
            "/api/show": {"POST": self._show},
            "/api/generate": {"POST": self._generate},
            "/api/chat": {"POST": self._chat},
            "/api/pull": {"POST": self._pull},
            "/api/delete": {"DELETE": self._delete},
            "/v1/models": {"GET": self._v1_models},
            "/v1/chat/completions": {"POST": self._v1_chat},
        }

    def dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        raw = self.read_body()
        body: Any = None
        if raw:
            with contextlib.suppress(ValueError):
                body = json.loads(raw)
        self.record(method, path, body)
        if self.fake.echo_auth is not None:
            auth = self.headers.get("Authorization") or "(none)"
            self._send_json(self.fake.echo_auth, {"error": f"upstream refused {method} {path}; request headers: "
                                                           f"Authorization: {auth}"})
            return
        token = self.fake.require_token
        if token and self.headers.get("Authorization") != f"Bearer {token}":
            self._send_text(401, "401 Unauthorized")
            return
        routes = self._routes()
        if path.startswith("/v1/models/") and method == "GET":
            handler: Any = lambda _raw: self._v1_model(path.removeprefix("/v1/models/"))  # noqa: E731
        elif path not in routes:
            self._send_text(404, GIN_404)
            return
        elif method not in routes[path]:
            self._send_text(405, GIN_405)
            return
        else:
            handler = routes[path][method]
        handler(raw)

    def _json_body(self, raw: bytes) -> dict[str, Any] | None:
        """Decode a POST body like the Go handlers do; answer the 400 and return None when it is unusable."""
        if not raw:
            self._send_json(400, {"error": "missing request body"})
            return None
        try:
            body = json.loads(raw)
        except ValueError as exc:
            self._send_json(400, {"error": f"invalid character in request body: {exc.msg}"})
            return None
        if not isinstance(body, dict):
            self._send_json(400, {"error": "json: cannot unmarshal into Go value of type api.Request"})
            return None
        for key in ("model", "name", "prompt"):
            if key in body and not isinstance(body[key], str):
                kind = "number" if isinstance(body[key], int | float) else type(body[key]).__name__
                self._send_json(400, {"error": f"json: cannot unmarshal {kind} into Go struct field .{key} "
                                               "of type string"})
                return None
        return body

    def _send(self, status: int, body: bytes, content_type: str | None) -> None:
        headers = {"Content-Type": content_type} if content_type else {}
        self.send_body(status, body, {**headers, "Content-Length": str(len(body)), "Date": self.date_time_string()})

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, go_json(obj), "application/json; charset=utf-8")

    def _send_text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def send_response(self, code: int, message: str | None = None) -> None:
        # BaseHTTPRequestHandler adds a Server header Go does not send; keep the head minimal.
        self.log_request(code)
        self.send_response_only(code, message)

    def _start_stream(self, content_type: str) -> None:
        self.send_head(200, {"Content-Type": content_type, "Transfer-Encoding": "chunked",
                             "Date": self.date_time_string()})

    def _line(self, obj: Any) -> None:
        self.write_chunk(go_json(obj) + b"\n")

    # --- health -------------------------------------------------------------------------------------------------

    def _root(self, _raw: bytes) -> None:
        self._send_text(200, "Ollama is running")

    def _version(self, _raw: bytes) -> None:
        self._send_json(200, {"version": self.fake.version})

    # --- catalogue ----------------------------------------------------------------------------------------------

    def _tags(self, _raw: bytes) -> None:
        with self.fake.lock:
            models = sorted(self.fake.models.values(), key=lambda m: m.modified_at, reverse=True)
            out = []
            for m in models:
                entry: dict[str, Any] = {
                    "name": m.name, "model": m.name, "modified_at": go_time(m.modified_at.astimezone()),
                    "size": m.size, "digest": m.digest, "details": m.details(with_context=True),
                }
                if m.context_length:  # a newer server; older ones send neither field
                    entry["capabilities"] = list(m.capabilities)
                out.append(entry)
        self._send_json(200, {"models": out})

    def _ps(self, _raw: bytes) -> None:
        self._send_json(200, {"models": self.fake.ps()})

    def _show(self, raw: bytes) -> None:
        found = self._model(raw, alias=True, required=True)
        if found is None:
            return
        *_, m = found
        info: dict[str, Any] = {
            "general.architecture": m.family, "general.file_type": 7, "general.parameter_count": 1_235_814_432,
            "general.quantization_version": 2, f"{m.family}.embedding_length": 2048,
            # Llama 3.2 1B's shape, as Ollama's model_info gives it (the GGUF keys): what a fit prediction reads
            f"{m.family}.block_count": 16, f"{m.family}.attention.head_count": 32,
            f"{m.family}.attention.head_count_kv": 8, f"{m.family}.vocab_size": 128256,
            "tokenizer.ggml.tokens": None,
        }
        if m.context_length:
            info[f"{m.family}.context_length"] = m.context_length
        self._send_json(200, {
            "license": m.license, "modelfile": f"# Modelfile generated by \"ollama show\"\nFROM {m.name}\n",
            "parameters": m.parameters, "template": m.template, "details": m.details(with_context=False),
            "model_info": info, "capabilities": list(m.capabilities), "modified_at": go_time(m.modified_at),
        })

    def _delete(self, raw: bytes) -> None:
        found = self._model(raw, alias=True)
        if found is None:
            return
        *_, m = found
        with self.fake.lock:
            del self.fake.models[m.name]  # a loaded runner stays loaded: delete never touches the scheduler
        self._send(200, b"", None)

    def _pull(self, raw: bytes) -> None:
        body = self._json_body(raw)
        if body is None:
            return
        name = body.get("model") or body.get("name") or ""
        stream = body.get("stream", True) is not False
        wanted = self.fake.registry.get(name) or self.fake.registry.get(f"{name}:latest")
        if not stream:
            if wanted is None:
                self._send_json(500, {"error": "pull model manifest: file does not exist"})
                return
            self._install(wanted)
            self._send_json(200, {"status": "success"})
            return
        self._start_stream("application/x-ndjson")
        self._line({"status": "pulling manifest"})
        if wanted is None:
            self._line({"error": "pull model manifest: file does not exist"})
            self.end_chunks()
            return
        have = self.fake.resolve(wanted.name) is not None
        layers = [("sha256:" + wanted.digest, wanted.size - 1_580),
                  ("sha256:" + hashlib.sha256(wanted.template.encode()).hexdigest(), 1_484),
                  ("sha256:" + hashlib.sha256(wanted.parameters.encode()).hexdigest(), 96)]
        for digest, total in layers:
            status = "pulling " + digest[7:19]
            if have:
                self._line({"status": status, "digest": digest, "total": total, "completed": total})
                continue
            self._line({"status": status, "digest": digest, "total": total})  # nothing completed yet
            steps = 4
            for i in range(1, steps + 1):
                self.pause(self.fake.pull_step_delay_s)
                self._line({"status": status, "digest": digest, "total": total, "completed": total * i // steps})
        for status in ("verifying sha256 digest", "writing manifest"):
            self._line({"status": status})
        self._install(wanted)
        self._line({"status": "success"})
        self.end_chunks()

    def _install(self, wanted: FakeModel) -> None:
        with self.fake.lock:
            self.fake.models[wanted.name] = FakeModel(**{**wanted.__dict__, "modified_at": datetime.now(UTC)})

    # --- generation ---------------------------------------------------------------------------------------------

    def _keep_alive(self, body: Mapping[str, Any]) -> tuple[bool, timedelta | None]:
        """(ok, keep_alive); on a bad value the 400 is already sent."""
        if "keep_alive" not in body or body["keep_alive"] is None:
            return True, None
        try:
            return True, parse_keep_alive(body["keep_alive"])
        except ValueError as exc:
            self._send_json(400, {"error": str(exc)})
            return False, None

    def _model(self, raw: bytes, *, alias: bool = False,
               required: bool = False) -> tuple[dict[str, Any], str, FakeModel] | None:
        """The request body and the model it names (`name` is an older alias of `model` where `alias`); None once
        the 400 (a bad body, or no name where `required`) or the 404 is sent."""
        body = self._json_body(raw)
        if body is None:
            return None
        name = body.get("model") or (body.get("name") if alias else None) or ""
        if required and not name:
            self._send_json(400, {"error": "model is required"})
            return None
        m = self.fake.resolve(name)
        if m is None:
            self._send_json(404, {"error": f"model '{name}' not found"})
            return None
        return body, name, m

    def _fault(self, sc: Scenario, i: int, send_error: Callable[[], None], garbage: bytes) -> bool:
        """The scenario's fault before piece `i`, in the stream's own framing; True when the stream ends there."""
        if sc.error_after == i:
            send_error()
            self.end_chunks()
            return True
        if sc.drop_after == i:
            self.drop()
            return True
        if sc.garbage_after == i:
            self.write_chunk(garbage)
        return False

    def _generation(self, raw: bytes, *, required: bool
                    ) -> tuple[dict[str, Any], str, FakeModel, timedelta | None] | None:
        """/api/generate and /api/chat: the body, the model and its keep-alive; None once a 400 or 404 is sent."""
        found = self._model(raw, required=required)
        if found is None:
            return None
        body, name, m = found
        ok, ka = self._keep_alive(body)
        return (body, name, m, ka) if ok else None

    def _generate(self, raw: bytes) -> None:
        found = self._generation(raw, required=False)
        if found is None:
            return
        body, name, m, ka = found
        prompt = body.get("prompt") or ""
        if not prompt:
            self._load_or_unload(m, name, ka, body, chat=False)
            return
        self._respond(m, name, ka, body, prompt_words=len(prompt.split()), chat=False)

    def _chat(self, raw: bytes) -> None:
        found = self._generation(raw, required=True)
        if found is None:
            return
        body, name, m, ka = found
        messages = body.get("messages") or []
        if not isinstance(messages, list) or not all(isinstance(x, dict) for x in messages):
            self._send_json(400, {"error": "json: cannot unmarshal into Go struct field ChatRequest.messages"})
            return
        if not messages:
            self._load_or_unload(m, name, ka, body, chat=True)
            return
        if body.get("tools") and "tools" not in m.capabilities:
            self._send_json(400, {"error": f"{name} does not support tools"})
            return
        think = body.get("think")
        if think not in (None, False) and "thinking" not in m.capabilities:
            self._send_json(400, {"error": f'"{name}" does not support thinking'})
            return
        words = sum(len(str(x.get("content") or "").split()) for x in messages)
        self._respond(m, name, ka, body, prompt_words=words, chat=True)

    def _empty_reply(self, name: str, chat: bool, done_reason: str) -> dict[str, Any]:
        out: dict[str, Any] = {"model": name, "created_at": go_time(datetime.now(UTC))}
        if chat:
            out["message"] = {"role": "assistant", "content": ""}
        else:
            out["response"] = ""
        out["done"] = True
        out["done_reason"] = done_reason
        return out

    def _load_or_unload(self, m: FakeModel, name: str, ka: timedelta | None, body: Mapping[str, Any],
                        *, chat: bool) -> None:
        """Empty prompt/messages: keep_alive 0 unloads at once; anything else loads, then answers one object."""
        if ka is not None and ka == timedelta(0):
            self.fake.unload(m)
            self._send_json(200, self._empty_reply(name, chat, "unload"))
            return
        options = body.get("options") or {}
        try:
            self.fake.load(m, ka, options.get("num_ctx"))
        except RuntimeError as exc:
            self._send_json(500, {"error": str(exc)})
            return
        self._send_json(200, self._empty_reply(name, chat, "load"))

    def _pieces(self, m: FakeModel, sc: Scenario, body: Mapping[str, Any], *, chat: bool
                ) -> tuple[list[tuple[str, Any]], str]:
        """What the reply streams, in order: thinking, content, tool calls. Returns (pieces, done_reason)."""
        think = body.get("think")
        thinks = "thinking" in m.capabilities and think is not False
        thinking = sc.thinking if sc.thinking is not None else m.thinking
        reply = sc.reply if sc.reply is not None else m.reply
        pieces: list[tuple[str, Any]] = [("thinking", t) for t in _tokens(thinking)] if thinks else []
        pieces += [("content", t) for t in _tokens(reply)]
        limit = (body.get("options") or {}).get("num_predict")  # counts thinking tokens too
        done_reason = "stop"
        if isinstance(limit, int) and 0 <= limit < len(pieces):
            pieces, done_reason = pieces[:limit], "length"
        if chat and body.get("tools") and m.tool_calls:
            calls = [{"id": f"call_{i:08x}", "function": {"index": i, **c["function"]}}
                     for i, c in enumerate(m.tool_calls)]
            pieces.append(("tool_calls", calls))
        return pieces, sc.done_reason or done_reason

    def _respond(self, m: FakeModel, name: str, ka: timedelta | None, body: Mapping[str, Any], *,
                 prompt_words: int, chat: bool) -> None:
        sc = self.fake._next_scenario(m)
        if sc.status is not None:
            self._send_scenario_status(sc)
            return
        t_start = time.perf_counter_ns()
        options = body.get("options") or {}
        try:
            load_s = self.fake.load(m, ka, options.get("num_ctx"))
        except RuntimeError as exc:
            self._send_json(500, {"error": str(exc)})
            return
        pieces, done_reason = self._pieces(m, sc, body, chat=chat)
        stream = body.get("stream", True) is not False
        with self._slot(m):
            if stream:
                self._stream_native(name, sc, pieces, done_reason, chat=chat, t_start=t_start, load_s=load_s,
                                    prompt_words=prompt_words)
            else:
                self._whole_native(name, sc, pieces, done_reason, chat=chat, t_start=t_start, load_s=load_s,
                                   prompt_words=prompt_words)

    @contextlib.contextmanager
    def _slot(self, m: FakeModel) -> Iterator[None]:
        """OLLAMA_NUM_PARALLEL: requests beyond the runner's slots wait (unbounded, as for a loaded model)."""
        with self.fake.lock:
            runner = self.fake.runners.get(m.name)
        sem = runner.sem if runner else None
        if sem:
            while not sem.acquire(timeout=0.05):
                if self.fake.stopping.is_set():
                    raise Stopped
        with self.fake.lock:
            self.fake.active += 1
            self.fake.max_active = max(self.fake.max_active, self.fake.active)
        try:
            yield
        finally:
            with self.fake.lock:
                self.fake.active -= 1
                if runner is not None and runner.model.name in self.fake.runners:
                    self.fake._touch(runner)  # the keep-alive timer restarts when the runner goes idle
            if sem:
                sem.release()

    def _send_scenario_status(self, sc: Scenario) -> None:
        assert sc.status is not None
        if isinstance(sc.body, str):
            self._send_text(sc.status, sc.body)
        else:
            self._send_json(sc.status, dict(sc.body or {"error": "scripted failure"}))

    def _stats(self, sc: Scenario, *, t_start: int, t_first: int | None, load_s: float, prompt_words: int,
               n_eval: int) -> dict[str, int]:
        now = time.perf_counter_ns()
        first = t_first or now
        stats = {
            "total_duration": now - t_start,
            "load_duration": int(load_s * 1e9) or 1_234_567,  # scheduling takes a little even when loaded
            "prompt_eval_count": prompt_words + 12,  # the chat template adds tokens around the messages
            "prompt_eval_duration": max(first - t_start - int(load_s * 1e9), 1),
            "eval_count": n_eval,
            "eval_duration": max(now - first, 1),
        }
        omit = set(STATS) if sc.omit_stats is True else set(sc.omit_stats or ())
        # Go's omitempty: a zero count or duration is absent, not 0.
        return {k: v for k, v in stats.items() if k not in omit and v}

    def _chunk_obj(self, name: str, kind: str, piece: Any, *, chat: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"model": name, "created_at": go_time(datetime.now(UTC))}
        if chat:
            msg: dict[str, Any] = {"role": "assistant", "content": piece if kind == "content" else ""}
            if kind == "thinking":
                msg["thinking"] = piece
            if kind == "tool_calls":
                msg["tool_calls"] = piece
            out["message"] = msg
        else:
            out["response"] = piece if kind == "content" else ""
            if kind == "thinking":
                out["thinking"] = piece
        out["done"] = False
        return out

    def _stream_native(self, name: str, sc: Scenario, pieces: list[tuple[str, Any]], done_reason: str, *,
                       chat: bool, t_start: int, load_s: float, prompt_words: int) -> None:
        self._start_stream("application/x-ndjson")
        t_first: int | None = None
        for i in range(len(pieces) + 1):
            if self._fault(sc, i, lambda: self._line({"error": sc.error_message}), sc.garbage + b"\n"):
                return
            if i == len(pieces):
                break
            self.pause(sc.first_token_delay_s if i == 0 else sc.token_delay_s)
            kind, piece = pieces[i]
            self._line(self._chunk_obj(name, kind, piece, chat=chat))
            t_first = t_first or time.perf_counter_ns()
        if sc.end_without_done:
            self.end_chunks()
            return
        final = self._empty_reply(name, chat, done_reason)
        if not chat:
            final["context"] = [1, 2, 3]
        final.update(self._stats(sc, t_start=t_start, t_first=t_first, load_s=load_s, prompt_words=prompt_words,
                                 n_eval=sum(1 for k, _ in pieces if k != "tool_calls")))
        self._line(final)
        self.end_chunks()

    def _whole_native(self, name: str, sc: Scenario, pieces: list[tuple[str, Any]], done_reason: str, *,
                      chat: bool, t_start: int, load_s: float, prompt_words: int) -> None:
        if sc.error_after is not None:
            self._send_json(500, {"error": sc.error_message})
            return
        self.pause(sc.first_token_delay_s + sc.token_delay_s * max(len(pieces) - 1, 0))
        out = self._empty_reply(name, chat, done_reason)
        content = "".join(p for k, p in pieces if k == "content")
        thinking = "".join(p for k, p in pieces if k == "thinking")
        calls = [c for k, p in pieces if k == "tool_calls" for c in p]
        if chat:
            msg: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking:
                msg["thinking"] = thinking
            if calls:
                msg["tool_calls"] = calls
            out["message"] = msg
        else:
            out["response"] = content
            if thinking:
                out["thinking"] = thinking
            out["context"] = [1, 2, 3]
        out.update(self._stats(sc, t_start=t_start, t_first=t_start, load_s=load_s, prompt_words=prompt_words,
                               n_eval=len(pieces)))
        self._send_json(200, out)

    # --- OpenAI-compatible subset -------------------------------------------------------------------------------

    def _oai_error(self, status: int, message: str) -> None:
        kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        self._send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})

    def _v1_models(self, _raw: bytes) -> None:
        with self.fake.lock:
            models = sorted(self.fake.models.values(), key=lambda m: m.modified_at, reverse=True)
            data = [{"id": m.name, "object": "model", "created": int(m.modified_at.timestamp()),
                     "owned_by": "library"} for m in models]
        # ToListCompletion leaves a nil slice when nothing is installed: JSON null, not [].
        self._send_json(200, {"object": "list", "data": data or None})

    def _v1_model(self, name: str) -> None:
        m = self.fake.resolve(name)
        if m is None:
            self._oai_error(404, f"model '{name}' not found")
            return
        self._send_json(200, {"id": m.name, "object": "model", "created": int(m.modified_at.timestamp()),
                              "owned_by": "library"})

    def _v1_chat(self, raw: bytes) -> None:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._oai_error(400, "invalid request body")
            return
        name = body.get("model") or ""
        m = self.fake.resolve(name)
        if m is None:
            self._oai_error(404, f"model '{name}' not found")
            return
        messages = body.get("messages") or []
        sc = self.fake._next_scenario(m)
        if sc.status is not None:
            message = sc.body.get("error") if isinstance(sc.body, Mapping) else sc.body
            self._oai_error(sc.status, str(message or "scripted failure"))
            return
        try:
            self.fake.load(m, None, None)
        except RuntimeError as exc:
            self._oai_error(500, str(exc))
            return
        native = {"options": {"num_predict": body["max_tokens"]} if body.get("max_tokens") else {},
                  "think": None if body.get("reasoning_effort") != "none" else False,
                  "tools": body.get("tools")}
        pieces, done_reason = self._pieces(m, sc, native, chat=True)
        words = sum(len(str(x.get("content") or "").split()) for x in messages if isinstance(x, dict))
        usage = {"prompt_tokens": words + 12, "completion_tokens": len(pieces),
                 "total_tokens": words + 12 + len(pieces)}
        cid, created = f"chatcmpl-{int(time.time() * 1000) % 1000}", int(time.time())
        with self._slot(m):
            if body.get("stream") is True:
                self._v1_stream(name, sc, pieces, done_reason, cid, created, usage,
                                include_usage=bool((body.get("stream_options") or {}).get("include_usage")))
                return
            self.pause(sc.first_token_delay_s + sc.token_delay_s * max(len(pieces) - 1, 0))
            msg: dict[str, Any] = {"role": "assistant", "content": "".join(p for k, p in pieces if k == "content")}
            reasoning = "".join(p for k, p in pieces if k == "thinking")
            if reasoning:
                msg["reasoning"] = reasoning
            self._send_json(200, {
                "id": cid, "object": "chat.completion", "created": created, "model": name,
                "system_fingerprint": "fp_ollama",
                "choices": [{"index": 0, "message": msg, "finish_reason": done_reason}], "usage": usage,
            })

    def _v1_stream(self, name: str, sc: Scenario, pieces: list[tuple[str, Any]], done_reason: str, cid: str,
                   created: int, usage: Mapping[str, int], *, include_usage: bool) -> None:
        self._start_stream("text/event-stream")

        def event(obj: Any) -> None:
            self.write_chunk(sse_frame(go_json(obj)))

        def chunk(delta: Mapping[str, Any], finish: str | None) -> dict[str, Any]:
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": name,
                    "system_fingerprint": "fp_ollama",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        error = {"error": {"message": sc.error_message, "type": "api_error", "param": None, "code": None}}
        for i in range(len(pieces) + 1):
            if self._fault(sc, i, lambda: event(error), sse_frame(sc.garbage)):
                return
            if i == len(pieces):
                break
            self.pause(sc.first_token_delay_s if i == 0 else sc.token_delay_s)
            kind, piece = pieces[i]
            key = {"content": "content", "thinking": "reasoning", "tool_calls": "tool_calls"}[kind]
            if kind == "tool_calls":
                piece = [{"id": c["id"], "index": c["function"]["index"], "type": "function",
                          "function": {"name": c["function"]["name"],
                                       "arguments": json.dumps(c["function"]["arguments"])}} for c in piece]
            event(chunk({"role": "assistant", "content": "" if kind != "content" else piece, key: piece}, None))
        if sc.end_without_done:
            self.end_chunks()
            return
        finish = "tool_calls" if any(k == "tool_calls" for k, _ in pieces) else done_reason
        event(chunk({"role": "assistant", "content": ""}, finish))
        if include_usage:
            event({**chunk({}, None), "choices": [], "usage": dict(usage)})
        self.write_chunk(sse_frame(b"[DONE]"))
        self.end_chunks()


# --- test and demo entry points -----------------------------------------------------------------------------------

def start_background_server(models: Sequence[FakeModel] | None = None, **knobs: Any) -> FakeOllama:
    """A running contract server on a free loopback port (a daemon thread); call `.stop()` when done."""
    return FakeOllama(models, **knobs).start()


@contextlib.contextmanager
def ollama_contract_server(models: Sequence[FakeModel] | None = None, **knobs: Any) -> Iterator[FakeOllama]:
    """A running contract server on a free loopback port; `.url` to reach it, attributes and `queue()` to script."""
    fake = start_background_server(models, **knobs)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def ollama_server() -> Iterator[FakeOllama]:
    """A fresh contract server with the demo catalogue (see `demo_models()`)."""
    with ollama_contract_server() as fake:
        yield fake


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Ollama contract server (a stand-in for `ollama serve`).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--version", default="0.12.6", help="what /api/version reports")
    parser.add_argument("--token", help="require `Authorization: Bearer TOKEN`, like a reverse proxy would")
    parser.add_argument("--num-parallel", type=int, help="requests one model serves at once (OLLAMA_NUM_PARALLEL)")
    parser.add_argument("--token-delay", type=float, default=0.03, help="seconds between two streamed chunks")
    args = parser.parse_args(argv)
    models = demo_models()
    for m in models:
        if m.scenario is None:
            m.scenario = slow(args.token_delay)
    fake = FakeOllama(models, version=args.version, require_token=args.token, num_parallel=args.num_parallel,
                      host=args.host, port=args.port, pull_step_delay_s=0.3)
    print(f"fake Ollama {args.version} listening on {fake.url} (Ctrl-C stops)", flush=True)
    fake.serve_until_interrupted()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
