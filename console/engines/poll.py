"""One poll of one engine: health, loaded models and /metrics, bounded in time, never raising.

The dashboard, `enginedeck engines` and `enginedeck ps` all read engines through this, so a slow or dead
engine costs at most its deadline and never delays the others (they are polled concurrently).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from console.engines.base import Engine, EngineInfo, Health, LoadedModel, MetricsSnapshot, Op, SlotState
from console.errors import EngineError

if TYPE_CHECKING:
    from console.engines.registry import EngineEntry, Registry

DEFAULT_DEADLINE_S = 5.0
# A live dashboard re-reads what is loaded every poll, but an engine's version and health answer rarely change:
# while the engine keeps answering, ask for them only this often (about a third of the requests per poll).
INFO_MAX_AGE_S = 30.0


@dataclass(frozen=True)
class EngineStatus:
    name: str
    url: str
    kind: str
    info: EngineInfo | None = None
    loaded: tuple[LoadedModel, ...] = ()
    metrics: MetricsSnapshot | None = None
    metrics_error: str | None = None  # why `metrics` is None: the kind's reason it has none, or the read's error
    slots: tuple[SlotState, ...] | None = None  # None: the kind has no slots, or they could not be read
    slots_error: str | None = None  # why they could not be read (console/engines/pressure.py says it)
    error: str | None = None
    polled_at: float = field(default_factory=time.time)
    info_at: float = 0.0  # when `info` was read (it may be reused from an earlier poll)

    @property
    def health(self) -> Health:
        return self.info.health if self.info else Health.DOWN


async def poll_engine(engine: Engine, *, deadline_s: float = DEFAULT_DEADLINE_S,
                      previous: EngineStatus | None = None) -> EngineStatus:
    """One bounded poll. With `previous` (the last poll of this engine, healthy and younger than
    INFO_MAX_AGE_S) the info call is skipped and its answer reused; any failure below asks again next time."""
    base: dict[str, Any] = {"name": engine.name, "url": engine.base_url, "kind": engine.kind}
    reuse = (previous is not None and previous.info is not None and previous.error is None
             and previous.info.health is Health.OK and time.time() - previous.info_at < INFO_MAX_AGE_S)
    if reuse and previous is not None and previous.info is not None:
        info, info_at = previous.info, previous.info_at
    else:
        try:
            async with asyncio.timeout(deadline_s):  # no extra task per call, unlike wait_for
                info = await engine.info()
        except (EngineError, TimeoutError) as exc:
            reason = str(exc) if isinstance(exc, EngineError) else f"no answer within {deadline_s:g} s"
            return EngineStatus(**base, error=reason)
        info_at = time.time()
    base["info_at"] = info_at
    if info.health is not Health.OK and info.health is not Health.SLEEPING:
        return EngineStatus(**base, info=info)
    loaded: tuple[LoadedModel, ...] = ()
    problems: list[str] = []
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(deadline_s):
            loaded = tuple(await engine.loaded_models())
    except (EngineError, TimeoutError) as exc:
        if reuse:  # the reused info may be stale now: ask everything again
            return await poll_engine(engine, deadline_s=deadline_s)
        problems.append(f"loaded models: {str(exc) or 'timed out'}")  # TimeoutError says nothing
    else:
        if reuse:  # the poll column shows the latency of this poll, not of the reused one
            info = replace(info, latency_ms=(time.perf_counter() - t0) * 1000)
    asked_metrics = engine.capabilities.supports(Op.METRICS)  # a 501 turns it off during the read
    load = await read_load(engine, deadline_s=deadline_s)
    if asked_metrics and load.metrics is None and load.metrics_error:
        problems.append(f"metrics: {load.metrics_error}")
    return EngineStatus(**base, info=info, loaded=loaded, metrics=load.metrics, metrics_error=load.metrics_error,
                        slots=load.slots, slots_error=load.slots_error, error="; ".join(problems) or None)


@dataclass(frozen=True)
class Load:
    """What an engine says about its load: /metrics and its slots, each with why it is missing."""

    metrics: MetricsSnapshot | None = None
    metrics_error: str | None = None
    slots: tuple[SlotState, ...] | None = None
    slots_error: str | None = None


async def read_load(engine: Engine, *, deadline_s: float = DEFAULT_DEADLINE_S) -> Load:
    """/metrics (where the kind has it) and the slots (where it has them), each bounded; never raises."""
    metrics = None
    metrics_error = engine.capabilities.reason(Op.METRICS)
    if engine.capabilities.supports(Op.METRICS):
        try:
            async with asyncio.timeout(deadline_s):
                metrics = await engine.metrics()
        except (EngineError, TimeoutError) as exc:
            metrics_error = str(exc) or "timed out"
    slots: tuple[SlotState, ...] | None = None
    slots_error = None
    try:
        async with asyncio.timeout(deadline_s):
            found = await engine.slot_states()
        slots = None if found is None else tuple(found)
    except (EngineError, TimeoutError) as exc:  # not a problem of the poll: pressure says the figure is missing
        slots_error = str(exc) or f"no answer within {deadline_s:g} s"
    return Load(metrics, metrics_error, slots, slots_error)


async def poll_all(engines: Sequence[Engine], *, deadline_s: float = DEFAULT_DEADLINE_S) -> list[EngineStatus]:
    return list(await asyncio.gather(*(poll_engine(e, deadline_s=deadline_s) for e in engines)))


class FirstPoll:
    """The registry's first refresh and each engine's first poll, started as early as a process can: the TUI
    starts them before it imports Textual, so that an engine's row can be on screen before the first frame
    (console/ui/start.py). Each engine is polled as soon as its entry is built, not once every entry is.

    Create it inside a running event loop; the tasks belong to that loop, and whoever takes over (the dashboard)
    awaits them instead of asking again.
    """

    def __init__(self, registry: Registry, *, deadline_s: float = DEFAULT_DEADLINE_S) -> None:
        self.deadline_s = deadline_s
        self.polls: dict[str, asyncio.Task[EngineStatus]] = {}  # by engine name, in the order they were found
        self.refresh: asyncio.Task[list[EngineEntry]] = asyncio.create_task(registry.refresh(on_entry=self._found),
                                                                            name="first refresh")

    def _found(self, entry: EngineEntry) -> None:
        if entry.engine is not None:
            self.polls[entry.name] = asyncio.create_task(poll_engine(entry.engine, deadline_s=self.deadline_s),
                                                         name=f"first poll {entry.name}")

    def answered(self) -> dict[str, EngineStatus]:
        """The polls that have answered (or given up) by now."""
        return {name: task.result() for name, task in self.polls.items() if task.done() and not task.cancelled()}

    async def wait(self, timeout_s: float) -> bool:
        """Until the list is built and every engine has answered, or `timeout_s`; True when everything is in.
        A refresh that failed counts as in (whoever takes over reads its error)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(end):
                await asyncio.wait([self.refresh])
                if self.polls:
                    await asyncio.wait(list(self.polls.values()))
        return self.refresh.done() and all(task.done() for task in self.polls.values())

    def cancel(self) -> None:
        for task in (self.refresh, *self.polls.values()):
            task.cancel()
