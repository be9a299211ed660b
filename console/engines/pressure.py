"""Pressure: how hard an engine is working, with the same names for every kind.

API (for the dashboard, `enginedeck ps --json`, `findings`, the exporter and the alert rules):

    pressure_of(status: EngineStatus, in_flight: InFlight | None = None) -> Pressure
    Pressure.figures: tuple[Figure, ...]       one per name of FIGURES, always all of them, in that order
    Pressure.get(name) -> Figure
    Pressure.as_json() -> {name: {"value": float | None, "source": str | None, "missing": str | None}}
    Figure.value                               None exactly when `missing` says why (never a silent null)

FIGURES, each a number with one definition for every engine:
- `running`: requests being generated now;
- `waiting`: requests queued for a slot or for KV-cache room;
- `kv_cache_pct`: the engine's KV cache in use, percent (0-100) of its pool;
- `slots_busy`, `slots_total`: parallel sequence slots processing now / configured (llama.cpp `-np`);
- `prompt_cache_hit_pct`: prompt tokens served from the prefix cache, percent of prompt tokens looked up in it,
  since the engine started (vLLM, llama.cpp: its counters; SGLang: its own `cache_hit_rate` gauge).
Each figure carries its `source` (the metric, route or field it came from). A figure an engine does not expose
carries `missing`: why, in words a person can act on (a flag to add, or "this engine does not report it").
Nothing here does I/O: the poll (console/engines/poll.py) reads the engine, this names what it read.

Where the engine gives no `running`/`waiting` (Ollama, LM Studio) and a configured gateway fronts it, the
gateway's count of requests in flight stands in (`InFlight`, read by console/gateway_feed.py), its source
`gateway NAME`: `running` the requests that have had their first byte, `waiting` those that have not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from console.engines.poll import EngineStatus

FIGURES = ("running", "waiting", "kv_cache_pct", "slots_busy", "slots_total", "prompt_cache_hit_pct")


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | None
    source: str | None = None  # where the value came from (a metric name, a route and field)
    missing: str | None = None  # why there is no value

    def as_json(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source, "missing": self.missing}


@dataclass(frozen=True)
class InFlight:
    """Requests a gateway in front of the engine has started and not finished: `waiting` have had no first byte
    yet, `running` have (the two never overlap, like an engine's own running and waiting)."""

    running: int
    waiting: int
    source: str  # "gateway NAME" (names joined when several gateways front one engine)


@dataclass(frozen=True)
class Pressure:
    engine: str
    kind: str
    figures: tuple[Figure, ...]

    def get(self, name: str) -> Figure:
        return next(f for f in self.figures if f.name == name)

    def value(self, name: str) -> float | None:
        return self.get(name).value

    def as_json(self) -> dict[str, dict[str, Any]]:
        return {f.name: f.as_json() for f in self.figures}


# Where each kind's figures come from, and why each absent one is absent. The metric names are those of
# console/engines/metrics.py's tables (the first that an engine sends wins).
_METRIC_SOURCES: Mapping[str, Mapping[str, str]] = {
    "vllm": {"running": "vllm:num_requests_running", "waiting": "vllm:num_requests_waiting",
             "kv_cache_pct": "vllm:kv_cache_usage_perc",
             "prompt_cache_hit_pct": "vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total"},
    "llamacpp": {"running": "llamacpp:requests_processing", "waiting": "llamacpp:requests_deferred",
                 "kv_cache_pct": "llamacpp:kv_cache_usage_ratio",
                 "prompt_cache_hit_pct": "llamacpp:prompt_tokens_cached_total / (cached + prompt_tokens_total)"},
    "sglang": {"running": "sglang:num_running_reqs", "waiting": "sglang:num_queue_reqs",
               "kv_cache_pct": "sglang:token_usage", "prompt_cache_hit_pct": "sglang:cache_hit_rate"},
    "tgi": {"running": "tgi_batch_current_size", "waiting": "tgi_queue_size"},
}
_NOT_REPORTED: Mapping[str, Mapping[str, str]] = {
    "ollama": {
        "running": "Ollama reports no request counts (no /metrics); a gateway in front of it can count them",
        "waiting": "Ollama reports no queue length (no /metrics); a gateway in front of it can count them",
        "kv_cache_pct": "Ollama reports no KV-cache use; /api/ps gives only the model's total and VRAM size",
        "slots": "Ollama does not report its parallel slots (OLLAMA_NUM_PARALLEL is not in its API)",
        "prompt_cache_hit_pct": "Ollama reports no prompt-cache counters",
    },
    "lmstudio": {
        "running": "LM Studio has no /metrics and reports no request counts",
        "waiting": "LM Studio has no /metrics and reports no queue length",
        "kv_cache_pct": "LM Studio reports no KV-cache use",
        "slots": "LM Studio reports its parallel setting per loaded instance, not busy slots",
        "prompt_cache_hit_pct": "LM Studio reports no prompt-cache counters",
    },
    "vllm": {"slots": "vLLM schedules requests into one batch; it has no fixed slots (see running/waiting)"},
    "sglang": {"slots": "SGLang schedules requests into one batch; it has no fixed slots (see running/waiting)"},
    "tgi": {"slots": "TGI batches requests continuously; it has no fixed slots (see running/waiting)",
            "kv_cache_pct": "TGI's /metrics has no KV-cache use",
            "prompt_cache_hit_pct": "TGI's /metrics has no prompt-cache counters"},
    "llamacpp": {"kv_cache_pct": "this llama-server build does not export KV-cache use (only older builds had "
                                 "llamacpp:kv_cache_usage_ratio); see slots_busy"},
}


def _why_no_metrics(status: EngineStatus) -> str:
    if status.info is None and status.error:
        return f"the engine did not answer: {status.error or 'down'}"
    if status.metrics_error:
        return f"no /metrics: {status.metrics_error}"
    return "/metrics was not read in this poll"


def pressure_of(status: EngineStatus, in_flight: InFlight | None = None) -> Pressure:
    """The six figures of one engine's poll, each with its source or the reason it is missing; running and
    waiting counted by a gateway in front (`in_flight`) where the engine gives none."""
    kind, m = status.kind, status.metrics
    sources = _METRIC_SOURCES.get(kind, {})
    reasons = _NOT_REPORTED.get(kind, {})
    out: list[Figure] = []

    def from_metric(name: str, value: float | None, scale: float = 1.0) -> Figure:
        if name not in sources:  # this kind does not export it at all
            return Figure(name, None, missing=reasons.get(name) or f"{kind} does not report {name.replace('_', ' ')}")
        if m is None:
            return Figure(name, None, missing=_why_no_metrics(status))
        if value is None:
            return Figure(name, None, missing=reasons.get(name)
                          or f"{kind}'s /metrics did not include {sources[name]}")
        return Figure(name, round(value * scale, 3), source=sources[name])

    for name, value in (("running", m.running if m else None), ("waiting", m.waiting if m else None)):
        figure = from_metric(name, value)
        if figure.value is None and in_flight is not None:
            figure = Figure(name, float(getattr(in_flight, name)), source=in_flight.source)
        out.append(figure)
    out.append(from_metric("kv_cache_pct", m.kv_cache_usage if m else None, 100.0))
    out.extend(_slot_figures(status, reasons))
    out.append(from_metric("prompt_cache_hit_pct", _hit_ratio(m) if m else None, 100.0))
    return Pressure(status.name, kind, tuple(out))


def _hit_ratio(m: Any) -> float | None:
    if m.prompt_cache_hit_ratio is not None:
        return float(m.prompt_cache_hit_ratio)
    if m.prompt_cache_hits_total is not None and m.prompt_cache_queries_total:
        return float(m.prompt_cache_hits_total) / float(m.prompt_cache_queries_total)
    return None


def _slot_figures(status: EngineStatus, reasons: Mapping[str, str]) -> list[Figure]:
    if status.slots is not None:
        busy = sum(1 for s in status.slots if s.busy)
        return [Figure("slots_busy", float(busy), source="GET /slots is_processing"),
                Figure("slots_total", float(len(status.slots)), source="GET /slots")]
    why = (f"/slots could not be read: {status.slots_error}" if status.slots_error
           else reasons.get("slots") or f"{status.kind} has no slots enginedeck can read")
    if status.info is None and status.error:
        why = f"the engine did not answer: {status.error or 'down'}"
    return [Figure("slots_busy", None, missing=why), Figure("slots_total", None, missing=why)]
