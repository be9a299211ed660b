"""One chat session as the TUI and `enginedeck chat` both run it: send a turn, stream it, persist it as it goes.

A turn writes the user message, then the assistant row with status "partial" *before* the request is sent,
then updates that row at least once a second while tokens arrive, and finishes it as complete, cancelled
(the UI says "stopped") or error (partial text and the message kept). A crash therefore loses at most the
last second of text and never a committed message.

The store is a recorder, not a dependency: if it cannot be written (full disk, read-only file), the turn goes
on in memory and says so in `store_warning`.

Before anything is written, a turn checks the model against the engine: a name the engine does not list is
refused (llama-server answers any name with its one model, and the reply would be saved under a model that
never produced it), and under --read-only a model that is not loaded is refused, because asking it would load
it and might evict another (the probe is refused for the same reason). The TUI and `enginedeck chat` both get
these refusals from here.

Streaming is an async iterator of the engine's own `ChatEvent`s, so a Textual worker or the CLI consumes it
with `async for` and reads the running text and figures from the `Turn`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

from console.engines.base import (
    ChatEvent,
    ChatMessage,
    ChatRequest,
    Engine,
    EventKind,
    LoadedModel,
    ModelInfo,
    Op,
    TokenSource,
    Usage,
)
from console.errors import (
    EngineDeckError,
    EngineError,
    EngineTimeoutError,
    LimitError,
    NotFoundError,
    ReadOnlyError,
    StoreError,
    UnreachableError,
)

if TYPE_CHECKING:
    from console.store.db import Store
    from console.telemetry.energy import EnergyMeter, EnergyReading, Idle, Window

T = TypeVar("T")
FLUSH_INTERVAL_S = 1.0
MODELS_NAMED = 5  # models named in the "does not serve" refusal
TITLE_CHARS = 60
_FIRST_TOKEN_KINDS = (EventKind.CONTENT, EventKind.REASONING, EventKind.TOOL_CALL)


@dataclass(frozen=True)
class ChatParams:
    """Sampling and serving parameters of a session. None: the engine's default."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    context_length: int | None = None
    keep_alive: str | float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ChatParams:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def merged(self, other: ChatParams) -> ChatParams:
        """These parameters, overridden by whatever `other` sets."""
        return replace(self, **other.as_dict())


@dataclass
class Figures:
    """Per-reply performance. `tok_s` counts the tokens after the first over the time after the first."""

    ttft_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    tok_s: float | None = None
    token_source: TokenSource | None = None
    energy: EnergyReading | None = None  # when the conversation has an EnergyMeter (console/telemetry/energy.py)

    @property
    def approximate(self) -> bool:
        return self.token_source is not None and self.token_source.approximate

    def describe(self) -> str:
        """`TTFT 212 ms · 64 tokens (server usage) · 158.3 tok/s`; ≈ marks a counted-chunks estimate."""
        ttft = f"TTFT {self.ttft_ms:.0f} ms" if self.ttft_ms is not None else "TTFT —"
        about = "≈" if self.approximate else ""
        source = f" ({self.token_source.value})" if self.token_source else ""
        tokens = f"{about}{self.tokens_out} tokens{source}" if self.tokens_out is not None else "— tokens"
        rate = f"{about}{self.tok_s:.1f} tok/s" if self.tok_s is not None else "— tok/s"
        return f"{ttft} · {tokens} · {rate}"


@dataclass
class Entry:
    """A message of the conversation as held in memory. `message_id` is None when it was not saved."""

    role: str
    content: str
    reasoning: str = ""
    status: str = "complete"
    error: str | None = None
    engine: str | None = None
    model: str | None = None
    figures: Figures = field(default_factory=Figures)
    message_id: int | None = None


