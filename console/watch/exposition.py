"""A `Snapshot` as Prometheus metric families, with every label's values bounded (docs/exporter.md lists each
metric, its labels and its bound).

Model names and engine names come from engines and the config: a box with a thousand models must not make a
thousand series per metric in every scraper downstream. Each label with values from outside has a named bound
per scrape; past it, the values with the least weight (a model's VRAM, then its name) are folded into one value,
`other` (sums where the figure adds up: size, VRAM, counts; left out where it does not: context, a probe's
concurrency), and `enginedeck_label_values_folded{label}` says how many were folded in this scrape
(`..._folded_total` since the exporter started).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from console import __version__
from console.engines.base import Health
from console.logs.sanitize import one_line
from console.watch.collect import Snapshot, gpu_energy_joules

PREFIX = "enginedeck"
OTHER = "other"
# The bounds: how many distinct values a label may take in one scrape (`other` included).
MAX_ENGINES = 64
MAX_MODELS = 100
MAX_GPUS = 64
MAX_FINDING_KINDS = 32
MAX_LABEL_CHARS = 120  # a longer value is cut (an engine's model name can be any length)
PARTS = ("engines", "gpu", "probes", "findings", "traffic")  # of a collection (console/watch/collect.py)
BOUNDS = {"engine": MAX_ENGINES, "model": MAX_MODELS, "gpu": MAX_GPUS, "kind": MAX_FINDING_KINDS}


def label(text: str) -> str:
    """A label value from untrusted text: one line, no control characters, no secret, bounded."""
    return one_line(text, MAX_LABEL_CHARS) or "-"


@dataclass
class Folds:
    """What was folded into `other`, per label, in one scrape; and in total since start (kept by the caller)."""

    now: dict[str, int] = field(default_factory=dict)

    def keep(self, name: str, values: Iterable[str], weight: Mapping[str, float] | None = None) -> set[str]:
        """The values of label `name` that keep their own series: the heaviest (then first by name) up to its
        bound, less one for `other` when some are folded."""
        unique = sorted(set(values), key=lambda v: (-(weight or {}).get(v, 0.0), v))
        bound = BOUNDS[name]
        if len(unique) <= bound:
            self.now.setdefault(name, 0)
            return set(unique)
        kept = set(unique[:bound - 1])
        self.now[name] = self.now.get(name, 0) + len(unique) - len(kept)
        return kept


def _g(name: str, doc: str, labels: Sequence[str] = (), unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels), unit=unit)


def _c(name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))


def _set(family: GaugeMetricFamily | CounterMetricFamily, labels: Sequence[str], value: float | None) -> None:
    if value is not None and not math.isnan(value):
        family.add_metric(list(labels), float(value))


def families(snap: Snapshot, *, host: str, folded_total: dict[str, int]) -> Iterator[Metric]:
    """Every metric family of one snapshot. `folded_total` (label -> count) is updated with this scrape's folds."""
    folds = Folds()
    info = _g("exporter_info", "The exporter: the host name it reports and enginedeck's version",
              ("host", "version"))
    info.add_metric([label(host), __version__], 1)
    yield info
    took = _g("scrape_collect_seconds", "How long this scrape's collection took")
    took.add_metric([], snap.duration_s)
    yield took
    late = _g("scrape_part_late", "1 when a part (engines, gpu, probes, findings, traffic) missed the deadline",
              ("part",))
    failed = _g("scrape_part_failed", "1 when a part failed in this scrape (`enginedeck fleet` on the host says why)",
                ("part",))
    failed_parts = {error.partition(":")[0] for error in snap.errors}
    for part in PARTS:
        late.add_metric([part], 1.0 if part in snap.late else 0.0)
        failed.add_metric([part], 1.0 if part in failed_parts else 0.0)
    yield late
    yield failed

    engines = _engine_names(snap, folds)
    yield from _engines(snap, folds, engines)
    yield from _gpus(snap, folds)
    yield from _findings(snap, folds, engines)
    yield from _traffic(snap, folds, engines)
    yield from _probes(snap, folds, engines)

    now = _g("label_values_folded", f"Label values folded into {OTHER!r} in this scrape (over the bound)",
             ("label",))
    total = _c("label_values_folded", f"Label values folded into {OTHER!r}, summed over scrapes since start",
               ("label",))
    for name in BOUNDS:
        count = folds.now.get(name, 0)
        folded_total[name] = folded_total.get(name, 0) + count
        now.add_metric([name], count)
        total.add_metric([name], folded_total[name])
    yield now
    yield total


def _engine_names(snap: Snapshot, folds: Folds) -> dict[str, str]:
    """Engine name -> its label value (its own, or `other`)."""
    names = {s.name: label(s.name) for s in snap.engines}
    kept = folds.keep("engine", names.values())
    return {name: value if value in kept else OTHER for name, value in names.items()}


