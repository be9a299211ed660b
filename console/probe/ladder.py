"""The closed-loop ladder: N streams with no think time at each level, a warm-up round, then the measured requests.

At each level every stream first sends one warm-up request (not counted: it absorbs model loads, cache
allocation and connection set-up). Streams then take numbered tickets until the level's measured requests are
all issued; a stream whose tickets are gone keeps sending filler requests until the last measured request ends,
so every measured request ran under the full load. Fillers are cancelled then and never counted.

The ladder stops after two levels in a row fail the SLO, or when a level's error rate exceeds 10%. It can be
cancelled at any moment: completed levels are kept and `result.status` says "cancelled".
"""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from console.config import SLO
from console.engines.base import ChatMessage, ChatRequest, Engine
from console.errors import ConfigError
from console.probe.figures import LevelFigures, LevelTrace, summarise
from console.probe.overhead import OverheadMeter
from console.probe.prompts import build_prompt, prompt_tag
from console.probe.record import RequestRecord
from console.probe.request import measure
from console.probe.sampler import MetricsSampler
from console.probe.slo import Verdict, judge, verdict

DEFAULT_LEVELS = (1, 2, 4, 8, 16, 32)
STOP_AFTER_FAILING = 2
STOP_ERROR_RATE = 0.10
MAX_LEVEL = 4096
CONTINUOUS_USAGE_KINDS = ("vllm",)

GC_THRESHOLD_DURING_PROBE = 50_000  # measured: halves p99 client lag at 64 and 256 streams (docs/probe.md)

@dataclass(frozen=True)
class ProbeParams:
    levels: tuple[int, ...] = DEFAULT_LEVELS
    requests: int = 20  # measured per level; raised to 2 per stream at high levels
    max_tokens: int = 128
    prompt_tokens: int = 64
    warmup: bool = True
    timeout_s: float = 120.0  # a whole reply; a stalled stream becomes a "timeout" error
    temperature: float = 0.0
    seed: int = 1234
    ignore_eos: bool = False  # ask engines that support it (vLLM, llama.cpp, SGLang) for exactly max_tokens

    def __post_init__(self) -> None:
        if not self.levels:
            raise ConfigError("probe levels: give at least one concurrency level")
        if any(n < 1 or n > MAX_LEVEL for n in self.levels):
            raise ConfigError(f"probe levels must be between 1 and {MAX_LEVEL}, not {list(self.levels)}")
        if list(self.levels) != sorted(set(self.levels)):
            raise ConfigError(f"probe levels must rise without repeats, not {list(self.levels)}")
        if self.requests < 1 or self.max_tokens < 1 or self.prompt_tokens < 1:
            raise ConfigError("probe --requests, --max-tokens and --prompt-tokens must be at least 1")
        if self.timeout_s <= 0:
            raise ConfigError("probe timeout must be positive")

    def requests_for(self, level: int) -> int:
        return max(self.requests, 2 * level)

    @property
    def connections(self) -> int:
        """Connection pool the engine client needs: every stream in flight plus the metrics scraper."""
        return max(self.levels) + 4

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["levels"] = list(self.levels)
        return out


@dataclass(frozen=True)
class LevelProgress:
    concurrency: int
    phase: str  # "warmup" | "measure" | "done"
    done: int
    total: int
    errors: int


@dataclass
class ProbeResult:
    engine: str
    engine_kind: str
    model: str
    params: ProbeParams
    slo: SLO
    started_at: datetime
    status: str = "running"  # running | complete | cancelled | error
    finished_at: datetime | None = None
    levels: list[LevelFigures] = field(default_factory=list)
    records: dict[int, list[RequestRecord]] = field(default_factory=dict)  # measured requests per level
    verdict: Verdict | None = None


ProgressFn = Callable[[LevelProgress], None]
LevelFn = Callable[[LevelFigures], Awaitable[None]]