class Conversation:
    """A session: its settings, its messages in memory, and (when a store is given) their rows."""

    def __init__(self, store: Store | None, *, model: str, engine: str | None = None,
                 system_prompt: str | None = None, params: ChatParams | None = None,
                 flush_interval_s: float = FLUSH_INTERVAL_S, read_only: bool = False,
                 energy: EnergyMeter | None = None) -> None:
        self.store = store
        self.energy = energy  # measures each turn's GPU energy (idle first, then the turn); None: not measured
        self.read_only = read_only
        self.engine = engine
        self.model = model
        self.system_prompt = system_prompt
        self.params = params or ChatParams()
        self.flush_interval_s = flush_interval_s
        self.session_id: int | None = None
        self.title = ""
        self.entries: list[Entry] = []
        self.store_warning: str | None = None
        self._saved_settings: tuple[Any, ...] | None = None
        self._served: set[tuple[str, str]] = set()  # (engine, model) pairs the engine was seen to list

    @classmethod
    async def resume(cls, store: Store, session_id: int, *, flush_interval_s: float = FLUSH_INTERVAL_S,
                     read_only: bool = False) -> Conversation:
        session = await store.sessions.require(session_id)
        conv = cls(store, model=session.model or "", engine=session.engine, system_prompt=session.system_prompt,
                   params=ChatParams.from_mapping(session.params), flush_interval_s=flush_interval_s,
                   read_only=read_only)
        conv.session_id, conv.title = session.id, session.title
        conv._saved_settings = conv._settings()
        for m in await store.sessions.messages(session_id):
            source = parse_token_source(m.token_source)
            conv.entries.append(Entry(
                role=m.role, content=m.content, reasoning=m.reasoning, status=m.status, error=m.error,
                engine=m.engine, model=m.model, message_id=m.id,
                figures=Figures(m.ttft_ms, m.tokens_in, m.tokens_out, m.tok_s, source, _energy_reading(m.energy))))
        return conv

    # -- turns -------------------------------------------------------------------------------------------
    def send(self, engine: Engine, prompt: str) -> Turn:
        """A new user message and its reply."""
        return Turn(self, engine, prompt, mode="send")

    def regenerate(self, engine: Engine) -> Turn:
        """Drop the replies after the last user message and ask again."""
        last = self._last_user_index()
        return Turn(self, engine, self.entries[last].content, mode="regenerate")

    def edit_last(self, engine: Engine, prompt: str) -> Turn:
        """Replace the last user message (and what followed it) with `prompt`, then ask again."""
        self._last_user_index()
        return Turn(self, engine, prompt, mode="edit")

    def request(self) -> ChatRequest:
        """The request for the next reply: system prompt, then every message that has text."""
        messages = [ChatMessage("system", self.system_prompt)] if self.system_prompt else []
        messages += [ChatMessage(e.role, e.content) for e in self.entries
                     if e.content and e.role in ("user", "assistant", "tool")]
        p = self.params
        return ChatRequest(model=self.model, messages=tuple(messages), temperature=p.temperature, top_p=p.top_p,
                           max_tokens=p.max_tokens, context_length=p.context_length, keep_alive=p.keep_alive)

    async def check_model(self, engine: Engine) -> None:
        """Refuse, before anything is sent or written, a model `engine` does not list and, read-only, one it has
        not loaded. A list the engine cannot give (or an empty one) is no reason to refuse a chat; under
        --read-only, not knowing what is loaded is."""
        model = self.model
        if (engine.name, model) not in self._served:
            try:
                served = await engine.list_models() if engine.capabilities.supports(Op.LIST) else []
            except (UnreachableError, EngineTimeoutError, LimitError):
                raise  # an engine that cannot answer this cannot answer a chat either: say so now, not twice as late
            except EngineError:
                served = []  # no list here (a proxy without one, say): the chat request itself will tell
            if served and not any(_same_model(engine, model, m) for m in served):
                names = ", ".join(m.name for m in served[:MODELS_NAMED])
                more = f" and {len(served) - MODELS_NAMED} more" if len(served) > MODELS_NAMED else ""
                raise NotFoundError(f"does not serve a model named {model!r} (it serves {names}{more})",
                                    engine=engine.name, hint="pick one from `enginedeck models`")
            self._served.add((engine.name, model))
        if self.read_only:
            try:
                loaded = await engine.loaded_models()
            except EngineError as exc:
                raise ReadOnlyError(f"chat refused under --read-only: cannot tell whether {model!r} is loaded on "
                                    f"{engine.name} ({exc})", hint="try again, or run without --read-only") from None
            if not any(_same_model(engine, model, m) for m in loaded):
                raise ReadOnlyError(
                    f"chat refused under --read-only: {model!r} is not loaded on {engine.name}, and asking it "
                    "would load it (and may evict another model)",
                    hint="chat with a loaded model (`enginedeck ps`), or run without --read-only")

    def _last_user_index(self) -> int:
        for i in range(len(self.entries) - 1, -1, -1):
            if self.entries[i].role == "user":
                return i
        raise EngineDeckError("nothing to resend: this session has no user message yet")

    # -- persistence -------------------------------------------------------------------------------------
    def _settings(self) -> tuple[Any, ...]:
        return (self.engine, self.model, self.system_prompt, self.params)

    async def _save(self, call: Awaitable[T], what: str) -> T | None:
        """Run a store write; on failure keep going in memory and remember why (the UI shows it)."""
        try:
            return await call
        except StoreError as exc:
            self.store_warning = f"not saved ({what}): {exc}"
            return None

    async def _ensure_session(self, first_prompt: str) -> None:
        if self.store is None:
            return
        if self.session_id is None:
            self.title = self.title or _title(first_prompt)
            session = await self._save(self.store.sessions.create(
                title=self.title, engine=self.engine, model=self.model, system_prompt=self.system_prompt,
                params=self.params.as_dict()), "session")
            if session is not None:
                self.session_id = session.id
                self._saved_settings = self._settings()
        elif self._saved_settings != self._settings():
            try:
                await self.store.sessions.update(
                    self.session_id, engine=self.engine, model=self.model, system_prompt=self.system_prompt or "",
                    params=self.params.as_dict())
            except StoreError as exc:
                self.store_warning = f"not saved (session settings): {exc}"
            else:
                self._saved_settings = self._settings()

    async def _drop_from(self, index: int) -> None:
        """Forget entries[index:] in memory and in the store."""
        dropped, self.entries[index:] = self.entries[index:], []
        first_saved = next((e.message_id for e in dropped if e.message_id is not None), None)
        if self.store is not None and self.session_id is not None and first_saved is not None:
            await self._save(self.store.sessions.delete_messages_from(self.session_id, first_saved), "resend")

    async def _add(self, entry: Entry, params: Mapping[str, Any] | None = None) -> None:
        self.entries.append(entry)
        if self.store is not None and self.session_id is not None:
            entry.message_id = await self._save(self.store.sessions.add_message(
                self.session_id, entry.role, entry.content, engine=entry.engine, model=entry.model,
                status=entry.status, params=params), f"{entry.role} message")

    async def _write(self, entry: Entry, **columns: Any) -> None:
        if self.store is not None and entry.message_id is not None:
            await self._save(self.store.sessions.update_message(entry.message_id, **columns), "reply")


