"""`enginedeck fleet` without `[fleet] prometheus_url`: this box alone, from the exporter's own collection."""

from __future__ import annotations

import json

from console.telemetry.gpu import GpuMonitor, GpuSample, GpuSnapshot


def test_this_box_alone_shows_its_engines_models_and_gpus(cli, capsys, ollama_server, monkeypatch):
    gpu = GpuSample(0, "H100", "GPU-1", 30.0, 5.0, 2**30, 2**36, 55.0, 120.0, 700.0)
    monkeypatch.setattr(GpuMonitor, "sample", lambda self: GpuSnapshot(available=True, gpus=(gpu,)))
    ollama_server.load(ollama_server.resolve("qwen3:4b"), None, None)
    assert cli("fleet", "--json", engines={"o": ollama_server.url + "=ollama"}) == 0
    view = json.loads(capsys.readouterr().out)
    (host,) = view["hosts"]
    assert view["source"] == "this box" and host["reachable"] is True
    # Its memory and load, as node_exporter would give them for a host of the fleet
    assert 0 < host["mem_available_bytes"] <= host["mem_total_bytes"] and host["load1"] >= 0
    (engine,) = host["engines"]
    assert engine["name"] == "o" and engine["up"] and [m["name"] for m in engine["models"]] == ["qwen3:4b"]
    (g,) = host["gpus"]
    assert (g["name"], g["temperature_c"], g["utilization"]) == ("H100", 55.0, 0.3)
    assert cli("fleet", engines={"o": ollama_server.url + "=ollama"}) == 0
    text = capsys.readouterr().out
    assert "qwen3:4b" in text and "55°C" in text and "fleet from this box: 1 host" in text
