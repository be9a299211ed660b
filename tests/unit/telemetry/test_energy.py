"""Energy per token with NVML fakes: the counter path, the sampled-power path (labelled), idle subtracted."""

from __future__ import annotations

import sys

import pytest

from console.telemetry.energy import COUNTER, SAMPLED, EnergyError, EnergyMeter
from console.telemetry.gpu import GpuMonitor
from tests.unit.telemetry.test_gpu import fake_nvml


class Box:
    """Two GPUs whose draw the test sets; time moves only when the meter sleeps or the test says so."""

    def __init__(self, *, counter: bool = True, watts: float = 100.0) -> None:
        self.counter, self.watts, self.t, self.mj = counter, watts, 0.0, 5_000_000.0

    def clock(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.mj += self.watts * seconds * 1000  # both GPUs together draw `watts`
        self.t += seconds

    def energy_mj(self) -> dict[int, int | None]:
        return {0: int(self.mj / 2), 1: int(self.mj / 2)} if self.counter else {0: None, 1: None}

    def power_w(self) -> dict[int, float | None]:
        return {0: self.watts / 2, 1: self.watts / 2}


def test_counter_window_less_idle_per_token():
    box = Box(watts=100.0)
    meter = EnergyMeter(box, clock=box.clock, sleep=box.advance, idle_s=2.0)
    idle = meter.idle()
    assert idle.watts == pytest.approx(100.0) and idle.method == COUNTER and idle.window_s == 2.0
    window = meter.start()
    box.watts = 400.0
    box.advance(10.0)
    r = window.stop(500, idle)
    assert (r.method, r.gpus, r.window_s) == (COUNTER, 2, 10.0)
    assert r.gross_j == pytest.approx(4000.0) and r.net_j == pytest.approx(3000.0)
    assert r.j_per_token == pytest.approx(6.0) and r.idle_w == pytest.approx(100.0)
    assert meter.idle() is idle  # reused while recent


def test_no_tokens_no_ratio_but_the_joules_are_kept():
    box = Box()
    meter = EnergyMeter(box, clock=box.clock, sleep=box.advance)
    idle = meter.idle()
    window = meter.start()
    box.advance(1.0)
    r = window.stop(None, idle)
    assert r.j_per_token is None and r.gross_j == pytest.approx(100.0) and r.net_j == pytest.approx(0.0, abs=1e-6)


def test_without_a_counter_power_is_sampled_and_labelled():
    box = Box(counter=False, watts=300.0)  # real time here: the sampler is a thread
    meter = EnergyMeter(box, sample_s=0.01, idle_s=0.2)
    box.watts = 100.0
    idle = meter.idle()
    assert idle.method == SAMPLED and idle.watts == pytest.approx(100.0, rel=0.05)
    box.watts = 300.0
    window = meter.start()
    import time

    time.sleep(0.3)
    r = window.stop(60, idle)
    assert r.method == SAMPLED
    assert r.gross_j == pytest.approx(300.0 * r.window_s, rel=0.1)
    assert r.net_j == pytest.approx(200.0 * r.window_s, rel=0.15)
    assert r.j_per_token == pytest.approx(r.net_j / 60, rel=1e-3)


def test_through_the_gpu_monitor(monkeypatch: pytest.MonkeyPatch):
    m = fake_nvml()
    total = {"mj": 1_000_000}
    m.nvmlDeviceGetTotalEnergyConsumption = lambda h: total["mj"] + h
    monkeypatch.setitem(sys.modules, "pynvml", m)
    monitor = GpuMonitor()
    try:
        assert monitor.energy_mj() == {0: 1_000_000, 1: 1_000_001}
        assert monitor.power_w() == {0: 250.0, 1: 250.0}
    finally:
        monitor.close()
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())  # an old binding: no counter, so sampled
    monitor = GpuMonitor()
    try:
        assert monitor.energy_mj() == {0: None, 1: None}
        window = EnergyMeter(monitor).start()
        assert window.method == SAMPLED
        window.gross()  # ends the sampling thread
    finally:
        monitor.close()


def test_no_gpu_says_why(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(EnergyError, match="no NVIDIA GPU"):
        EnergyMeter(GpuMonitor()).check()
