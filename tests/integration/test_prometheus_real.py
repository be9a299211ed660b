"""The exporter scraped by a REAL Prometheus (Debian's package from the lab: `python scripts/lab.py setup
prometheus`), queried through its HTTP API."""

from __future__ import annotations

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
