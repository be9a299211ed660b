"""The dashboard in fleet mode against a REAL Prometheus (the lab's) scraping two exporters on loopback as two
hosts: the read goes through console/ui/fleet_rows.py's read_fleet, in its worker thread, end to end."""

from __future__ import annotations

import pytest

from console.config import FleetConfig
from tests.integration.exporters import exporter
from tests.ui.fixtures import (
    NO_GPU,
    demo_app,
    settle,
)
from tests.ui.test_dashboard import rows, text_of

pytestmark = pytest.mark.prometheus


async def test_the_dashboard_shows_two_hosts_read_from_a_real_prometheus(prometheus_server, tmp_path):
    from tests.fakes.ollama_server import ollama_contract_server

    with ollama_contract_server() as a, ollama_contract_server() as b, \
            exporter(tmp_path, "alpha", {"ollama-a": a.url}) as ea, \
            exporter(tmp_path, "beta", {"ollama-b": b.url}) as eb:
        a.load(a.resolve("qwen3:4b"), None, None)
        prom = prometheus_server([{"targets": [ea.target, eb.target]}])
        prom.wait_for("enginedeck_exporter_info", count=2)
        prom.wait_for('enginedeck_model_loaded{model="qwen3:4b"}')
        app = demo_app(tmp_path, gpu=NO_GPU, engines=[], processes=(),
                       fleet=FleetConfig(prometheus_url=prom.url))
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, until=lambda: len(rows(app, "engines")) == 2, timeout_s=30)
            assert [r[:3] for r in rows(app, "engines")] == [["alpha", "ollama-a", "ok"], ["beta", "ollama-b", "ok"]]
            assert [r[:3] for r in rows(app, "loaded")] == [["alpha", "ollama-a", "qwen3:4b"]]
            assert text_of(app, "fleet-line").startswith(f"2 host(s) from {prom.url}")
            await pilot.press("h")
            await settle(pilot, until=lambda: [r[0] for r in rows(app, "engines")] == ["alpha"])
