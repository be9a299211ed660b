"""Mutating model actions (load, unload, swap, pull, delete): refused under --read-only, checked against the
engine's capabilities (settled first: asked of the server where they depend on how it was started), timed,
recorded as model events and written to the audit trail.

The TUI and the headless commands both go through `Actions`, so an action is recorded the same way wherever
it was asked for. Recording is bookkeeping: if the store or the audit trail cannot be written, the action's
own result still stands and the failure is kept in `warnings` for the caller to show.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from console.engines.base import Engine, Op, PullProgress, SwapResult
from console.errors import EngineDeckError, ReadOnlyError

if TYPE_CHECKING:
    from console.store.db import Store

T = TypeVar("T")
MAX_WARNINGS = 20


class AuditSink(Protocol):
    """The part of the audit trail (console/audit/trail.py) that actions need."""

    async def record(self, action: str, *, engine: str, target: str | None, params: Mapping[str, Any],
                     result: str, duration_s: float | None) -> Any: ...


class Actions:
    def __init__(self, store: Store | None, audit: AuditSink | None, read_only: bool) -> None:
        self.store = store
        self.audit = audit
        self.read_only = read_only
        self.warnings: deque[str] = deque(maxlen=MAX_WARNINGS)

    async def load(self, engine: Engine, model: str, keep_alive: str | float | None = None) -> None:
        await self._run(Op.LOAD, engine, model, {"keep_alive": keep_alive}, lambda: engine.load(model, keep_alive))

    async def unload(self, engine: Engine, model: str) -> None:
        await self._run(Op.UNLOAD, engine, model, {}, lambda: engine.unload(model))

    async def delete(self, engine: Engine, model: str) -> None:
        await self._run(Op.DELETE, engine, model, {}, lambda: engine.delete(model))

    async def swap(self, engine: Engine, old: str | None, new: str,
                   keep_alive: str | float | None = None) -> SwapResult:
        """A failed swap comes back as a result (ok False, old model restored or not), not as an exception."""
        await self.check(Op.SWAP, engine)
        started = time.perf_counter()
        params = {"old": old, "keep_alive": keep_alive}
        try:
            result = await engine.swap(old, new, keep_alive)
        except BaseException as exc:
            await self._record(Op.SWAP, engine, new, params, time.perf_counter() - started, _failure(exc))
            raise
        detail = {"old": old, "unload_s": result.unload_s, "load_s": result.load_s,
                  "first_token_s": result.first_token_s, "rolled_back": result.rolled_back}
        await self._record(Op.SWAP, engine, new, params, time.perf_counter() - started,
                           None if result.ok else (result.error or "swap failed"), detail)
        return result

    async def pull(self, engine: Engine, model: str) -> AsyncIterator[PullProgress]:
        """Progress events as the engine sends them; recorded once, when the pull ends or is cancelled."""
        await self.check(Op.PULL, engine)
        started = time.perf_counter()
        error: str | None = None
        try:
            async for progress in engine.pull(model):
                yield progress
        except BaseException as exc:
            error = _failure(exc)
            raise
        finally:
            await self._record(Op.PULL, engine, model, {}, time.perf_counter() - started, error)

    async def _run(self, op: Op, engine: Engine, model: str, params: Mapping[str, Any],
                   call: Callable[[], Awaitable[T]]) -> T:
        await self.check(op, engine)
        started = time.perf_counter()
        try:
            result = await call()
        except BaseException as exc:
            await self._record(op, engine, model, params, time.perf_counter() - started, _failure(exc))
            raise
        await self._record(op, engine, model, params, time.perf_counter() - started, None)
        return result

    async def check(self, op: Op, engine: Engine) -> None:
        """Refuse now (read-only, or the engine cannot do it, once its capabilities are settled) so a caller can
        say why before asking the operator anything."""
        if self.read_only:
            raise ReadOnlyError(f"{op.value} refused: enginedeck is running with --read-only",
                                hint="run without --read-only (and without read_only = true in the config)")
        await engine.settle_capabilities()
        engine.capabilities.require(op, engine.name)

    async def _record(self, op: Op, engine: Engine, model: str, params: Mapping[str, Any], duration_s: float,
                      error: str | None, detail: Mapping[str, Any] | None = None) -> None:
        if self.store is not None:
            try:
                await self.store.model_events.record(
                    engine=engine.name, engine_kind=engine.kind, model=model, op=op.value, duration_s=duration_s,
                    ok=error is None, error=error, detail=detail)
            except EngineDeckError as exc:
                self.warnings.append(f"{op.value} of {model} was not recorded in the history: {exc}")
        if self.audit is not None:
            try:
                await self.audit.record(op.value, engine=engine.name, target=model, params=dict(params),
                                        result="ok" if error is None else f"error: {error}", duration_s=duration_s)
            except EngineDeckError as exc:
                self.warnings.append(f"{op.value} of {model} was not written to the audit trail: {exc}")


def _failure(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError | GeneratorExit | KeyboardInterrupt):
        return "cancelled"
    return str(exc) or type(exc).__name__
