"""Mutating model actions (load, unload, swap, pull, delete): refused under --read-only, checked against the
engine's settled capabilities, one per engine at a time, timed, recorded as model events and written to the
audit trail.

The TUI and the headless commands both go through `Actions`, so an action is recorded the same way wherever it
was asked for. What is recorded is what happened, not what was asked for:
- a success is recorded as "ok" once the engine has confirmed it;
- an action that failed, was cancelled or timed out is followed by a fresh read of the engine's state, and the
  verified outcome (`loaded`, `not loaded`, `loading`, `listed`, `not listed`, `loaded now: ...` after a swap, or
  `unknown: engine unreachable`) goes into the model event and the audit record, and into the error raised.
Cancelling is its own call (`cancel(engine)`): it cancels the engine call of the running action, whose caller
then gets `ActionCancelledError` carrying the verified outcome. A caller that is itself cancelled (ctrl+c, the
app closing) still gets the read-back and the record before the cancellation goes on.
One action per engine at a time: in this object, and with `lock_dir`, across processes (console/engine_lock.py).
Recording is bookkeeping: if the store or the audit trail cannot be written, the action's own result still
stands and the failure is kept in `warnings` for the caller to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from console.engine_lock import ActionInProgressError, EngineLock, Holder
from console.engines.base import Engine, Op, PullProgress, SwapResult
from console.errors import EngineDeckError, EngineTimeoutError, ReadOnlyError, UnreachableError
from console.fitting import record_load

if TYPE_CHECKING:
    from console.store.db import Store

T = TypeVar("T")
MAX_WARNINGS = 20
READ_BACK_TIMEOUT_S = 10.0  # the state read after a failure: long enough for a busy engine, never unbounded
PULL_BACKLOG = 8  # progress events held between the engine and a slow reader

LOADED, NOT_LOADED = "loaded", "not loaded"
LISTED, NOT_LISTED = "listed", "not listed"
UNREACHABLE = "unknown: engine unreachable"
INTERRUPTED = "unknown: interrupted before the engine was read"


class ActionFailedError(EngineDeckError):
    """An action failed after it was sent to the engine. `outcome` is the engine's state read back afterwards;
    `cause` the error the action met."""

    def __init__(self, message: str, *, outcome: str, cause: BaseException | None = None,
                 loaded_now: tuple[str, ...] | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.cause = cause
        self.loaded_now = loaded_now


class ActionCancelledError(ActionFailedError):
    """The action was cancelled by `Actions.cancel`; `outcome` says what the engine holds now."""


class AuditSink(Protocol):
    """The part of the audit trail (console/audit/trail.py) that actions need."""

    async def record(self, action: str, *, engine: str, target: str | None, params: Mapping[str, Any],
                     result: str, duration_s: float | None) -> Any: ...


@dataclass
class Attempt:
    """An action running on an engine: what it is, and the task that talks to the engine."""

    op: Op
    engine: str
    model: str
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Future[Any] | None = field(default=None, repr=False)
    cancel_requested: bool = field(default=False, repr=False)

    def start(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        task = asyncio.ensure_future(coro)
        self.task = task
        return task


class Actions:
    def __init__(self, store: Store | None, audit: AuditSink | None, read_only: bool, *,
                 lock_dir: Path | None = None) -> None:
        self.store = store
        self.audit = audit
        self.read_only = read_only
        self.lock_dir = lock_dir  # None: one action per engine within this object only
        self.warnings: deque[str] = deque(maxlen=MAX_WARNINGS)
        self._attempts: dict[str, Attempt] = {}

    # -- what callers ask -------------------------------------------------------------------------------

    async def check(self, op: Op, engine: Engine) -> None:
        """Refuse now (read-only, or the engine cannot do it, once its capabilities are settled) so a caller can
        say why before asking the operator anything."""
        if self.read_only:
            raise ReadOnlyError(f"{op.value} refused: enginedeck is running with --read-only",
                                hint="run without --read-only (and without read_only = true in the config)")
        await engine.settle_capabilities()
        engine.capabilities.require(op, engine.name)

    def running(self, engine: Engine) -> Attempt | None:
        """The action this object runs on `engine` now, if any."""
        return self._attempts.get(_key(engine))

    def cancel(self, engine: Engine) -> bool:
        """Cancel the running action's engine call; its caller then gets `ActionCancelledError` with what the
        engine holds afterwards. False when there is nothing to cancel (finished, or not started yet)."""
        attempt = self._attempts.get(_key(engine))
        if attempt is None or attempt.task is None or attempt.task.done():
            return False
        attempt.cancel_requested = True
        attempt.task.cancel()
        return True

    # -- the actions ------------------------------------------------------------------------------------

    async def load(self, engine: Engine, model: str, keep_alive: str | float | None = None) -> None:
        await self._run(Op.LOAD, engine, model, {"keep_alive": keep_alive}, lambda: engine.load(model, keep_alive))

    async def record_fit(self, engine: Engine, model: str) -> None:
        """After a load: what the model took beside what was predicted for it (console/fitting.py), so the overhead
        term is fitted from this box's loads. Callers call it after timing the load; not storing it is a warning."""
        if self.store is not None and (warning := await record_load(engine, model, self.store)) is not None:
            self.warnings.append(warning)

    async def unload(self, engine: Engine, model: str) -> None:
        await self._run(Op.UNLOAD, engine, model, {}, lambda: engine.unload(model))

    async def delete(self, engine: Engine, model: str) -> None:
        await self._run(Op.DELETE, engine, model, {}, lambda: engine.delete(model))

    async def swap(self, engine: Engine, old: str | None, new: str,
                   keep_alive: str | float | None = None) -> SwapResult:
        """A swap that fails to load `new` comes back as a result (ok False, with what is loaded now read back
        from the engine), not as an exception; one cut short (an error before `new`, a cancel) raises."""
        params = {"old": old, "keep_alive": keep_alive}
        return await self._run(Op.SWAP, engine, new, params, lambda: engine.swap(old, new, keep_alive))

    async def pull(self, engine: Engine, model: str) -> AsyncIterator[PullProgress]:
        """Progress events as the engine sends them; recorded once, when the pull ends, fails or is cancelled.

        The engine's stream is read by a task of its own (so `cancel` can stop it like any other action) and
        handed over through a short queue, so a slow reader slows the stream rather than piling events up.
        """
        await self.check(Op.PULL, engine)
        with self._hold(Op.PULL, engine, model) as attempt:
            started = time.perf_counter()
            queue: asyncio.Queue[PullProgress] = asyncio.Queue(maxsize=PULL_BACKLOG)

            async def forward() -> None:
                async for progress in engine.pull(model):
                    await queue.put(progress)

            task = attempt.start(forward())
            try:
                while True:
                    getter = asyncio.ensure_future(queue.get())
                    try:
                        await asyncio.wait((getter, task), return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        if not getter.done():
                            getter.cancel()
                    if getter.done() and not getter.cancelled():
                        yield getter.result()
                        continue
                    while not queue.empty():
                        yield queue.get_nowait()
                    await task  # the stream's end: its error or cancellation, if any, is raised here
                    break
            except BaseException as exc:
                task.cancel()
                await self._failed(attempt, engine, {}, started, exc)
                raise  # _failed raises; this keeps type checkers sure the block ends
            await self._record(Op.PULL, engine, model, {}, time.perf_counter() - started, None)

    # -- how every action runs --------------------------------------------------------------------------

    async def _run(self, op: Op, engine: Engine, model: str, params: Mapping[str, Any],
                   call: Callable[[], Awaitable[T]]) -> T:
        await self.check(op, engine)
        with self._hold(op, engine, model) as attempt:
            started = time.perf_counter()

            async def engine_call() -> T:
                return await call()

            task = attempt.start(engine_call())
            try:
                result = await task
            except BaseException as exc:
                task.cancel()
                await self._failed(attempt, engine, params, started, exc)
                raise
            if isinstance(result, SwapResult):
                # T is SwapResult here (swap's call returns one), which mypy does not infer from the isinstance.
                return await self._swap_done(engine, params, started, result)  # type: ignore[return-value]
            await self._record(op, engine, model, params, time.perf_counter() - started, None)
            return result

    async def _swap_done(self, engine: Engine, params: Mapping[str, Any], started: float,
                         r: SwapResult) -> SwapResult:
        detail: dict[str, Any] = {"old": r.old, "unload_s": r.unload_s, "load_s": r.load_s,
                                  "first_token_s": r.first_token_s, "rolled_back": r.rolled_back}
        if r.ok:
            await self._record(Op.SWAP, engine, r.new, params, time.perf_counter() - started, None, detail)
            return r
        outcome, loaded_now = await _shielded(self._read_back_and_record(
            Op.SWAP, engine, r.new, params, time.perf_counter() - started, r.error or "swap failed", detail))
        return replace(r, outcome=outcome, loaded_now=loaded_now)

    @contextlib.contextmanager
    def _hold(self, op: Op, engine: Engine, model: str) -> Iterator[Attempt]:
        """This engine for this action only, until the outcome is recorded."""
        key = _key(engine)
        if (other := self._attempts.get(key)) is not None:
            raise ActionInProgressError(engine.name, Holder(other.op.value, other.model, other.engine, os.getpid(),
                                                            time.time() - (time.monotonic() - other.started)))
        lock = (EngineLock.acquire(self.lock_dir, engine.base_url,
                                   Holder(op.value, model, engine.name, os.getpid(), time.time()))
                if self.lock_dir is not None else None)
        attempt = self._attempts[key] = Attempt(op, engine.name, model)
        try:
            yield attempt
        finally:
            del self._attempts[key]
            if lock is not None:
                lock.release()

    async def _failed(self, attempt: Attempt, engine: Engine, params: Mapping[str, Any], started: float,
                      exc: BaseException) -> None:
        """Read the engine's state back, record the verified outcome, and raise what the caller should see.

        The read-back and the record run in a task of their own, shielded, so a caller cancelled twice (a second
        ctrl+c, the app closing) cannot cut the record short; the state is read while this action still holds
        the engine, so no other action changes it in between.
        """
        duration = time.perf_counter() - started
        op, model = attempt.op, attempt.model
        cancelled_here = (isinstance(exc, asyncio.CancelledError) and attempt.cancel_requested
                          and not _caller_cancelled())
        if cancelled_here or isinstance(exc, asyncio.CancelledError | GeneratorExit | KeyboardInterrupt):
            failure = "cancelled"
        else:
            failure = str(exc) or type(exc).__name__
        detail = {"old": params.get("old")} if op is Op.SWAP else None
        outcome, loaded_now = await _shielded(self._read_back_and_record(op, engine, model, params, duration,
                                                                         failure, detail))
        after = _after(op, model, outcome)
        if cancelled_here:
            raise ActionCancelledError(f"{op.value} of {model} on {engine.name} cancelled; {after}",
                                       outcome=outcome, loaded_now=loaded_now) from None
        if isinstance(exc, EngineDeckError):
            raise ActionFailedError(f"{exc}; {after}", outcome=outcome, cause=exc, loaded_now=loaded_now) from exc
        raise exc

    async def _read_back_and_record(self, op: Op, engine: Engine, model: str, params: Mapping[str, Any],
                                    duration_s: float, error: str, detail: Mapping[str, Any] | None,
                                    ) -> tuple[str, tuple[str, ...] | None]:
        try:
            outcome, loaded_now = await self._read_back(op, engine, model)
        except asyncio.CancelledError:
            # The process is going down (a second ctrl+c, the loop closing): record what is known, then go.
            await self._record(op, engine, model, params, duration_s, error, detail, outcome=INTERRUPTED)
            raise
        if op is Op.SWAP:
            detail = {**(detail or {}), "loaded_now": loaded_now}
        await self._record(op, engine, model, params, duration_s, error, detail, outcome=outcome)
        return outcome, loaded_now

    async def _read_back(self, op: Op, engine: Engine, model: str) -> tuple[str, tuple[str, ...] | None]:
        """What the engine holds now, as recorded: for load and unload the model's state, for a swap every
        resident model, for pull and delete whether the engine lists the model."""
        try:
            async with asyncio.timeout(READ_BACK_TIMEOUT_S):
                if op in (Op.PULL, Op.DELETE):
                    listed = any(_same_model(m.name, model) for m in await engine.list_models())
                    return (LISTED if listed else NOT_LISTED), None
                resident = await engine.loaded_models()
        except (UnreachableError, EngineTimeoutError, TimeoutError):
            return UNREACHABLE, None
        except EngineDeckError as exc:
            return f"unknown: {exc}", None
        states = {m.name: m.status or LOADED for m in resident}
        loaded_now = tuple(name for name, state in states.items() if state == LOADED)
        if op is Op.SWAP:
            held = ", ".join(n if s == LOADED else f"{n} ({s})" for n, s in states.items())
            return f"loaded now: {held or 'nothing'}", loaded_now
        return next((s for n, s in states.items() if _same_model(n, model)), NOT_LOADED), loaded_now

    async def _record(self, op: Op, engine: Engine, model: str, params: Mapping[str, Any], duration_s: float,
                      error: str | None, detail: Mapping[str, Any] | None = None, *,
                      outcome: str | None = None) -> None:
        if self.store is not None:
            try:
                await self.store.model_events.record(
                    engine=engine.name, engine_kind=engine.kind, model=model, op=op.value, duration_s=duration_s,
                    ok=error is None, error=error, detail=detail, outcome=outcome)
            except EngineDeckError as exc:
                self.warnings.append(f"{op.value} of {model} was not recorded in the history: {exc}")
        if self.audit is not None:
            result = "ok" if error is None else ("cancelled" if error == "cancelled" else f"error: {error}")
            if outcome is not None:
                result += f"; verified: {outcome}"
            try:
                await self.audit.record(op.value, engine=engine.name, target=model, params=dict(params),
                                        result=result, duration_s=duration_s)
            except EngineDeckError as exc:
                self.warnings.append(f"{op.value} of {model} was not written to the audit trail: {exc}")


def _key(engine: Engine) -> str:
    from console.engines.detect import url_key

    return url_key(engine.base_url)


def _caller_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _shielded(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to its end in a task of its own, even if the caller is cancelled while it waits."""
    return await asyncio.shield(asyncio.ensure_future(coro))


def _same_model(listed: str, asked: str) -> bool:
    """Ollama lists `name` as `name:latest`."""
    return listed == asked or (":" not in asked and listed == f"{asked}:latest")


def _after(op: Op, model: str, outcome: str) -> str:
    if op is Op.SWAP or outcome.startswith("unknown"):
        return f"verified afterwards: {outcome}"
    return f"verified afterwards: {model} is {outcome}"
