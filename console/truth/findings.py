"""Findings: what an engine or a GPU does not say, shown by two numbers that disagree.

Every detector here is pure: it reads `Inputs` (what console/truth/gather.py collected: polls, NVML, processes,
the store) and returns `Finding`s. Nothing here does I/O, so each kind is tested by building its situation.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from console.truth.args import ProcessArgs, parse_args

if TYPE_CHECKING:
    from console.engines.poll import EngineStatus
    from console.telemetry.gpu import GpuSnapshot
    from console.telemetry.processes import EngineProcess

# The kinds, in the order they are listed. docs/truth.md says what each means and what to do.
KINDS = ("partly_on_cpu", "vram_mismatch", "context_short", "reload_loop", "gpu_throttled", "gpu_ecc", "gpu_xid",
         "exposed_without_key")
VRAM_TOLERANCE = 0.10  # engine-reported VRAM may differ from NVML's per-process figure by this much
RELOADS = 3  # loads of one model ...
RELOAD_WINDOW_S = 600.0  # ... within this many seconds make a loop
# Decoding is bound by memory bandwidth: layers on the CPU run at host DRAM speed. A rule of thumb (server DRAM
# against GPU HBM/GDDR) for the expected slowdown: a CPU layer takes this many times as long as a GPU layer.
CPU_LAYER_COST = 10.0


@dataclass(frozen=True)
class Evidence:
    """One of the two numbers that disagree, and where it came from."""

    label: str
    value: float | int | str | None
    source: str

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "value": self.value, "source": self.source}


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: str  # "warn" or "fail"
    title: str  # one line, for the panel and the table
    evidence: tuple[Evidence, Evidence]
    action: str  # what to do
    since: float  # epoch seconds: when this was first seen (see since_source)
    since_source: str  # "first seen by this process", "first load in the window", "NVML event"
    engine: str | None = None
    model: str | None = None
    gpu: int | None = None
    notes: tuple[str, ...] = ()  # more context: the expected slowdown, a probe figure

    @property
    def key(self) -> str:
        """Stable across polls: the same situation keeps its `since`."""
        return f"{self.kind}:{self.engine or ''}:{self.model or ''}:{'' if self.gpu is None else self.gpu}"

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "title": self.title, "engine": self.engine,
                "model": self.model, "gpu": self.gpu, "evidence": [e.as_json() for e in self.evidence],
                "since": self.since, "since_source": self.since_source, "action": self.action,
                "notes": list(self.notes)}


@dataclass(frozen=True)
class LoadSeen:
    """A model that became resident: from the store's model events or from two polls in a row."""

    ts: float
    engine: str
    model: str
    source: str  # "model events" / "polls"


@dataclass(frozen=True)
class AskedContext:
    tokens: int
    source: str  # "num_ctx of the chat turn at 2026-12-07 23:10 (enginedeck history)"


@dataclass(frozen=True)
class ProbeRate:
    tok_s: float  # output tokens per second of one stream at concurrency 1
    source: str  # "probe run #12 (2026-12-07 22:00), level 1"


@dataclass(frozen=True)
class Inputs:
    statuses: Sequence[EngineStatus] = ()
    gpu: GpuSnapshot | None = None
    processes: Sequence[EngineProcess] = ()
    owners: Mapping[int, str] = field(default_factory=dict)  # GPU process pid -> engine name
    loads: Sequence[LoadSeen] = ()
    asked_contexts: Mapping[tuple[str, str], AskedContext] = field(default_factory=dict)  # (engine, model)
    layer_counts: Mapping[str, tuple[int, str]] = field(default_factory=dict)  # model path -> (layers, source)
    probe_rates: Mapping[tuple[str, str], ProbeRate] = field(default_factory=dict)  # (engine, model)
    keyed_ports: frozenset[int] = frozenset()  # ports of engines with an API key configured
    now: float = field(default_factory=time.time)


def detect(inputs: Inputs) -> list[Finding]:
    """Every finding of every kind, in KINDS order."""
    found: list[Finding] = []
    for detector in (partly_on_cpu, vram_mismatch, context_short, reload_loop, gpu_health, exposed_without_key):
        found.extend(detector(inputs))
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(found, key=lambda f: (order[f.kind], f.engine or "", f.model or "", f.gpu or 0))


