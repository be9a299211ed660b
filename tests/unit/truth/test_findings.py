"""Each finding kind: a situation where it fires, with its two numbers and their sources, and one where it must not.

GPU situations come from a fake NVML module (the same technique as tests/unit/telemetry/test_gpu.py), so the
GpuMonitor's own reading of clock event reasons, ECC counters and XID events is what is tested.
"""

from __future__ import annotations

import sys
import time
from collections import namedtuple

import pytest

from console.engines.base import EngineInfo, Health, LoadedModel, SlotState
from console.engines.poll import EngineStatus
from console.telemetry.gpu import GpuMonitor, GpuProcess, GpuSample, GpuSnapshot
from console.telemetry.processes import Endpoint, EngineProcess
from console.truth.args import parse_args
from console.truth.findings import (
    KINDS,
    RELOAD_WINDOW_S,
    AskedContext,
    FindingsLog,
    Inputs,
    LoadSeen,
    ProbeRate,
    detect,
)
from tests.unit.telemetry.test_gpu import FakeNVMLError, fake_nvml

GIB = 2**30
NOW = 1_800_000_000.0


def status(kind: str, *loaded: LoadedModel, name: str = "e", slots: tuple[SlotState, ...] | None = None,
           extra: dict | None = None) -> EngineStatus:
    info = EngineInfo(kind, "http://127.0.0.1:11434", "1", Health.OK, extra=extra or {})
    return EngineStatus(name=name, url="http://127.0.0.1:11434", kind=kind, info=info, loaded=loaded, slots=slots)


def gpu(*, processes: tuple[GpuProcess, ...] = (), **kw: object) -> GpuSnapshot:
    sample = GpuSample(0, "H100", "GPU-0", 50.0, 10.0, 40 * GIB, 80 * GIB, 60.0, 300.0, 700.0,
                       processes=processes, **kw)  # type: ignore[arg-type]
    return GpuSnapshot(available=True, gpus=(sample,))


def proc(engine: str, cmdline: str, pid: int = 100, listening: tuple[Endpoint, ...] = ()) -> EngineProcess:
    return EngineProcess(pid, "llama-server", "llamacpp", engine, cmdline, 1, 1.0, listening, ())


def kinds(inputs: Inputs) -> list[str]:
    return [f.kind for f in detect(inputs)]


# -- partly on the CPU ----------------------------------------------------------------------------------------

def test_ollama_partly_on_cpu_with_the_expected_slowdown_from_a_probe():
    s = status("ollama", LoadedModel("gemma3:4b", size=10 * GIB, size_vram=6 * GIB))
    rate = ProbeRate(50.0, "probe run #3, concurrency 1, median decode")
    [f] = detect(Inputs(statuses=[s], probe_rates={("e", "gemma3:4b"): rate}, now=NOW))
    assert f.kind == "partly_on_cpu" and "40% on the CPU" in f.title
    assert [(e.value, e.source) for e in f.evidence] == [(6 * GIB, "ollama /api/ps size_vram"),
                                                         (10 * GIB, "ollama /api/ps size")]
    assert any("slowdown ≈4.6x" in n for n in f.notes) and any("probe run #3" in n and "10.9" in n for n in f.notes)


def test_ollama_all_in_vram_or_a_cpu_only_box_is_not_a_finding():
    whole = status("ollama", LoadedModel("m", size=10 * GIB, size_vram=10 * GIB))
    cpu_box = status("ollama", LoadedModel("m", size=10 * GIB, size_vram=0))
    assert kinds(Inputs(statuses=[whole, cpu_box])) == []
    assert kinds(Inputs(statuses=[cpu_box], gpu=gpu())) == ["partly_on_cpu"]  # a GPU is there and unused


def test_llamacpp_gpu_layers_below_the_model_layers():
    s = status("llamacpp", LoadedModel("smol"), extra={"model_path": "/m/smol.gguf"})
    layers = {"/m/smol.gguf": (30, "GGUF block_count + output layer of /m/smol.gguf")}
    few = Inputs(statuses=[s], gpu=gpu(), processes=[proc("e", "llama-server -m /m/smol.gguf -ngl 12")],
                 layer_counts=layers)
    [f] = detect(few)
    assert f.kind == "partly_on_cpu" and "12 of 31 layers" in f.title
    assert [e.value for e in f.evidence] == [12, 31] and "-ngl 12" in f.evidence[0].source
    for enough in ("-ngl 31", "-ngl 999", "--n-gpu-layers=-1", ""):
        ok = Inputs(statuses=[s], gpu=gpu(), processes=[proc("e", f"llama-server -m /m/smol.gguf {enough}")],
                    layer_counts=layers)
        assert kinds(ok) == [], enough
    no_gpu = Inputs(statuses=[s], processes=[proc("e", "llama-server -ngl 12")], layer_counts=layers)
    assert kinds(no_gpu) == []