class Turn:
    """One request and its streamed reply. Iterate it (once) to run it; read the state as it goes.

    While it runs `status` is "partial"; it ends "complete", "cancelled" or "error". An engine failure does
    not raise: it arrives as an ERROR event and leaves `status` "error" with `error` set. Cancelling the
    task that iterates (or closing the iterator) keeps the partial reply and marks it "cancelled"; a consumer
    whose loop body awaits should iterate under `contextlib.aclosing(aiter(turn))`, so a cancellation that
    lands in its own code still closes the turn.
    """

    def __init__(self, conversation: Conversation, engine: Engine, prompt: str, *, mode: str) -> None:
        self.conversation = conversation
        self.engine = engine
        self.prompt = prompt
        self.mode = mode
        self.reply: Entry | None = None
        self.done_reason: str | None = None
        self._started = False
        self._energy: tuple[Window, Idle] | None = None

    # The reply's state, for the caller to read while streaming.
    @property
    def content(self) -> str:
        return self.reply.content if self.reply else ""

    @property
    def reasoning(self) -> str:
        return self.reply.reasoning if self.reply else ""

    @property
    def status(self) -> str:
        return self.reply.status if self.reply else "partial"

    @property
    def error(self) -> str | None:
        return self.reply.error if self.reply else None

    @property
    def figures(self) -> Figures:
        return self.reply.figures if self.reply else Figures()

    @property
    def store_warning(self) -> str | None:
        return self.conversation.store_warning

    @property
    def message_id(self) -> int | None:
        return self.reply.message_id if self.reply else None

    def __aiter__(self) -> AsyncGenerator[ChatEvent, None]:
        if self._started:
            raise RuntimeError("a turn runs once")
        self._started = True
        return self._run()

    async def _run(self) -> AsyncGenerator[ChatEvent, None]:
        conv = self.conversation
        self.engine.capabilities.require(Op.CHAT, self.engine.name)  # before anything is written
        await conv.check_model(self.engine)
        conv.engine = self.engine.name
        if self.mode == "regenerate":
            await conv._drop_from(conv._last_user_index() + 1)
        elif self.mode == "edit":
            await conv._drop_from(conv._last_user_index())
        await conv._ensure_session(self.prompt)
        if self.mode != "regenerate":
            await conv._add(Entry("user", self.prompt))
        request = conv.request()
        reply = Entry("assistant", "", status="partial", engine=self.engine.name, model=conv.model)
        self.reply = reply
        await conv._add(reply, params=conv.params.as_dict())

        if conv.energy is not None:  # before the clock starts: the idle baseline and the counters cost no TTFT
            idle = await asyncio.to_thread(conv.energy.idle)
            self._energy = (await asyncio.to_thread(conv.energy.start), idle)
        counter = _Counter(time.perf_counter_ns())
        last_flush = time.monotonic()
        flushed = ("", "")
        try:
            async with contextlib.aclosing(self.engine.chat(request)) as stream:
                async for event in stream:
                    if event.kind is EventKind.ERROR:
                        reply.status = "error"
                        reply.error = str(event.error) if event.error else (event.text or "stream error")
                        yield event
                        break
                    self._take(event, counter)
                    yield event
                    # The first text is written at once (it carries the TTFT), then at most once per interval.
                    first_text = flushed == ("", "") and bool(reply.content or reply.reasoning)
                    if (first_text or time.monotonic() - last_flush >= conv.flush_interval_s) and \
                            (reply.content, reply.reasoning) != flushed:
                        flushed = (reply.content, reply.reasoning)
                        await conv._write(reply, content=reply.content, reasoning=reply.reasoning,
                                          ttft_ms=reply.figures.ttft_ms)
                        last_flush = time.monotonic()
        except EngineError as exc:
            reply.status, reply.error = "error", str(exc)
            counter.finish(reply.figures)
            await self._finish(reply)
            yield ChatEvent(EventKind.ERROR, time.perf_counter_ns(), error=exc)
            return
        except (asyncio.CancelledError, GeneratorExit):
            reply.status = "cancelled"
            counter.finish(reply.figures)
            await self._finish(reply)
            raise
        except BaseException as exc:
            reply.status, reply.error = "error", f"{type(exc).__name__}: {exc}"
            counter.finish(reply.figures)
            await self._finish(reply)
            raise
        if reply.status == "partial":
            reply.status = "complete"
        counter.finish(reply.figures)
        await self._finish(reply)

    def _take(self, event: ChatEvent, counter: _Counter) -> None:
        reply = self.reply
        assert reply is not None
        if event.kind in _FIRST_TOKEN_KINDS:
            counter.token(event, reply.figures)
        if event.kind is EventKind.CONTENT:
            reply.content += event.text
        elif event.kind is EventKind.REASONING:
            reply.reasoning += event.text
        elif event.kind is EventKind.USAGE and event.usage is not None:
            counter.usage = event.usage
        elif event.kind is EventKind.DONE:
            self.done_reason = event.done_reason

    async def _finish(self, reply: Entry) -> None:
        f = reply.figures
        energy: dict[str, Any] = {}
        if self._energy is not None:
            window, idle = self._energy
            f.energy = await asyncio.to_thread(window.stop, f.tokens_out, idle)
            energy["energy_json"] = json.dumps(f.energy.to_dict())
        await self.conversation._write(
            reply, content=reply.content, reasoning=reply.reasoning, status=reply.status, error=reply.error,
            ttft_ms=f.ttft_ms, tokens_in=f.tokens_in, tokens_out=f.tokens_out, tok_s=f.tok_s,
            token_source=f.token_source.value if f.token_source else None, **energy)