def _engines(snap: Snapshot, folds: Folds, engines: Mapping[str, str]) -> Iterator[Metric]:
    up = _g("engine_up", "1 when the engine answered its health check with ok or sleeping (for `other`: how many "
            "of the folded engines did)", ("engine", "kind"))
    info = _g("engine_info", "The engine's kind, version and health (value 1)", ("engine", "kind", "version", "health"))
    latency = _g("engine_poll_latency_seconds", "The engine's answer time to its last health check", ("engine",))
    loaded = _g("engine_loaded_models", "How many models the engine has loaded (never folded)", ("engine",))
    running = _g("engine_requests_running", "Requests the engine is running now", ("engine",))
    waiting = _g("engine_requests_waiting", "Requests waiting in the engine's queue", ("engine",))
    kv = _g("engine_kv_cache_usage_ratio", "The engine's KV-cache use, 0 to 1", ("engine",))
    prompt = _c("engine_prompt_tokens", "Prompt tokens the engine has processed (its own counter)", ("engine",))
    gen = _c("engine_generation_tokens", "Tokens the engine has generated (its own counter)", ("engine",))
    by_engine: dict[str, list[float]] = {}  # folded engines add up
    for s in snap.engines:
        e = engines[s.name]
        ok = s.health in (Health.OK, Health.SLEEPING)
        if e != OTHER:
            up.add_metric([e, label(s.kind)], 1.0 if ok else 0.0)
            version = label(s.info.version or "") if s.info and s.info.version else ""
            info.add_metric([e, label(s.kind), version, s.health.value], 1)
            if s.info is not None and s.info.latency_ms is not None:
                latency.add_metric([e], s.info.latency_ms / 1000)
        p = snap.pressure.get(s.name)
        m = s.metrics
        sums = by_engine.setdefault(e, [0.0] * 6)
        for i, v in enumerate((len(s.loaded), p.running if p else None, p.waiting if p else None,
                               m.prompt_tokens_total if m else None, m.generation_tokens_total if m else None,
                               1.0 if ok else 0.0)):
            sums[i] += v or 0.0
        if e != OTHER and p is not None:
            _set(running, [e], p.running)
            _set(waiting, [e], p.waiting)
            _set(kv, [e], p.kv_cache_usage)
        if e != OTHER and m is not None:
            _set(prompt, [e], m.prompt_tokens_total)
            _set(gen, [e], m.generation_tokens_total)
    for e, sums in by_engine.items():
        loaded.add_metric([e], sums[0])
        if e == OTHER:
            up.add_metric([e, OTHER], sums[5])  # how many of the folded engines are up
            running.add_metric([e], sums[1])
            waiting.add_metric([e], sums[2])
            prompt.add_metric([e], sums[3])
            gen.add_metric([e], sums[4])
    yield from (up, info, latency, loaded, running, waiting, kv, prompt, gen)
    yield from _models(snap, folds, engines)


def _models(snap: Snapshot, folds: Folds, engines: Mapping[str, str]) -> Iterator[Metric]:
    weight: dict[str, float] = {}
    for s in snap.engines:
        for m in s.loaded:
            name = label(m.name)
            weight[name] = max(weight.get(name, 0.0), float(m.size_vram or m.size or 0))
    kept = folds.keep("model", weight, weight)
    loaded = _g("model_loaded", "Models loaded now (value: how many, 1 unless folded)", ("engine", "model"))
    size = _g("model_size_bytes", "A loaded model's resident size", ("engine", "model"))
    vram = _g("model_vram_bytes", "The part of a loaded model in GPU memory", ("engine", "model"))
    ctx = _g("model_context_tokens", "A loaded model's context length (not for `other`)", ("engine", "model"))
    rows: dict[tuple[str, str], list[float | None]] = {}
    for s in snap.engines:
        for m in s.loaded:
            name = label(m.name)
            key = (engines[s.name], name if name in kept else OTHER)
            row = rows.setdefault(key, [0.0, None, None, None])
            row[0] = (row[0] or 0.0) + 1
            for i, v in ((1, m.size), (2, m.size_vram)):
                if v is not None:
                    row[i] = (row[i] or 0.0) + v
            if key[1] != OTHER and m.context_length is not None:
                row[3] = float(m.context_length)
    for key, (count, sz, vr, cx) in rows.items():
        _set(loaded, key, count)
        _set(size, key, sz)
        _set(vram, key, vr)
        _set(ctx, key, cx)
    yield from (loaded, size, vram, ctx)


