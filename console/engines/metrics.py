"""Prometheus /metrics text → `MetricsSnapshot`, with a name table per engine kind.

Engines rename metrics between releases (vLLM `gpu_cache_usage_perc` → `kv_cache_usage_perc`), so each field
lists candidate sample names, first match wins. Counts (requests, tokens) are summed over label sets (one per
engine index or model); ratios (KV-cache use) are averaged, because every rank reports the same pool.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from console.engines.base import MetricsSnapshot
from console.errors import BadResponseError


@dataclass(frozen=True)
class NameTable:
    """Candidate sample names (as written on the wire, `_total` included) for each snapshot field."""

    running: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    kv_cache_usage: tuple[str, ...] = ()
    prompt_tokens_total: tuple[str, ...] = ()
    generation_tokens_total: tuple[str, ...] = ()
    preemptions_total: tuple[str, ...] = ()
    # Prompt (prefix) cache: tokens found in the cache, and tokens looked up (hits + misses). llama.cpp counts the
    # misses alone (its prompt_tokens_total leaves cached tokens out, seen on the lab's llama-server: 46 cached +
    # 48 processed), so `prompt_cache_misses_total` is added to the hits to make the lookups.
    prompt_cache_hits_total: tuple[str, ...] = ()
    prompt_cache_queries_total: tuple[str, ...] = ()
    prompt_cache_misses_total: tuple[str, ...] = ()
    prompt_cache_hit_ratio: tuple[str, ...] = ()  # an engine that reports the ratio itself (SGLang)


TABLES: Mapping[str, NameTable] = {
    "vllm": NameTable(
        running=("vllm:num_requests_running",),
        waiting=("vllm:num_requests_waiting",),
        kv_cache_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        prompt_tokens_total=("vllm:prompt_tokens_total",),
        generation_tokens_total=("vllm:generation_tokens_total",),
        preemptions_total=("vllm:num_preemptions_total",),
        prompt_cache_hits_total=("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
        prompt_cache_queries_total=("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
        prompt_cache_hit_ratio=("vllm:gpu_prefix_cache_hit_rate",),  # V0's gauge
    ),
    "llamacpp": NameTable(
        running=("llamacpp:requests_processing",),
        waiting=("llamacpp:requests_deferred",),
        kv_cache_usage=("llamacpp:kv_cache_usage_ratio",),  # older builds only
        prompt_tokens_total=("llamacpp:prompt_tokens_total",),
        generation_tokens_total=("llamacpp:tokens_predicted_total",),
        prompt_cache_hits_total=("llamacpp:prompt_tokens_cached_total",),
        prompt_cache_misses_total=("llamacpp:prompt_tokens_total",),
    ),
    "sglang": NameTable(
        running=("sglang:num_running_reqs",),
        waiting=("sglang:num_queue_reqs",),
        kv_cache_usage=("sglang:token_usage",),
        prompt_tokens_total=("sglang:prompt_tokens_total",),
        generation_tokens_total=("sglang:generation_tokens_total",),
        preemptions_total=("sglang:num_retracted_reqs_total",),
        prompt_cache_hit_ratio=("sglang:cache_hit_rate",),
    ),
    "tgi": NameTable(
        running=("tgi_batch_current_size",),
        waiting=("tgi_queue_size",),
        # TGI has no token counters; the sums of its per-request length histograms are the same totals.
        prompt_tokens_total=("tgi_request_input_length_sum",),
        generation_tokens_total=("tgi_request_generated_tokens_sum",),
    ),
}

_FIELDS = ("running", "waiting", "kv_cache_usage", "prompt_tokens_total", "generation_tokens_total",
           "preemptions_total", "prompt_cache_hits_total", "prompt_cache_queries_total", "prompt_cache_hit_ratio")
_RATIO_FIELDS = frozenset({"kv_cache_usage", "prompt_cache_hit_ratio"})
VLLM_SLEEP_STATE = "vllm:engine_sleep_state"


def _sample_key(name: str, labels: Mapping[str, str]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _parse_samples(text: str, engine: str) -> list[tuple[str, dict[str, str], float]]:
    # Imported here: ~0.15 s of start-up that only an engine with /metrics needs, once its metrics are read.
    from prometheus_client.parser import text_string_to_metric_families

    try:
        return [
            (s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        first = next((ln for ln in text.splitlines() if ln.strip()), "")[:80]
        raise BadResponseError(f"sent /metrics that is not Prometheus text ({exc}); first line: {first!r}",
                               engine=engine) from None


def _combine(values: list[float], *, ratio: bool) -> float | None:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return None
    return sum(values) / len(values) if ratio else sum(values)


def _vllm_sleeping(samples: list[tuple[str, dict[str, str], float]]) -> bool | None:
    """vLLM reports one gauge per `sleep_state` label; `awake` = 0 (or a level = 1) means asleep."""
    states = [(labels.get("sleep_state"), v) for name, labels, v in samples if name == VLLM_SLEEP_STATE]
    if not states:
        return None
    return any((state == "awake" and v == 0) or (state != "awake" and v >= 1) for state, v in states)


def parse_metrics(text: str, kind: str, *, engine: str = "",
                  labels: Mapping[str, str] | None = None) -> MetricsSnapshot:
    """Parse Prometheus text for an engine of `kind`. Unknown kinds keep the raw samples only.

    `labels` are added to every raw sample key (a llama.cpp router scrapes each model separately).
    Raises BadResponseError when the text is not Prometheus exposition format.
    """
    samples = _parse_samples(text, engine)
    if labels:
        samples = [(name, {**lab, **labels}, value) for name, lab, value in samples]
    by_name: dict[str, list[float]] = {}
    for name, _labels, value in samples:
        by_name.setdefault(name, []).append(value)
    table = TABLES.get(kind, NameTable())
    fields: dict[str, float | None] = {}
    for field_name in _FIELDS:
        candidates: tuple[str, ...] = getattr(table, field_name)
        found = next((by_name[c] for c in candidates if c in by_name), None)
        fields[field_name] = _combine(found, ratio=field_name in _RATIO_FIELDS) if found else None
    misses = next((by_name[c] for c in table.prompt_cache_misses_total if c in by_name), None)
    if fields["prompt_cache_queries_total"] is None and misses and fields["prompt_cache_hits_total"] is not None:
        fields["prompt_cache_queries_total"] = fields["prompt_cache_hits_total"] + (_combine(misses, ratio=False) or 0)
    return MetricsSnapshot(
        taken_at=time.time(),
        sleeping=_vllm_sleeping(samples) if kind == "vllm" else None,
        raw={_sample_key(name, labels): value for name, labels, value in samples},
        **fields,
    )


def combine_snapshots(snapshots: list[MetricsSnapshot]) -> MetricsSnapshot:
    """One snapshot from several scrapes of one engine (a llama.cpp router's models): counts add up, ratios
    average, raw samples are merged (their keys should already differ by a label)."""
    fields: dict[str, float | None] = {}
    for field_name in _FIELDS:
        values = [v for s in snapshots if (v := getattr(s, field_name)) is not None]
        fields[field_name] = _combine(values, ratio=field_name in _RATIO_FIELDS)
    sleeping = [s.sleeping for s in snapshots if s.sleeping is not None]
    raw: dict[str, float] = {}
    for s in snapshots:
        raw.update(s.raw)
    return MetricsSnapshot(taken_at=time.time(), sleeping=all(sleeping) if sleeping else None, raw=raw, **fields)
