"""The fleet: every host's engines, models, pressure, GPUs, findings and alerts, read from a Prometheus that
scrapes `enginedeck exporter` on each host (and dcgm-exporter or node_exporter where those run).

Five instant queries per refresh, run together, each bounded like any network read
(console/engines/prometheus.py): the exporter's families in one query (`{__name__=~"enginedeck_..."}`),
dcgm-exporter's GPU figures, node_exporter's memory and load, `up` (is each target reachable) and Prometheus's
own firing `ALERTS`. Without `[fleet] prometheus_url` the fleet is this box alone: the exporter's collection
turned into the same series (`local_view`), so both read through one parser (`build_view`).

A host is what its exporter calls itself (`enginedeck_exporter_info{host}`); series from other exporters belong
to the host whose address they share (dcgm-exporter on 10.0.0.5:9400 and enginedeck on 10.0.0.5:9464), else to
dcgm's `Hostname` label, else to their address. Every name read back is untrusted text: the front ends print it
inert.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from console.engines.prometheus import PrometheusClient, Series
from console.errors import EngineDeckError
from console.watch.exposition import OTHER, families

if TYPE_CHECKING:
    from console.watch.collect import Snapshot

ENGINEDECK = ('{__name__=~"enginedeck_(exporter_info|engine_up|engine_info|engine_poll_latency_seconds|'
              'engine_requests_running|engine_requests_waiting|engine_kv_cache_usage_ratio|model_loaded|'
              'model_size_bytes|model_vram_bytes|model_context_tokens|gpu_memory_used_bytes|gpu_memory_total_bytes|'
              'gpu_utilization_ratio|gpu_temperature_celsius|gpu_power_watts|findings)"}')
DCGM = '{__name__=~"DCGM_FI_DEV_(FB_USED|FB_FREE|GPU_UTIL|GPU_TEMP|POWER_USAGE)"}'
NODE = '{__name__=~"node_memory_MemAvailable_bytes|node_memory_MemTotal_bytes|node_load1"}'
UP = "up"
ALERTS = 'ALERTS{alertstate="firing"}'
QUERIES = {"enginedeck": ENGINEDECK, "dcgm": DCGM, "node": NODE, "up": UP, "alerts": ALERTS}
DEFAULT_DEADLINE_S = 5.0
MIB = 1024 * 1024


@dataclass
class FleetModel:
    name: str
    size_bytes: float | None = None
    vram_bytes: float | None = None
    context: float | None = None
    count: float = 1  # more than one: `other`, the models folded past the exporter's bound


@dataclass
class FleetEngine:
    name: str
    kind: str = ""
    version: str = ""
    health: str = ""
    up: bool = False
    latency_s: float | None = None
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None
    models: list[FleetModel] = field(default_factory=list)


@dataclass
class FleetGpu:
    index: str
    name: str = ""
    uuid: str = ""
    source: str = "enginedeck"  # or dcgm
    mem_used_bytes: float | None = None
    mem_total_bytes: float | None = None
    utilization: float | None = None  # 0..1
    temperature_c: float | None = None
    power_w: float | None = None


@dataclass
class FleetHost:
    name: str
    instances: list[str] = field(default_factory=list)
    reachable: bool | None = None  # Prometheus's `up` for its targets; None: no target of it is known
    engines: dict[str, FleetEngine] = field(default_factory=dict)
    gpus: dict[tuple[str, str], FleetGpu] = field(default_factory=dict)
    findings: list[dict[str, object]] = field(default_factory=list)
    alerts: list[dict[str, str]] = field(default_factory=list)
    mem_available_bytes: float | None = None
    mem_total_bytes: float | None = None
    load1: float | None = None


@dataclass
class FleetView:
    source: str  # the Prometheus URL, or "this box"
    hosts: list[FleetHost]
    alerts: list[dict[str, str]] = field(default_factory=list)  # firing alerts that name no known host
    errors: list[str] = field(default_factory=list)
    truncated: bool = False  # some answer had more than [fleet] max_series series
    seconds: float = 0.0
    taken_at: float = field(default_factory=time.time)


async def prometheus_view(client: PrometheusClient, *, host_filter: str | None = None,
                          deadline_s: float = DEFAULT_DEADLINE_S) -> FleetView:
    """The fleet from Prometheus: the five queries at once, each within `deadline_s`; one that fails or is late
    leaves its part out and says so in `errors` (a Prometheus that is down fails them all)."""
    started = time.perf_counter()

    async def one(promql: str) -> tuple[list[Series], bool]:
        async with asyncio.timeout(deadline_s):
            return await client.query(promql)

    answers = await asyncio.gather(*(one(q) for q in QUERIES.values()), return_exceptions=True)
    got: dict[str, list[Series]] = {}
    errors: list[str] = []
    truncated = False
    for name, answer in zip(QUERIES, answers, strict=True):
        if isinstance(answer, TimeoutError):
            errors.append(f"{name}: no answer from Prometheus within {deadline_s:g} s")
        elif isinstance(answer, EngineDeckError):
            errors.append(f"{name}: {answer}")
        elif isinstance(answer, BaseException):
            raise answer
        else:
            got[name], cut = answer
            truncated |= cut
    view = build_view(client.url, got.get("enginedeck", []), dcgm=got.get("dcgm", []), node=got.get("node", []),
                      up=got.get("up", []), alerts=got.get("alerts", []), host_filter=host_filter)
    view.errors, view.truncated, view.seconds = errors, truncated, time.perf_counter() - started
    return view


def local_view(snap: Snapshot, *, host: str, host_filter: str | None = None) -> FleetView:
    """This box alone, from the exporter's own collection: its metric families as the series Prometheus would
    answer (instance "local"), read by the same parser; its memory and load as node_exporter would say them."""
    import psutil

    instance = {"instance": "local", "job": "enginedeck"}
    series = [Series({**instance, **s.labels, "__name__": s.name}, s.value)
              for family in families(snap, host=host, folded_total={}) for s in family.samples]
    memory = psutil.virtual_memory()
    node = [Series({**instance, "__name__": name}, float(value)) for name, value in (
        ("node_memory_MemAvailable_bytes", memory.available), ("node_memory_MemTotal_bytes", memory.total),
        ("node_load1", os.getloadavg()[0]))]
    view = build_view("this box", series, node=node, up=[Series({**instance, "__name__": "up"}, 1.0)],
                      host_filter=host_filter)
    view.seconds = snap.duration_s
    view.errors = [f"{part}: missed the deadline" for part in snap.late] + list(snap.errors)
    return view


def build_view(source: str, enginedeck: Sequence[Series], *, dcgm: Sequence[Series] = (),
               node: Sequence[Series] = (), up: Sequence[Series] = (), alerts: Sequence[Series] = (),
               host_filter: str | None = None) -> FleetView:
    hosts: dict[str, FleetHost] = {}
    by_instance: dict[str, str] = {}  # instance -> host
    for s in enginedeck:
        if s.labels.get("__name__") == "enginedeck_exporter_info":
            name = s.labels.get("host") or s.labels.get("instance", "?")
            by_instance[s.labels.get("instance", "")] = name
            hosts.setdefault(name, FleetHost(name)).instances.append(s.labels.get("instance", ""))
    by_address: dict[str, str] = {}
    for instance, name in by_instance.items():
        address = _address(instance)
        by_address[address] = name if by_address.get(address, name) == name else ""  # ambiguous: nobody's

    def host_of(labels: Mapping[str, str]) -> FleetHost:
        instance = labels.get("instance", "")
        name = by_instance.get(instance) or by_address.get(_address(instance)) or labels.get("Hostname") \
            or _address(instance) or "?"
        return hosts.setdefault(name, FleetHost(name))

    for s in enginedeck:
        _enginedeck_series(host_of(s.labels), s)
    for s in dcgm:
        _dcgm_series(host_of(s.labels), s)
    for s in node:
        host = host_of(s.labels)
        if attr := NODE_FIGURES.get(s.labels.get("__name__", "")):
            setattr(host, attr, s.value)
    for s in up:
        instance = s.labels.get("instance", "")
        owner = by_instance.get(instance) or by_address.get(_address(instance))
        if owner is None and s.value == 1:
            continue  # a target that answers but is no enginedeck host (Prometheus itself, say)
        # A target that does not answer may be an enginedeck host that is down: shown by its address.
        host = hosts.setdefault(owner or instance, FleetHost(owner or instance))
        if instance not in host.instances:
            host.instances.append(instance)
        host.reachable = (host.reachable is not False) and s.value == 1
    loose: list[dict[str, str]] = []
    for s in alerts:
        labels = {k: v for k, v in s.labels.items() if k not in ("__name__", "alertstate")}
        instance = s.labels.get("instance", "")
        owner = by_instance.get(instance) or by_address.get(_address(instance)) or s.labels.get("host")
        if owner and owner in hosts:
            hosts[owner].alerts.append(labels)
        else:
            loose.append(labels)
    shown = [h for name, h in sorted(hosts.items()) if host_filter is None or fnmatch.fnmatchcase(name, host_filter)]
    return FleetView(source=source, hosts=shown, alerts=loose)


# Series whose value goes straight into one field (the exporter's names without `enginedeck_`; node_exporter's).
NODE_FIGURES = {"node_memory_MemAvailable_bytes": "mem_available_bytes", "node_memory_MemTotal_bytes":
                "mem_total_bytes", "node_load1": "load1"}
ENGINE_FIGURES = {"engine_poll_latency_seconds": "latency_s", "engine_requests_running": "running",
                  "engine_requests_waiting": "waiting", "engine_kv_cache_usage_ratio": "kv_cache_usage"}
MODEL_FIGURES = {"model_loaded": "count", "model_size_bytes": "size_bytes", "model_vram_bytes": "vram_bytes",
                 "model_context_tokens": "context"}
GPU_FIGURES = {"gpu_memory_used_bytes": "mem_used_bytes", "gpu_memory_total_bytes": "mem_total_bytes",
               "gpu_utilization_ratio": "utilization", "gpu_temperature_celsius": "temperature_c",
               "gpu_power_watts": "power_w"}


def _address(instance: str) -> str:
    host, sep, port = instance.rpartition(":")
    return host.strip("[]") if sep and port.isdigit() else instance


def _engine(host: FleetHost, labels: Mapping[str, str]) -> FleetEngine:
    name = labels.get("engine", "?")
    return host.engines.setdefault(name, FleetEngine(name))


def _enginedeck_series(host: FleetHost, s: Series) -> None:
    metric = s.labels.get("__name__", "").removeprefix("enginedeck_")
    labels = s.labels
    if metric == "engine_up":
        e = _engine(host, labels)
        e.up, e.kind = s.value == 1, labels.get("kind", e.kind)
    elif metric == "engine_info":
        e = _engine(host, labels)
        e.version, e.health = labels.get("version", ""), labels.get("health", "")
    elif attr := ENGINE_FIGURES.get(metric):
        setattr(_engine(host, labels), attr, s.value)
    elif metric.startswith("model_"):
        e = _engine(host, labels)
        name = labels.get("model", "?")
        model = next((m for m in e.models if m.name == name), None)
        if model is None:
            model = FleetModel(name)
            e.models.append(model)
            e.models.sort(key=lambda m: (m.name == OTHER, m.name))
        if attr := MODEL_FIGURES.get(metric):
            setattr(model, attr, s.value)
    elif metric.startswith("gpu_") and "gpu" in labels:
        key = (labels.get("gpu", "?"), "enginedeck")
        g = host.gpus.setdefault(key, FleetGpu(labels.get("gpu", "?"), labels.get("name", ""),
                                               labels.get("uuid", "")))
        if attr := GPU_FIGURES.get(metric):
            setattr(g, attr, s.value)
    elif metric == "findings" and s.value > 0:
        host.findings.append({"engine": labels.get("engine", ""), "kind": labels.get("kind", ""), "count": s.value})


def _dcgm_series(host: FleetHost, s: Series) -> None:
    """dcgm-exporter's names: memory in MiB (FB_USED + FB_FREE is the total), utilisation in %."""
    labels = s.labels
    key = (labels.get("gpu", "?"), "dcgm")
    g = host.gpus.setdefault(key, FleetGpu(labels.get("gpu", "?"), labels.get("modelName", ""),
                                           labels.get("UUID", ""), source="dcgm"))
    metric = labels.get("__name__", "")
    if metric == "DCGM_FI_DEV_FB_USED":
        g.mem_used_bytes = s.value * MIB
        g.mem_total_bytes = (g.mem_total_bytes or 0) + s.value * MIB
    elif metric == "DCGM_FI_DEV_FB_FREE":
        g.mem_total_bytes = (g.mem_total_bytes or 0) + s.value * MIB
    elif metric == "DCGM_FI_DEV_GPU_UTIL":
        g.utilization = s.value / 100
    elif metric == "DCGM_FI_DEV_GPU_TEMP":
        g.temperature_c = s.value
    elif metric == "DCGM_FI_DEV_POWER_USAGE":
        g.power_w = s.value


def as_json(view: FleetView) -> dict[str, object]:
    def gpu(g: FleetGpu) -> dict[str, object]:
        return dict(vars(g))

    def engine(e: FleetEngine) -> dict[str, object]:
        return {**{k: v for k, v in vars(e).items() if k != "models"}, "models": [vars(m) for m in e.models]}

    hosts: Iterable[FleetHost] = view.hosts
    return {
        "source": view.source, "taken_at": view.taken_at, "seconds": round(view.seconds, 4),
        "truncated": view.truncated, "errors": view.errors, "alerts": view.alerts,
        "hosts": [{"host": h.name, "instances": h.instances, "reachable": h.reachable,
                   "mem_available_bytes": h.mem_available_bytes, "mem_total_bytes": h.mem_total_bytes,
                   "load1": h.load1, "engines": [engine(e) for _, e in sorted(h.engines.items())],
                   "gpus": [gpu(g) for _, g in sorted(h.gpus.items())], "findings": h.findings, "alerts": h.alerts}
                  for h in hosts],
    }
