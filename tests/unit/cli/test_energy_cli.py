"""`enginedeck chat --energy`: no GPU is one clear line before anything is sent; with a meter the JSON carries the
turn's energy."""

from __future__ import annotations

import json
import sys

import pytest

from tests.unit.telemetry.test_gpu import fake_nvml


def test_chat_energy_without_a_gpu_is_one_clear_line(cli, capsys: pytest.CaptureFixture[str], env,
                                                     monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert cli("chat", "fake", "m", "hi", "--energy") == 1
    err = capsys.readouterr().err
    assert err.startswith("enginedeck: --energy: ") and "NVIDIA GPU" in err and "Traceback" not in err
    assert env["engine"].requests == []  # nothing was sent


def test_chat_energy_json_with_an_nvml_fake(cli, capsys: pytest.CaptureFixture[str], env,
                                           monkeypatch: pytest.MonkeyPatch):
    m = fake_nvml()
    counter = {"mj": 0}

    def energy(h: int) -> int:
        counter["mj"] += 50  # every read finds 50 mJ more on each GPU
        return counter["mj"]

    m.nvmlDeviceGetTotalEnergyConsumption = energy
    monkeypatch.setitem(sys.modules, "pynvml", m)
    monkeypatch.setattr("console.telemetry.energy.IDLE_S", 0.01)
    assert cli("chat", "fake", "m", "hi", "--energy", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    e = doc["energy"]
    assert e["method"] == "nvml energy counter" and e["gpus"] == 2
    assert {"gross_j", "idle_w", "net_j", "window_s", "tokens", "j_per_token", "idle_taken_at"} <= set(e)
