"""The exporter scraped by a REAL Prometheus (Debian's package from the lab: `python scripts/lab.py setup
prometheus`), queried through its HTTP API."""

from __future__ import annotations

import os

import pytest

from tests.integration.exporters import exporter

pytestmark = pytest.mark.prometheus


def test_prometheus_scrapes_the_exporter_and_answers_promql(prometheus_server, ollama_server, tmp_path):
    ollama_server.load(ollama_server.resolve("gemma3:4b"), None, None)
    with exporter(tmp_path, "alpha", {"ollama-a": ollama_server.url}) as exp:
        prom = prometheus_server([{"targets": [exp.target]}])
        up = prom.wait_for('enginedeck_engine_up{engine="ollama-a"} == 1')
        assert up[0]["metric"]["instance"] == exp.target and up[0]["metric"]["kind"] == "ollama"
        info = prom.wait_for("enginedeck_exporter_info")
        assert info[0]["metric"]["host"] == "alpha"
        vram = prom.wait_for('enginedeck_model_vram_bytes{model="gemma3:4b"}')
        size = prom.query('enginedeck_model_size_bytes{model="gemma3:4b"}')
        assert 0 < float(vram[0]["value"][1]) < float(size[0]["value"][1])  # 60 % of it on the GPU
        # Prometheus's own view of the target: healthy, and the scrape within its 1 s timeout
        assert prom.query(f'up{{instance="{exp.target}"}}')[0]["value"][1] == "1"
        took = float(prom.query(f'scrape_duration_seconds{{instance="{exp.target}"}}')[0]["value"][1])
        assert took < 1.0


def test_the_fleet_reads_two_exporters_as_two_hosts_through_a_real_prometheus(prometheus_server, tmp_path, capsys,
                                                                                 monkeypatch):
    import json

    from console.cli import main
    from tests.fakes.ollama_server import ollama_contract_server
    from tests.integration.exporters import free_port

    with ollama_contract_server() as a, ollama_contract_server() as b, \
            exporter(tmp_path, "alpha", {"ollama-a": a.url}) as ea, \
            exporter(tmp_path, "beta", {"ollama-b": b.url, "gone": "http://127.0.0.1:9"}) as eb:
        a.load(a.resolve("qwen3:4b"), None, None)
        dead = f"127.0.0.1:{free_port()}"  # a host whose exporter is down
        prom = prometheus_server([{"targets": [ea.target, eb.target, dead]}])
        prom.wait_for("enginedeck_exporter_info", count=2)
        prom.wait_for('enginedeck_model_loaded{model="qwen3:4b"}')
        prom.wait_for(f'up{{instance="{dead}"}} == 0')
        config = tmp_path / "fleet.toml"
        config.write_text(f'discover = false\n[fleet]\nprometheus_url = "{prom.url}"\n')
        for name in [k for k in os.environ if k.startswith("ENGINEDECK_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("ENGINEDECK_DATA_DIR", str(tmp_path / "data"))
        assert main(["--config", str(config), "fleet", "--json"]) == 0
        view = json.loads(capsys.readouterr().out)
        hosts = {h["host"]: h for h in view["hosts"]}
        assert set(hosts) == {"alpha", "beta", dead}
        assert view["errors"] == [] and view["source"] == prom.url
        assert hosts[dead]["reachable"] is False and hosts["alpha"]["reachable"] is True
        alpha = {e["name"]: e for e in hosts["alpha"]["engines"]}
        assert alpha["ollama-a"]["up"] is True and alpha["ollama-a"]["kind"] == "ollama"
        assert [m["name"] for m in alpha["ollama-a"]["models"]] == ["qwen3:4b"]
        beta = {e["name"]: e for e in hosts["beta"]["engines"]}
        assert beta["ollama-b"]["up"] is True and beta["gone"]["up"] is False

        assert main(["--config", str(config), "fleet", "--host", "b*"]) == 0
        text = capsys.readouterr().out
        assert "beta" in text and "alpha" not in text and "ollama-b" in text
