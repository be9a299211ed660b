"""One poll of one engine: health, loaded models and /metrics, bounded in time, never raising.

The dashboard, `enginedeck engines` and `enginedeck ps` all read engines through this, so a slow or dead
engine costs at most its deadline and never delays the others (they are polled concurrently).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from console.engines.base import Engine, EngineInfo, Health, LoadedModel, MetricsSnapshot, Op
from console.errors import EngineError

DEFAULT_DEADLINE_S = 5.0


@dataclass(frozen=True)
class EngineStatus:
    name: str
    url: str
    kind: str
    info: EngineInfo | None = None
    loaded: tuple[LoadedModel, ...] = ()
    metrics: MetricsSnapshot | None = None
    error: str | None = None
    polled_at: float = field(default_factory=time.time)

    @property
    def health(self) -> Health:
        return self.info.health if self.info else Health.DOWN


async def poll_engine(engine: Engine, *, deadline_s: float = DEFAULT_DEADLINE_S) -> EngineStatus:
    base = {"name": engine.name, "url": engine.base_url, "kind": engine.kind}
    try:
        info = await asyncio.wait_for(engine.info(), timeout=deadline_s)
    except (EngineError, TimeoutError) as exc:
        reason = str(exc) if isinstance(exc, EngineError) else f"no answer within {deadline_s:.0f} s"
        return EngineStatus(**base, error=reason)
    if info.health is not Health.OK and info.health is not Health.SLEEPING:
        return EngineStatus(**base, info=info)
    loaded: tuple[LoadedModel, ...] = ()
    metrics = None
    problems = []
    try:
        loaded = tuple(await asyncio.wait_for(engine.loaded_models(), timeout=deadline_s))
    except (EngineError, TimeoutError) as exc:
        problems.append(f"loaded models: {exc or 'timed out'}")
    if engine.capabilities.supports(Op.METRICS):
        try:
            metrics = await asyncio.wait_for(engine.metrics(), timeout=deadline_s)
        except (EngineError, TimeoutError) as exc:
            problems.append(f"metrics: {exc or 'timed out'}")
    return EngineStatus(**base, info=info, loaded=loaded, metrics=metrics,
                        error="; ".join(problems) or None)


async def poll_all(engines: Sequence[Engine], *, deadline_s: float = DEFAULT_DEADLINE_S) -> list[EngineStatus]:
    return list(await asyncio.gather(*(poll_engine(e, deadline_s=deadline_s) for e in engines)))