def not_checked(inputs: Inputs, *, history: bool = True) -> list[tuple[str, str]]:
    """What could not be checked this time, and why: (the kinds, the reason). A finding that cannot be looked
    for is not the same as one that is not there."""
    out: list[tuple[str, str]] = []
    if inputs.gpu is None or not inputs.gpu.available:
        why = inputs.gpu.reason if inputs.gpu is not None else "no GPU snapshot"
        out.append(("gpu_throttled, gpu_ecc, gpu_xid, vram_mismatch, llama.cpp GPU layers", why or "no GPU"))
    elif inputs.gpu.xid_readable:
        out.append(("gpu_xid", inputs.gpu.xid_readable))
    if not history:
        out.append(("context_short (Ollama), reload_loop (enginedeck's loads)", "the history could not be opened"))
    return out


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _gpu_present(inputs: Inputs) -> bool:
    return inputs.gpu is not None and inputs.gpu.available


def engine_args(inputs: Inputs, engine: str) -> tuple[EngineProcess, ProcessArgs] | None:
    """The process listening on the engine's port, and its parsed arguments."""
    for p in inputs.processes:
        if p.engine == engine:
            return p, parse_args(p.cmdline)
    return None


def _slowdown(inputs: Inputs, engine: str, model: str, cpu_share: float) -> tuple[str, ...]:
    """The expected slowdown for a share of the weights on the CPU, and the probe figure it applies to."""
    factor = 1 + cpu_share * (CPU_LAYER_COST - 1)
    notes = [f"expected decoding slowdown ≈{factor:.1f}x ({cpu_share:.0%} of the model at host memory speed, "
             f"taken as {CPU_LAYER_COST:g}x slower than the GPU's)"]
    rate = inputs.probe_rates.get((engine, model))
    if rate is not None:
        notes.append(f"{rate.source}: {rate.tok_s:.1f} tok/s per stream; if that ran all on the GPU, expect "
                     f"≈{rate.tok_s / factor:.1f} tok/s now")
    return tuple(notes)


def partly_on_cpu(inputs: Inputs) -> list[Finding]:
    out: list[Finding] = []
    for s in inputs.statuses:
        for lm in s.loaded:
            # Ollama: a model with nothing in VRAM on a box without a GPU is simply a CPU box, not a finding.
            if lm.size and lm.size_vram is not None and lm.size_vram < lm.size and (
                    lm.size_vram > 0 or _gpu_present(inputs)):
                share = 1 - lm.size_vram / lm.size
                out.append(Finding(
                    "partly_on_cpu", "warn", f"{lm.name} on {s.name} is {share:.0%} on the CPU",
                    (Evidence("in GPU memory", lm.size_vram, f"{s.kind} /api/ps size_vram"),
                     Evidence("model size", lm.size, f"{s.kind} /api/ps size")),
                    "free GPU memory (unload other models), use a smaller quantisation or context (num_ctx), or "
                    "check num_gpu; the CPU part decodes at host memory speed",
                    inputs.now, "first seen by this process", engine=s.name, model=lm.name,
                    notes=_slowdown(inputs, s.name, lm.name, share)))
        if s.kind == "llamacpp" and _gpu_present(inputs):
            out.extend(_llama_layers(inputs, s))
    return out


def _llama_layers(inputs: Inputs, s: EngineStatus) -> list[Finding]:
    found = engine_args(inputs, s.name)
    if found is None:
        return []
    proc, args = found
    path = args.model_path or (str(s.info.extra.get("model_path")) if s.info and s.info.extra.get("model_path")
                               else None)
    if args.gpu_layers is None or path is None or path not in inputs.layer_counts:
        return []
    layers, source = inputs.layer_counts[path]
    # llama.cpp offloads the output layer as one more: -ngl >= block_count + 1 is everything on the GPU.
    if args.gpu_layers > layers:
        return []
    model = s.loaded[0].name if s.loaded else path
    share = 1 - args.gpu_layers / (layers + 1)
    return [Finding(
        "partly_on_cpu", "warn", f"{model} on {s.name}: {args.gpu_layers} of {layers + 1} layers on the GPU",
        (Evidence("GPU layers asked", args.gpu_layers, f"process argument {args.gpu_layers_flag} (pid {proc.pid})"),
         Evidence("model layers", layers + 1, source)),
        f"start llama-server with -ngl {layers + 1} (or -ngl 999) if the GPU has room; the other layers run on "
        "the CPU", inputs.now, "first seen by this process", engine=s.name, model=model,
        notes=_slowdown(inputs, s.name, model, share))]


