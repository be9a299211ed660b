"""The Engine protocol: one async interface for every engine kind, plus the data it speaks in.

Each adapter declares which operations it supports (`Capabilities`), so a caller can grey out an action and
say why before trying it. An unsupported call raises `UnsupportedError` with that same reason.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from console.errors import EngineError, LimitError, UnsupportedError


class Health(StrEnum):
    OK = "ok"
    LOADING = "loading"
    SLEEPING = "sleeping"
    DOWN = "down"


class Op(StrEnum):
    """Operations an engine may or may not support."""

    LIST = "list"
    LOADED = "loaded"
    LOAD = "load"
    UNLOAD = "unload"
    SWAP = "swap"
    PULL = "pull"
    DELETE = "delete"
    SHOW = "show"
    CHAT = "chat"
    METRICS = "metrics"
    SLEEP = "sleep"
    WAKE = "wake"
    LORA_LOAD = "lora_load"
    LORA_UNLOAD = "lora_unload"


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do. `unsupported` maps each missing operation to the reason a person can act on."""

    unsupported: Mapping[Op, str] = field(default_factory=dict)

    def supports(self, op: Op) -> bool:
        return op not in self.unsupported

    def reason(self, op: Op) -> str | None:
        return self.unsupported.get(op)

    def require(self, op: Op, engine: str = "") -> None:
        if op in self.unsupported:
            raise UnsupportedError(f"cannot {op.value}: {self.unsupported[op]}", engine=engine)

    def with_unsupported(self, extra: Mapping[Op, str]) -> Capabilities:
        return Capabilities({**self.unsupported, **extra})


@dataclass(frozen=True)
class EngineInfo:
    kind: str
    base_url: str
    version: str | None
    health: Health
    reason: str = ""  # why the health is not ok, in words
    latency_ms: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo:
    """A model the engine can serve (downloaded, in its models dir, or the one it was started with)."""

    name: str
    size: int | None = None  # bytes on disk
    digest: str | None = None
    family: str | None = None
    quantization: str | None = None
    parameter_size: str | None = None
    context_length: int | None = None
    modified_at: datetime | None = None
    status: str | None = None  # router/LM Studio state: loaded / unloaded / loading / sleeping
    parent: str | None = None  # base model of a LoRA adapter
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedModel:
    """A model resident in memory right now."""

    name: str
    size: int | None = None  # bytes resident in total
    size_vram: int | None = None  # bytes of that in GPU memory (None: the engine does not say)
    # Where size_vram came from: "engine" (it said so), "nvml:pid 1234" (its process's memory, console/fit/
    # attribute.py); None until attributed.
    size_vram_source: str | None = None
    context_length: int | None = None
    expires_at: datetime | None = None  # Ollama keep-alive
    status: str | None = None  # llama.cpp router status, "sleeping" for vLLM sleep mode
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelDetail:
    """`show(model)`: everything the engine says about one model."""

    name: str
    digest: str | None = None
    parameters: str | None = None
    template: str | None = None
    license: str | None = None
    family: str | None = None
    quantization: str | None = None
    context_length: int | None = None
    model_info: Mapping[str, Any] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChatMessage:
    role: str  # system / user / assistant / tool
    content: str


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    context_length: int | None = None  # Ollama num_ctx; ignored where the server fixes it
    keep_alive: str | float | None = None  # Ollama only
    seed: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # engine-specific options, passed through

    def check_output(self, chunks: int, *, engine: str, endpoint: str) -> None:
        """Raise once a reply has brought far more output chunks than `max_tokens` allows. A chunk carries at
        least one token, so a server past twice the tokens asked for (plus slack for empty or split pieces)
        ignores the limit or streams forever, and reading on would only cost time."""
        if self.max_tokens is not None and chunks > 2 * self.max_tokens + 64:
            raise LimitError(f"{endpoint}: the reply went on past {chunks - 1} output chunks although at most "
                             f"{self.max_tokens} tokens were asked for", engine=engine,
                             hint="the engine ignores max_tokens; stopped reading")