class Probe:
    def __init__(self, engine: Engine, model: str, params: ProbeParams | None = None, slo: SLO | None = None, *,
                 on_progress: ProgressFn | None = None, on_level: LevelFn | None = None) -> None:
        self.engine = engine
        self.model = model
        self.params = params or ProbeParams()
        self.slo = slo or SLO()
        self.on_progress = on_progress
        self.on_level = on_level
        self.result = ProbeResult(engine=engine.name, engine_kind=engine.kind, model=model, params=self.params,
                                  slo=self.slo, started_at=datetime.now(UTC))

    def _request(self, tag: str, index: int) -> ChatRequest:
        p = self.params
        extra: dict[str, Any] = {"ignore_eos": True} if p.ignore_eos else {}
        if self.engine.kind in CONTINUOUS_USAGE_KINDS:
            # Cumulative usage on every chunk gives each chunk's token count: per-token ITL, exact k1 for TPOT.
            extra["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
        return ChatRequest(
            model=self.model, messages=(ChatMessage("user", build_prompt(tag, index, p.prompt_tokens)),),
            temperature=p.temperature, max_tokens=p.max_tokens, seed=p.seed, extra=extra,
        )

    def _progress(self, level: int, phase: str, done: int, total: int, errors: int) -> None:
        if self.on_progress is not None:
            self.on_progress(LevelProgress(level, phase, done, total, errors))

    async def run(self) -> ProbeResult:
        result = self.result
        failing = 0
        stopped: str | None = None
        # A full collection pauses every stream at once and shows up as a fake stall in the figures. Objects made
        # before the run are frozen out of the collector and young collections made rarer; both are undone after.
        gc_threshold = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD_DURING_PROBE, *gc_threshold[1:])
        try:
            for level in self.params.levels:
                figures = await self.run_level(level)
                result.levels.append(figures)
                if self.on_level is not None:
                    await self.on_level(figures)
                failing = 0 if judge(figures, self.slo).passed else failing + 1
                if figures.error_rate > STOP_ERROR_RATE and level != self.params.levels[-1]:
                    stopped = f"stopped after c={level}: {figures.error_rate:.0%} of requests failed"
                    break
                if failing >= STOP_AFTER_FAILING and level != self.params.levels[-1]:
                    stopped = f"stopped after c={level}: {STOP_AFTER_FAILING} levels in a row failed the SLO"
                    break
            result.status = "complete"
        except asyncio.CancelledError:
            result.status = "cancelled"
            stopped = "cancelled"
            raise
        finally:
            gc.set_threshold(*gc_threshold)
            gc.unfreeze()
            result.finished_at = datetime.now(UTC)
            result.verdict = verdict(result.levels, self.slo, engine_kind=self.engine.kind, stopped=stopped)
        return result

    async def run_level(self, level: int) -> LevelFigures:
        total = self.params.requests_for(level)
        timeout = self.params.timeout_s
        trace = LevelTrace()
        meter = OverheadMeter()
        measured: list[RequestRecord] = []
        errors = 0
        tickets = itertools.count()
        all_done = asyncio.Event()

        async def stream(sid: int) -> None:
            nonlocal errors
            if self.params.warmup:
                tag = prompt_tag(level, sid, warmup=True)
                await measure(self.engine, self._request(tag, sid), index=sid, tag=tag, warmup=True,
                              timeout_s=timeout, trace=trace)
            while True:
                i = next(tickets)
                if i >= total:
                    break
                if i == 0:
                    self._progress(level, "measure", 0, total, 0)
                tag = prompt_tag(level, i)
                rec = await measure(self.engine, self._request(tag, i), index=i, tag=tag, warmup=False,
                                    timeout_s=timeout, meter=meter, trace=trace)
                measured.append(rec)
                errors += 0 if rec.ok else 1
                self._progress(level, "measure", len(measured), total, errors)
                if len(measured) == total:
                    all_done.set()
            # Keep this stream's share of the load on until the last measured request is done. A failed filler
            # ends the stream's fillers, so a refusing engine is not hammered in a tight loop.
            for f in itertools.count():
                tag = prompt_tag(level, f * level + sid, filler=True)
                rec = await measure(self.engine, self._request(tag, sid), index=-1, tag=tag, warmup=True,
                                    timeout_s=timeout, trace=trace)
                if not rec.ok:
                    return

        self._progress(level, "warmup", 0, total, 0)
        async with MetricsSampler(self.engine) as sampler, meter:
            tasks = {asyncio.create_task(stream(s), name=f"probe-c{level}-s{s}") for s in range(level)}
            waiter = asyncio.create_task(all_done.wait(), name=f"probe-c{level}-done")
            try:
                pending: set[asyncio.Task[Any]] = {waiter, *tasks}
                while not all_done.is_set():
                    finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for t in finished:
                        if not t.cancelled() and t.exception() is not None:
                            raise t.exception()  # type: ignore[misc]  # a bug in the probe, not an engine failure
            finally:
                for t in (waiter, *tasks):
                    t.cancel()
                await asyncio.gather(waiter, *tasks, return_exceptions=True)
        measured.sort(key=lambda r: r.index)
        self.result.records[level] = measured
        self._progress(level, "done", len(measured), total, errors)
        return summarise(level, measured, trace, overhead=meter.result(), gauges=sampler.gauges(),
                         samples=len(sampler.snapshots))


def parse_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise ConfigError(f"--levels wants numbers separated by commas, like 1,2,4,8; not {text!r}") from None
    return levels
