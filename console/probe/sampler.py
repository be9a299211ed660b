"""Engine-side figures sampled in the background while a level runs (vLLM / llama.cpp / SGLang /metrics).

The engine's own gauges say what the client cannot see: how many requests it runs at once, how many wait, how
full the KV cache is. A sampler that fails (no /metrics, a slow scrape) only loses its figures, never the level.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from console.engines.base import Engine, MetricsSnapshot, Op
from console.errors import EngineError

SAMPLE_INTERVAL_S = 0.5
MAX_SNAPSHOTS = 2_000  # ~17 minutes at the default interval; a level never runs that long


@dataclass(frozen=True)
class EngineSide:
    samples: int = 0
    running_mean: float | None = None
    running_max: float | None = None
    waiting_mean: float | None = None
    waiting_max: float | None = None
    kv_cache_max: float | None = None  # 0..1
    # From per-reply engine timings (Ollama final stats, llama.cpp timings):
    server_decode_tok_s_p50: float | None = None
    queue_ms_p50: float | None = None  # Ollama: total − load − prompt eval − eval
    queue_ms_p90: float | None = None
    cold_loads: int = 0  # measured replies whose load time says the model was (re)loaded


class MetricsSampler:
    """`async with MetricsSampler(engine):` scrapes `engine.metrics()` every interval until the block ends."""

    def __init__(self, engine: Engine, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.snapshots: list[MetricsSnapshot] = []
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.engine.capabilities.supports(Op.METRICS)

    async def _run(self) -> None:
        while len(self.snapshots) < MAX_SNAPSHOTS:
            try:
                self.snapshots.append(await asyncio.wait_for(self.engine.metrics(), timeout=self.interval_s * 4))
            except (EngineError, TimeoutError) as exc:
                self.error = str(exc) or "metrics scrape timed out"
                return
            await asyncio.sleep(self.interval_s)

    async def __aenter__(self) -> MetricsSampler:
        if self.enabled:
            self._task = asyncio.create_task(self._run(), name="probe-metrics-sampler")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def gauges(self) -> dict[str, float | None]:
        def series(attr: str) -> list[float]:
            return [v for s in self.snapshots if (v := getattr(s, attr)) is not None]

        out: dict[str, float | None] = {}
        for attr, name in (("running", "running"), ("waiting", "waiting")):
            values = series(attr)
            out[f"{name}_mean"] = sum(values) / len(values) if values else None
            out[f"{name}_max"] = max(values) if values else None
        kv = series("kv_cache_usage")
        out["kv_cache_max"] = max(kv) if kv else None
        return out