def _gpus(snap: Snapshot, folds: Folds) -> Iterator[Metric]:
    available = _g("gpu_telemetry_available", "1 when NVML answered in this scrape", ())
    gpus = snap.gpus
    available.add_metric([], 1.0 if gpus is not None and gpus.available else 0.0)
    yield available
    samples = gpus.gpus if gpus is not None else ()
    kept = folds.keep("gpu", (str(g.index) for g in samples))
    names = ("gpu", "uuid", "name")
    used = _g("gpu_memory_used_bytes", "GPU memory in use", names)
    total = _g("gpu_memory_total_bytes", "GPU memory in all", names)
    util = _g("gpu_utilization_ratio", "GPU busy time over NVML's last sample period, 0 to 1", names)
    temp = _g("gpu_temperature_celsius", "GPU core temperature", names)
    power = _g("gpu_power_watts", "GPU power draw now", names)
    limit = _g("gpu_power_limit_watts", "GPU enforced power limit", names)
    energy = _c("gpu_energy_joules", "GPU energy since the driver loaded (NVML total-energy counter)", names)
    for g in samples:
        if str(g.index) not in kept:
            continue
        key = [str(g.index), label(g.uuid), label(g.name)]
        _set(used, key, g.mem_used)
        _set(total, key, g.mem_total)
        _set(util, key, None if g.util_pct is None else g.util_pct / 100)
        _set(temp, key, g.temp_c)
        _set(power, key, g.power_w)
        _set(limit, key, g.power_limit_w)
        _set(energy, key, gpu_energy_joules(g))
    yield from (used, total, util, temp, power, limit, energy)


def _findings(snap: Snapshot, folds: Folds, engines: Mapping[str, str]) -> Iterator[Metric]:
    """Engine labels are the polled engines' (a finding about an engine not polled counts under `other`)."""
    kinds = folds.keep("kind", (label(f.kind) for f in snap.findings))
    counts: dict[tuple[str, str], int] = {}
    for f in snap.findings:
        kind = label(f.kind)
        key = (engines.get(f.engine, OTHER) if f.engine else "", kind if kind in kinds else OTHER)
        counts[key] = counts.get(key, 0) + 1
    family = _g("findings", "Findings now (what the engine does not say), by engine and kind", ("engine", "kind"))
    for key, count in counts.items():
        family.add_metric(list(key), count)
    yield family


def _traffic(snap: Snapshot, folds: Folds, engines: Mapping[str, str]) -> Iterator[Metric]:
    names = ("engine", "model")
    requests = _c("gateway_requests", "Requests through the gateway", names)
    errors = _c("gateway_errors", "Requests through the gateway that failed", names)
    t_in = _c("gateway_tokens_in", "Prompt tokens through the gateway (the engine's counts)", names)
    t_out = _c("gateway_tokens_out", "Generated tokens through the gateway (the engine's counts)", names)
    ttft = _g("gateway_ttft_p90_seconds", "Time to first token, 90th percentile, over the gateway's window", names)
    weight: dict[str, float] = {}
    for t in snap.traffic:
        weight[label(t.model)] = weight.get(label(t.model), 0.0) + t.requests
    kept = folds.keep("model", weight, weight)
    rows: dict[tuple[str, str], list[float]] = {}
    slowest: dict[tuple[str, str], float] = {}  # two gateways in front of one engine: the worse p90
    for t in snap.traffic:
        name = label(t.model)
        key = (engines.get(t.engine, OTHER), name if name in kept else OTHER)
        row = rows.setdefault(key, [0.0, 0.0, 0.0, 0.0])
        for i, v in enumerate((t.requests, t.errors, t.tokens_in, t.tokens_out)):
            row[i] += v
        if OTHER not in key and t.ttft_p90_s is not None:
            slowest[key] = max(slowest.get(key, 0.0), t.ttft_p90_s)
    for key, seconds in slowest.items():
        _set(ttft, key, seconds)
    for key, row in rows.items():
        for family, value in zip((requests, errors, t_in, t_out), row, strict=True):
            family.add_metric(list(key), value)
    yield from (requests, errors, t_in, t_out, ttft)


def _probes(snap: Snapshot, folds: Folds, engines: Mapping[str, str]) -> Iterator[Metric]:
    names = ("engine", "model")
    usable = _g("probe_max_usable_concurrency", "The newest probe's highest concurrency within the SLO", names)
    knee = _g("probe_knee_concurrency", "The newest probe's knee (where throughput stops growing)", names)
    when = _g("probe_finished_timestamp_seconds", "When the newest probe of this engine and model finished", names)
    by_age = sorted(snap.probes, key=lambda p: p.finished_at)
    newest = {(engines.get(p.engine, OTHER), label(p.model)): p for p in by_age}
    kept = folds.keep("model", {m for _, m in newest}, {m: p.finished_at for (_, m), p in newest.items()})
    for (engine, model), p in newest.items():
        if model not in kept:
            continue
        _set(usable, (engine, model), p.max_usable_concurrency)
        _set(knee, (engine, model), p.knee)
        _set(when, (engine, model), p.finished_at)
    yield from (usable, knee, when)