# -- VRAM: engine vs NVML ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("nvml_gib", "fires"), [(8.0, True), (6.5, False), (5.0, True)])
def test_engine_vram_against_nvml_per_process(nvml_gib: float, fires: bool):
    s = status("ollama", LoadedModel("m", size=6 * GIB, size_vram=6 * GIB))
    g = gpu(processes=(GpuProcess(4242, int(nvml_gib * GIB), "compute"),))
    found = kinds(Inputs(statuses=[s], gpu=g, owners={4242: "e"}))
    assert (found == ["vram_mismatch"]) is fires


def test_vram_not_compared_when_nvml_cannot_see_the_process():
    s = status("ollama", LoadedModel("m", size=6 * GIB, size_vram=6 * GIB))
    g = gpu(processes=(GpuProcess(4242, None, "compute"),))
    assert kinds(Inputs(statuses=[s], gpu=g, owners={4242: "e"})) == []


# -- context smaller than asked ------------------------------------------------------------------------------

def test_ollama_context_smaller_than_asked():
    s = status("ollama", LoadedModel("m", size=1, size_vram=1, context_length=4096))
    asked = {("e", "m"): AskedContext(8192, "num_ctx of the chat turn at ...")}
    [f] = detect(Inputs(statuses=[s], asked_contexts=asked))
    assert f.kind == "context_short" and [e.value for e in f.evidence] == [8192, 4096]
    assert kinds(Inputs(statuses=[s], asked_contexts={("e", "m"): AskedContext(4096, "x")})) == []


def test_llamacpp_slot_context_smaller_than_c():
    slots = tuple(SlotState(i, 1024, False) for i in range(4))
    s = status("llamacpp", LoadedModel("smol"), slots=slots)
    [f] = detect(Inputs(statuses=[s], processes=[proc("e", "llama-server -c 4096 -np 4")]))
    assert f.kind == "context_short" and [e.value for e in f.evidence] == [4096, 1024]
    assert "-c 16384" in f.action
    one = status("llamacpp", LoadedModel("smol"), slots=(SlotState(0, 4096, False),))
    assert kinds(Inputs(statuses=[one], processes=[proc("e", "llama-server -c 4096 -np 1")])) == []


# -- evict / reload loop -------------------------------------------------------------------------------------

def test_reload_loop_within_the_window_only():
    loads = [LoadSeen(NOW - 500 + i * 100, "e", "m", "polls") for i in range(3)]
    [f] = detect(Inputs(loads=loads, now=NOW))
    assert f.kind == "reload_loop" and f.evidence[0].value == 3 and f.since == NOW - 500
    spread = [LoadSeen(NOW - RELOAD_WINDOW_S - 1, "e", "m", "model events"), *loads[1:]]
    assert kinds(Inputs(loads=spread, now=NOW)) == []
    other_models = [LoadSeen(NOW - 10, "e", name, "polls") for name in ("a", "b", "c")]
    assert kinds(Inputs(loads=other_models, now=NOW)) == []


# -- GPU: throttling, ECC, XID through the GpuMonitor -----------------------------------------------------------

def monitor_with(monkeypatch: pytest.MonkeyPatch, *, reasons: int = 0, ecc: int = 0, xid: int | None = None
                 ) -> GpuSnapshot:
    m = fake_nvml()
    events = [xid] if xid is not None else []
    Event = namedtuple("Event", "device eventType eventData")
    # GPU 0 is in trouble, GPU 1 is fine; idle (0x1) is never a finding
    m.nvmlDeviceGetCurrentClocksEventReasons = lambda h: (reasons if h == 0 else 0) | 0x1
    m.nvmlDeviceGetTotalEccErrors = lambda h, kind, counter: (ecc if h == 0 else 0) if kind == 1 else 7
    m.nvmlDeviceGetTotalEnergyConsumption = lambda h: 123_456
    m.nvmlDeviceGetIndex = lambda h: h
    m.nvmlEventSetCreate = lambda: "set"
    m.nvmlDeviceRegisterEvents = lambda h, types, s: None
    m.nvmlEventSetFree = lambda s: None

    def wait(s: str, timeout_ms: int) -> Event:
        if not events:
            raise FakeNVMLError("Timeout")
        return Event(0, 0x8, events.pop())

    m.nvmlEventSetWait_v2 = wait
    monkeypatch.setitem(sys.modules, "pynvml", m)
    monitor = GpuMonitor()
    try:
        return monitor.sample()
    finally:
        monitor.close()


def test_gpu_thermal_throttling(monkeypatch: pytest.MonkeyPatch):
    snap = monitor_with(monkeypatch, reasons=0x40)
    [f] = detect(Inputs(gpu=snap))
    assert f.kind == "gpu_throttled" and f.gpu == 0 and "thermal (hardware)" in f.title
    assert f.evidence[1].value == "55 °C"
    assert kinds(Inputs(gpu=monitor_with(monkeypatch, reasons=0))) == []  # idle, no slowdown
    assert kinds(Inputs(gpu=monitor_with(monkeypatch, reasons=0x2))) == []  # application clocks: asked for


def test_gpu_power_cap_and_uncorrected_ecc(monkeypatch: pytest.MonkeyPatch):
    snap = monitor_with(monkeypatch, reasons=0x4, ecc=2)
    assert snap.gpus[0].energy_mj == 123_456 and snap.gpus[0].ecc_corrected == 7
    found = {f.kind: f for f in detect(Inputs(gpu=snap))}
    assert set(found) == {"gpu_throttled", "gpu_ecc"}
    assert found["gpu_ecc"].severity == "fail" and [e.value for e in found["gpu_ecc"].evidence] == [2, 7]
    assert "power cap" in found["gpu_throttled"].title