def vram_mismatch(inputs: Inputs) -> list[Finding]:
    if inputs.gpu is None or not inputs.gpu.available:
        return []
    nvml: dict[str, int] = {}
    for g in inputs.gpu.gpus:
        for p in g.processes:
            if p.used_bytes is not None and (owner := inputs.owners.get(p.pid)):
                nvml[owner] = nvml.get(owner, 0) + p.used_bytes
    out: list[Finding] = []
    for s in inputs.statuses:
        reported = [lm.size_vram for lm in s.loaded if lm.size_vram is not None]
        measured = nvml.get(s.name)
        if not reported or not measured:  # the engine does not say, or NVML cannot see its processes
            continue
        said = sum(reported)
        if abs(said - measured) / measured > VRAM_TOLERANCE:
            out.append(Finding(
                "vram_mismatch", "warn",
                f"{s.name} says {_gib(said)} in VRAM, NVML counts {_gib(measured)} for its processes",
                (Evidence("VRAM the engine reports", said, f"{s.kind} /api/ps size_vram, summed over models"),
                 Evidence("VRAM its processes hold", measured, "NVML per-process used memory")),
                "the engine's estimate is off (more KV cache, another runner, a leak): trust NVML's figure when "
                "deciding what fits; restart the engine if the gap grows",
                inputs.now, "first seen by this process", engine=s.name))
    return out


def context_short(inputs: Inputs) -> list[Finding]:
    out: list[Finding] = []
    for s in inputs.statuses:
        for lm in s.loaded:
            asked = inputs.asked_contexts.get((s.name, lm.name))
            if asked is not None and lm.context_length and lm.context_length < asked.tokens:
                out.append(Finding(
                    "context_short", "warn",
                    f"{lm.name} on {s.name} holds {lm.context_length} tokens of context, {asked.tokens} were asked",
                    (Evidence("context asked", asked.tokens, asked.source),
                     Evidence("context loaded", lm.context_length, f"{s.kind} /api/ps context_length")),
                    "the engine shrank the context to fit memory (or another request loaded it smaller): longer "
                    "prompts are cut. Free GPU memory or ask for less",
                    inputs.now, "first seen by this process", engine=s.name, model=lm.name))
        if s.kind == "llamacpp" and s.slots:
            out.extend(_llama_context(inputs, s))
    return out


def _llama_context(inputs: Inputs, s: EngineStatus) -> list[Finding]:
    found = engine_args(inputs, s.name)
    if found is None or found[1].ctx is None or not s.slots:
        return []
    proc, args = found
    per_slot = [slot.n_ctx for slot in s.slots if slot.n_ctx]
    if args.ctx is None or not per_slot or min(per_slot) >= args.ctx:
        return []
    model = s.loaded[0].name if s.loaded else None
    return [Finding(
        "context_short", "warn",
        f"{s.name}: each of its {len(s.slots)} slots holds {min(per_slot)} tokens, -c asked for {args.ctx}",
        (Evidence("context asked", args.ctx, f"process argument {args.ctx_flag} (pid {proc.pid})"),
         Evidence("context per slot", min(per_slot), f"GET /slots n_ctx ({len(s.slots)} slots)")),
        f"llama-server divides -c among its -np slots: a request longer than {min(per_slot)} tokens fails. "
        f"Start it with -c {args.ctx * len(s.slots)} for {args.ctx} per slot, fewer slots, or --kv-unified",
        inputs.now, "first seen by this process", engine=s.name, model=model)]


def reload_loop(inputs: Inputs) -> list[Finding]:
    recent: dict[tuple[str, str], list[LoadSeen]] = {}
    for load in inputs.loads:
        if inputs.now - load.ts <= RELOAD_WINDOW_S:
            recent.setdefault((load.engine, load.model), []).append(load)
    out: list[Finding] = []
    for (engine, model), loads in sorted(recent.items()):
        if len(loads) < RELOADS:
            continue
        sources = ", ".join(sorted({x.source for x in loads}))
        minutes = RELOAD_WINDOW_S / 60
        out.append(Finding(
            "reload_loop", "warn", f"{model} on {engine} was loaded {len(loads)} times in {minutes:g} minutes",
            (Evidence("loads", len(loads), sources),
             Evidence("window (minutes)", minutes, f"loop threshold: {RELOADS} loads")),
            "two models that do not fit together evict each other: load fewer at once (Ollama: "
            "OLLAMA_MAX_LOADED_MODELS, keep_alive), or give the GPU more memory",
            min(x.ts for x in loads), "first load in the window", engine=engine, model=model))
    return out