class _Counter:
    """TTFT, tokens and rate from event arrival times (taken by the engine layer before parsing)."""

    def __init__(self, sent_ns: int) -> None:
        self.sent_ns = sent_ns
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.chunks = 0
        self.usage: Usage | None = None

    def token(self, event: ChatEvent, figures: Figures) -> None:
        if self.first_ns is None:
            self.first_ns = event.t_ns
            figures.ttft_ms = (event.t_ns - self.sent_ns) / 1e6
        self.last_ns = event.t_ns
        if event.kind is not EventKind.TOOL_CALL:
            self.chunks += event.tokens if event.tokens is not None else 1

    def finish(self, figures: Figures) -> None:
        usage = self.usage
        if usage is not None and usage.completion_tokens is not None:
            figures.tokens_out, figures.token_source = usage.completion_tokens, usage.source
        elif self.chunks:
            figures.tokens_out, figures.token_source = self.chunks, TokenSource.CHUNKS
        if usage is not None and usage.prompt_tokens is not None:
            figures.tokens_in = usage.prompt_tokens
        span_ns = (self.last_ns or 0) - (self.first_ns or 0)
        if figures.tokens_out and figures.tokens_out > 1 and span_ns > 0:
            figures.tok_s = (figures.tokens_out - 1) / (span_ns / 1e9)


def _same_model(engine: Engine, name: str, model: ModelInfo | LoadedModel) -> bool:
    """`name` names `model` on `engine`: its name or one of its aliases; for Ollama, without the `:latest` tag
    and without case, as Ollama itself reads names."""
    if engine.kind == "ollama":
        from console.engines.ollama import same_model  # loaded already: the engine is an OllamaEngine

        return same_model(name, model.name)
    aliases = model.details.get("aliases")
    return name == model.name or (isinstance(aliases, list | tuple) and name in aliases)


def _title(prompt: str) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"


def _energy_reading(saved: Mapping[str, Any] | None) -> EnergyReading | None:
    """A reply's saved energy (messages.energy_json) read back; one that does not fit today's fields is left out."""
    from console.telemetry.energy import EnergyReading

    try:
        return EnergyReading(**saved) if saved else None
    except TypeError:
        return None


def parse_token_source(value: str | None) -> TokenSource | None:
    try:
        return TokenSource(value) if value else None
    except ValueError:
        return None