def test_xid_seen_by_the_monitor(monkeypatch: pytest.MonkeyPatch):
    snap = monitor_with(monkeypatch, xid=79)
    [f] = detect(Inputs(gpu=snap))
    assert f.kind == "gpu_xid" and f.evidence[0].value == 79 and f.severity == "fail"
    assert snap.xid_readable is None
    assert kinds(Inputs(gpu=monitor_with(monkeypatch))) == []


def test_xid_not_readable_says_why(monkeypatch: pytest.MonkeyPatch):
    m = fake_nvml()
    monkeypatch.setitem(sys.modules, "pynvml", m)  # a binding without the event calls
    monitor = GpuMonitor()
    snap = monitor.sample()
    monitor.close()
    assert snap.available and snap.xid_readable and "cannot be watched" in snap.xid_readable


# -- exposure -----------------------------------------------------------------------------------------------

def test_exposed_without_a_key():
    open_ = proc("o", "ollama serve", listening=(Endpoint("0.0.0.0", 11434),))
    [f] = detect(Inputs(processes=[open_]))
    assert f.kind == "exposed_without_key" and f.evidence[0].value == "0.0.0.0:11434"
    assert kinds(Inputs(processes=[open_], keyed_ports=frozenset({11434}))) == []
    loopback = proc("o", "ollama serve", listening=(Endpoint("127.0.0.1", 11434),))
    assert kinds(Inputs(processes=[loopback])) == []


# -- since, order, json -----------------------------------------------------------------------------------------

def test_since_is_kept_while_the_finding_lasts_and_reset_when_it_goes():
    s = status("ollama", LoadedModel("m", size=10, size_vram=5))
    log = FindingsLog()
    [first] = log.stamp(detect(Inputs(statuses=[s], now=NOW)))
    [later] = log.stamp(detect(Inputs(statuses=[s], now=NOW + 60)))
    assert later.since == first.since == NOW
    log.stamp([])
    [again] = log.stamp(detect(Inputs(statuses=[s], now=NOW + 120)))
    assert again.since == NOW + 120


def test_every_kind_has_json_with_two_pieces_of_evidence():
    s = status("ollama", LoadedModel("m", size=10, size_vram=5))
    [f] = detect(Inputs(statuses=[s]))
    doc = f.as_json()
    assert set(doc) == {"kind", "severity", "title", "engine", "model", "gpu", "evidence", "since", "since_source",
                        "action", "notes"}
    assert len(doc["evidence"]) == 2 and all(set(e) == {"label", "value", "source"} for e in doc["evidence"])
    assert doc["kind"] in KINDS and time.time() - doc["since"] < 60


def test_args_parse_the_last_flag_and_both_spellings():
    a = parse_args("llama-server -m /a.gguf -c 2048 --ctx-size=8192 --n-gpu-layers 20")
    assert (a.ctx, a.gpu_layers, a.model_path) == (8192, 20, "/a.gguf")
    assert parse_args("llama-server -ngl auto").gpu_layers is None


def test_loads_seen_between_polls_make_a_reload_loop():
    from dataclasses import replace as with_

    from console.truth.gather import LoadWatch

    watch = LoadWatch()
    base = status("ollama", LoadedModel("a"))
    t = NOW - 300
    for i in range(4):  # a and b evict each other: a is seen loaded again three times
        watch.observe(with_(base, loaded=(LoadedModel("a"),), polled_at=t + 20 * i))
        watch.observe(with_(base, loaded=(LoadedModel("b"),), polled_at=t + 20 * i + 10))
    a_loads = [x for x in watch.seen if x.model == "a"]
    assert len(a_loads) == 3 and all(x.source == "polls" for x in a_loads)  # the first look is not a load
    found = [f for f in detect(Inputs(loads=watch.seen, now=NOW)) if f.model == "a"]
    assert [f.kind for f in found] == ["reload_loop"]
    steady = LoadWatch()
    for i in range(5):
        steady.observe(with_(base, polled_at=t + i))
    assert steady.seen == []


def test_not_checked_names_the_kinds_and_the_reason():
    from dataclasses import replace as with_

    from console.truth.findings import not_checked

    assert not_checked(Inputs(gpu=GpuSnapshot(available=False, reason="no NVIDIA GPU"))) == [
        ("gpu_throttled, gpu_ecc, gpu_xid, vram_mismatch, llama.cpp GPU layers", "no NVIDIA GPU")]
    watched = gpu()
    assert not_checked(Inputs(gpu=watched)) == []
    blind = with_(watched, xid_readable="XID errors cannot be watched here (Insufficient Permissions)")
    assert not_checked(Inputs(gpu=blind), history=False) == [
        ("gpu_xid", "XID errors cannot be watched here (Insufficient Permissions)"),
        ("context_short (Ollama), reload_loop (enginedeck's loads)", "the history could not be opened")]