def gpu_health(inputs: Inputs) -> list[Finding]:
    if inputs.gpu is None or not inputs.gpu.available:
        return []
    out: list[Finding] = []
    for g in inputs.gpu.gpus:
        if g.throttled_by:
            temp = f"{g.temp_c:.0f} °C" if g.temp_c is not None else None
            power = f"{g.power_w:.0f} of {g.power_limit_w:.0f} W" if g.power_w and g.power_limit_w else None
            out.append(Finding(
                "gpu_throttled", "warn", f"GPU {g.index} is slowed down: {', '.join(g.throttled_by)}",
                (Evidence("clock event reasons", ", ".join(g.throttled_by),
                          "NVML nvmlDeviceGetCurrentClocksEventReasons"),
                 Evidence("temperature" if temp else "power", temp or power, "NVML temperature / power usage")),
                "check cooling and the power limit (nvidia-smi -q -d PERFORMANCE,TEMPERATURE,POWER); throughput "
                "drops while it lasts", inputs.now, "first seen by this process", gpu=g.index))
        if g.ecc_uncorrected:
            out.append(Finding(
                "gpu_ecc", "fail", f"GPU {g.index} has {g.ecc_uncorrected} uncorrected ECC errors",
                (Evidence("uncorrected ECC errors", g.ecc_uncorrected, "NVML volatile ECC count (since driver load)"),
                 Evidence("corrected ECC errors", g.ecc_corrected, "NVML volatile ECC count (since driver load)")),
                "drain the GPU and check nvidia-smi -q -d ECC,PAGE_RETIREMENT; results computed on it may be wrong",
                inputs.now, "first seen by this process", gpu=g.index))
        if g.xids:
            xid = g.xids[-1][1]
            out.append(Finding(
                "gpu_xid", "fail", f"GPU {g.index} reported XID {xid} ({len(g.xids)} critical error(s))",
                (Evidence("last XID", xid, "NVML XID critical error event"),
                 Evidence("XID events seen", len(g.xids), "NVML events since this process started watching")),
                "look the XID up in NVIDIA's XID catalogue and the kernel log (dmesg | grep -i xid); "
                "most need the engine restarted, some a GPU reset", g.xids[0][0], "NVML event", gpu=g.index))
    return out


def exposed_without_key(inputs: Inputs) -> list[Finding]:
    """An engine process listening beyond loopback, on a port no configured engine has a key for (the doctor's
    check, as a finding)."""
    out: list[Finding] = []
    for p in inputs.processes:
        unkeyed = [e for e in p.listening if not e.loopback and e.port not in inputs.keyed_ports]
        if not unkeyed:
            continue
        where = ", ".join(str(e) for e in unkeyed)
        name = p.engine or p.kind or p.name
        out.append(Finding(
            "exposed_without_key", "warn", f"{name} (pid {p.pid}) listens on {where} without an API key",
            (Evidence("listening on", where, "socket table (psutil)"),
             Evidence("API key configured", "none", "enginedeck config: no api_key_env/api_key_file for this port")),
            "bind it to 127.0.0.1, or set a key on the engine (--api-key) and in enginedeck's config",
            inputs.now, "first seen by this process", engine=p.engine))
    return out


class FindingsLog:
    """Keeps each finding's first sighting across checks (the dashboard's, `watch`'s), so `since` says how long it
    has lasted. A finding that goes away is forgotten; coming back, it starts again. Bounded by what is found."""

    def __init__(self) -> None:
        self._first: dict[str, tuple[float, str]] = {}

    def stamp(self, findings: Iterable[Finding]) -> list[Finding]:
        out = []
        seen: dict[str, tuple[float, str]] = {}
        for f in findings:
            first = self._first.get(f.key)
            if first is not None and first[0] <= f.since:
                f = replace(f, since=first[0], since_source=first[1])
            seen[f.key] = (f.since, f.since_source)
            out.append(f)
        self._first = seen
        return out