class TokenSource(StrEnum):
    """Where a token count came from. Only CHUNKS is an estimate."""

    SERVER_USAGE = "server usage"
    OLLAMA_EVAL = "ollama eval_count"
    LLAMACPP_TIMINGS = "llama.cpp timings"
    CHUNKS = "counted chunks"

    @property
    def approximate(self) -> bool:
        return self is TokenSource.CHUNKS


@dataclass(frozen=True)
class Usage:
    """Token counts and engine-side timings of one reply, as the server reported them."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    source: TokenSource = TokenSource.SERVER_USAGE
    # Engine-side timings in milliseconds where the engine reports them (Ollama, llama.cpp timings).
    load_ms: float | None = None
    prompt_ms: float | None = None
    generation_ms: float | None = None
    total_ms: float | None = None
    cached_tokens: int | None = None


class EventKind(StrEnum):
    CONTENT = "content"
    REASONING = "reasoning"
    TOOL_CALL = "tool_call"
    USAGE = "usage"
    DONE = "done"
    ERROR = "error"


@dataclass(frozen=True)
class ChatEvent:
    """One event of a chat stream.

    `t_ns` is `time.perf_counter_ns()` taken when the bytes arrived, before JSON parsing, so the probe and the
    per-message figures measure the network and the engine, not our parser. `tokens` is the number of tokens
    this chunk carries when the server says so (None: unknown, count the chunk).
    """

    kind: EventKind
    t_ns: int
    text: str = ""
    tokens: int | None = None
    usage: Usage | None = None
    tool_call: Mapping[str, Any] | None = None
    done_reason: str | None = None
    error: EngineError | None = None


@dataclass(frozen=True)
class PullProgress:
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None
    t_ns: int = 0


@dataclass(frozen=True)
class MetricsSnapshot:
    """Engine-side figures from /metrics, normalised across kinds. None means the engine does not report it."""

    taken_at: float  # time.time()
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None  # 0..1
    prompt_tokens_total: float | None = None
    generation_tokens_total: float | None = None
    preemptions_total: float | None = None
    prompt_cache_hits_total: float | None = None  # prompt tokens served from the prefix cache, since start
    prompt_cache_queries_total: float | None = None  # prompt tokens looked up in it (hits + misses)
    prompt_cache_hit_ratio: float | None = None  # 0..1, where the engine reports the ratio itself
    sleeping: bool | None = None
    raw: Mapping[str, float] = field(default_factory=dict)  # every sample, name{labels} -> value


@dataclass(frozen=True)
class SlotState:
    """One parallel sequence slot of an engine that has them (llama.cpp's /slots)."""

    id: int
    n_ctx: int | None  # the context this slot holds (llama.cpp: -c divided by -np unless --kv-unified)
    busy: bool
    model: str | None = None  # router mode: the model whose child server the slot belongs to


@dataclass(frozen=True)
class SwapResult:
    old: str | None
    new: str
    ok: bool
    unload_s: float | None = None
    load_s: float | None = None
    first_token_s: float | None = None
    rolled_back: bool = False
    error: str | None = None
    # After a failed swap, what the engine says it holds, read back by console.actions: `outcome` as recorded
    # ("loaded now: a", "unknown: engine unreachable"), `loaded_now` the models loaded (None: not read).
    outcome: str | None = None
    loaded_now: tuple[str, ...] | None = None


class Engine(ABC):
    """Base of every adapter. Subclasses set `kind` and override what they support.

    The defaults raise `UnsupportedError` with the capability's reason, so an adapter that does not support an
    operation need not mention it beyond its `capabilities`.
    """

    kind: str = "unknown"

    def __init__(self, name: str, base_url: str) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._capabilities_settled = False

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities: ...

    @abstractmethod
    async def info(self) -> EngineInfo: ...

    @abstractmethod
    async def list_models(self) -> list[ModelInfo]: ...

    @abstractmethod
    async def loaded_models(self) -> list[LoadedModel]: ...

    @abstractmethod
    def chat(self, request: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        """An async generator (not just an iterator): a caller that stops early closes it (contextlib.aclosing),
        which closes the stream."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Safe to call twice."""

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def probe_capabilities(self) -> Capabilities:
        """Ask the server what it can do where that depends on how it was started (flags, modes, dev routes).
        Kinds whose abilities are fixed have nothing to ask."""
        return self.capabilities

    async def settle_capabilities(self) -> Capabilities:
        """`capabilities` once the server has been asked (once per engine object). Anything that decides by a
        capability calls this first: before it, a kind like llama.cpp cannot tell router mode from `-m`. Raises
        the engine's error (unreachable, auth...) when the server cannot be asked; the next call asks again."""
        if not self._capabilities_settled:
            await self.probe_capabilities()
            self._capabilities_settled = True
        return self.capabilities

    def _unsupported(self, op: Op) -> UnsupportedError:
        reason = self.capabilities.reason(op) or f"{self.kind} does not support {op.value}"
        return UnsupportedError(f"cannot {op.value}: {reason}", engine=self.name)

    async def load(self, model: str, keep_alive: str | float | None = None) -> None:
        raise self._unsupported(Op.LOAD)

    async def unload(self, model: str) -> None:
        raise self._unsupported(Op.UNLOAD)

    def pull(self, model: str) -> AsyncIterator[PullProgress]:
        raise self._unsupported(Op.PULL)

    async def delete(self, model: str) -> None:
        raise self._unsupported(Op.DELETE)

    async def show(self, model: str) -> ModelDetail:
        raise self._unsupported(Op.SHOW)

    async def metrics(self) -> MetricsSnapshot:
        raise self._unsupported(Op.METRICS)

    async def slot_states(self) -> list[SlotState] | None:
        """The engine's slots (busy or idle, and the context each holds); None: this kind has no slots to read.
        Raises the engine's error when it has them but they cannot be read (llama.cpp with --no-slots)."""
        return None

    async def first_token_s(self, model: str) -> float:
        """Seconds from sending a one-word chat to its first content token: the 'ready to serve' figure."""
        req = ChatRequest(model=model, messages=(ChatMessage("user", "Hi"),), max_tokens=1)
        t0 = time.perf_counter_ns()
        async for ev in self.chat(req):
            if ev.kind in (EventKind.CONTENT, EventKind.REASONING, EventKind.TOOL_CALL):
                return (ev.t_ns - t0) / 1e9
            if ev.kind is EventKind.ERROR and ev.error is not None:
                raise ev.error
        return (time.perf_counter_ns() - t0) / 1e9

    async def swap(self, old: str | None, new: str, keep_alive: str | float | None = None) -> SwapResult:
        """Unload `old`, load `new`, time the first token of `new`. If `new` fails, load `old` back.

        Engines whose load already evicts (llama.cpp router with --models-max 1) still go through this path so
        that the three timings are measured the same way everywhere.
        """
        self.capabilities.require(Op.SWAP, self.name)
        unload_s = None
        if old:
            t0 = time.perf_counter()
            await self.unload(old)
            unload_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        try:
            await self.load(new, keep_alive)
            load_s = time.perf_counter() - t1
            first = await self.first_token_s(new)
        except EngineError as exc:
            rolled_back = False
            if old:
                try:
                    await self.load(old, keep_alive)
                    rolled_back = True
                except EngineError as again:
                    return SwapResult(
                        old, new, ok=False, unload_s=unload_s, rolled_back=False,
                        error=f"{exc}; restoring {old} failed too: {again}",
                    )
            return SwapResult(old, new, ok=False, unload_s=unload_s, rolled_back=rolled_back, error=str(exc))
        return SwapResult(old, new, ok=True, unload_s=unload_s, load_s=load_s, first_token_s=first)
