"""The exporter's metrics from a snapshot: every label bounded, overflow folded into `other` and counted, untrusted
names made inert."""

from __future__ import annotations

from prometheus_client.core import Metric

from console.engines.base import EngineInfo, Health, LoadedModel, MetricsSnapshot
from console.engines.poll import EngineStatus
from console.telemetry.gpu import GpuSample, GpuSnapshot
from console.watch.collect import Pressure, ProbeResult, Snapshot, Traffic
from console.watch.exposition import MAX_ENGINES, MAX_MODELS, OTHER, families


def status(name: str, models: list[LoadedModel], *, health: Health = Health.OK, running: float | None = None):
    info = EngineInfo("vllm", "http://x", "0.9", health, latency_ms=25.0)
    metrics = MetricsSnapshot(taken_at=0, running=running, waiting=2, kv_cache_usage=0.5, generation_tokens_total=9)
    return EngineStatus(name=name, url="http://x", kind="vllm", info=info, loaded=tuple(models), metrics=metrics)


def samples(snap: Snapshot, folded: dict[str, int] | None = None) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    fams: list[Metric] = list(families(snap, host="box", folded_total={} if folded is None else folded))
    for family in fams:
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    for name, rows in out.items():  # Prometheus drops a scrape's duplicate series: there must be none
        keys = [tuple(sorted(labels.items())) for labels, _ in rows]
        assert len(keys) == len(set(keys)), name
    return out


def snap_of(*statuses: EngineStatus, **kw) -> Snapshot:
    return Snapshot(taken_at=0, engines=statuses, pressure={
        s.name: Pressure(s.metrics.running, s.metrics.waiting, s.metrics.kv_cache_usage) for s in statuses
        if s.metrics}, **kw)


def test_a_thousand_model_names_stay_within_the_bound_and_the_rest_is_counted():
    models = [LoadedModel(f"model-{i:04d}", size=1000 + i, size_vram=1000 + i, context_length=4096)
              for i in range(1000)]
    folded: dict[str, int] = {}
    got = samples(snap_of(status("big", models)), folded)
    loaded = got["enginedeck_model_loaded"]
    names = {labels["model"] for labels, _ in loaded}
    assert len(names) == MAX_MODELS and OTHER in names
    # the heaviest models keep their own series; `other` counts and sums the rest
    assert "model-0999" in names and "model-0000" not in names
    other = next(v for labels, v in loaded if labels["model"] == OTHER)
    assert other == 1000 - (MAX_MODELS - 1)
    vram = {labels["model"]: v for labels, v in got["enginedeck_model_vram_bytes"]}
    assert sum(vram.values()) == sum(m.size_vram for m in models)  # nothing lost, only folded
    assert OTHER not in {labels["model"] for labels, _ in got["enginedeck_model_context_tokens"]}
    assert dict((labels["label"], v) for labels, v in got["enginedeck_label_values_folded"])["model"] == 901
    assert folded["model"] == 901
    samples(snap_of(status("big", models)), folded)  # the total adds up over scrapes
    assert folded["model"] == 1802
    for family, rows in got.items():
        for labels, _ in rows:
            assert len({labels.get("model")} - {None}) <= 1
        assert len(rows) <= MAX_MODELS * 2 + 10, family


def test_engines_past_the_bound_fold_into_other_with_their_sums():
    statuses = [status(f"e{i:03d}", [LoadedModel("m", size=1)], running=1) for i in range(MAX_ENGINES + 10)]
    got = samples(snap_of(*statuses))
    up = got["enginedeck_engine_up"]
    assert len({labels["engine"] for labels, _ in up}) == MAX_ENGINES
    assert dict((labels["engine"], v) for labels, v in up)[OTHER] == 11  # how many folded engines are up
    running = {labels["engine"]: v for labels, v in got["enginedeck_engine_requests_running"]}
    assert running[OTHER] == 11 and sum(running.values()) == MAX_ENGINES + 10
    loaded = {labels["engine"]: v for labels, v in got["enginedeck_engine_loaded_models"]}
    assert loaded[OTHER] == 11


def test_untrusted_names_are_one_inert_bounded_line():
    evil = "m\x1b]0;pwned\x07\nline2" + "x" * 500
    got = samples(snap_of(status("e", [LoadedModel(evil, size=5)])))
    (labels, _), = got["enginedeck_model_loaded"]
    assert "\x1b" not in labels["model"] and "\n" not in labels["model"] and "\x07" not in labels["model"]
    assert len(labels["model"]) <= 120


def test_engine_health_pressure_gpu_probe_and_traffic_figures():
    down = EngineStatus(name="gone", url="http://y", kind="ollama", error="cannot connect")
    gpu = GpuSnapshot(available=True, gpus=(GpuSample(0, "H100", "GPU-1", 50.0, 10.0, 2**30, 2**34, 61.0, 300.0,
                                                      700.0),))
    snap = snap_of(status("a", [LoadedModel("m", size=10, size_vram=8, context_length=2048)], running=3), down,
                   gpus=gpu, probes=(ProbeResult("a", "m", 100.0, 8, 6),),
                   traffic=(Traffic("a", "m", requests=5, errors=1, tokens_in=50, tokens_out=70, ttft_p90_s=0.4),))
    got = samples(snap)
    up = {labels["engine"]: v for labels, v in got["enginedeck_engine_up"]}
    assert up == {"a": 1.0, "gone": 0.0}
    assert got["enginedeck_engine_poll_latency_seconds"] == [({"engine": "a"}, 0.025)]
    assert got["enginedeck_engine_requests_running"] == [({"engine": "a"}, 3.0)]
    assert got["enginedeck_engine_kv_cache_usage_ratio"] == [({"engine": "a"}, 0.5)]
    assert got["enginedeck_engine_generation_tokens_total"] == [({"engine": "a"}, 9.0)]
    assert got["enginedeck_model_context_tokens"] == [({"engine": "a", "model": "m"}, 2048.0)]
    gpu_labels = {"gpu": "0", "uuid": "GPU-1", "name": "H100"}
    assert got["enginedeck_gpu_utilization_ratio"] == [(gpu_labels, 0.5)]
    assert got["enginedeck_gpu_temperature_celsius"] == [(gpu_labels, 61.0)]
    assert got["enginedeck_gpu_memory_total_bytes"] == [(gpu_labels, float(2**34))]
    assert got["enginedeck_probe_max_usable_concurrency"] == [({"engine": "a", "model": "m"}, 8.0)]
    assert got["enginedeck_gateway_requests_total"] == [({"engine": "a", "model": "m"}, 5.0)]
    assert got["enginedeck_gateway_ttft_p90_seconds"] == [({"engine": "a", "model": "m"}, 0.4)]
    assert got["enginedeck_gpu_telemetry_available"] == [({}, 1.0)]


def test_late_and_failed_parts_are_named():
    got = samples(Snapshot(taken_at=0, late=("gpu",), errors=("probes: cannot open the database",)))
    late = {labels["part"]: v for labels, v in got["enginedeck_scrape_part_late"]}
    failed = {labels["part"]: v for labels, v in got["enginedeck_scrape_part_failed"]}
    assert late == {"engines": 0, "gpu": 1, "probes": 0, "findings": 0, "traffic": 0}
    assert failed == {"engines": 0, "gpu": 0, "probes": 1, "findings": 0, "traffic": 0}
