"""The fleet view: series grouped into hosts (enginedeck's own, dcgm-exporter's and node_exporter's by address),
and the Prometheus reads bounded like any network read (series count, garbage, a Prometheus that is down)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from console.cli import main
from console.engines.prometheus import PrometheusClient, Series
from console.errors import BadResponseError
from console.watch.fleet import build_view, prometheus_view


def S(name, value, **labels):
    return Series({"__name__": name, **labels}, value)


def test_series_become_hosts_with_dcgm_and_node_figures_joined_by_address():
    enginedeck = [
        S("enginedeck_exporter_info", 1, instance="10.0.0.5:9464", host="gpu-5"),
        S("enginedeck_engine_up", 1, instance="10.0.0.5:9464", engine="vllm", kind="vllm"),
        S("enginedeck_engine_requests_waiting", 3, instance="10.0.0.5:9464", engine="vllm"),
        S("enginedeck_model_loaded", 1, instance="10.0.0.5:9464", engine="vllm", model="qwen"),
        S("enginedeck_model_loaded", 12, instance="10.0.0.5:9464", engine="vllm", model="other"),
        S("enginedeck_findings", 2, instance="10.0.0.5:9464", engine="vllm", kind="partly_on_cpu"),
    ]
    dcgm = [S("DCGM_FI_DEV_FB_USED", 1024, instance="10.0.0.5:9400", gpu="0", modelName="H100", UUID="GPU-a"),
            S("DCGM_FI_DEV_FB_FREE", 3072, instance="10.0.0.5:9400", gpu="0", modelName="H100", UUID="GPU-a"),
            S("DCGM_FI_DEV_GPU_UTIL", 40, instance="10.0.0.5:9400", gpu="0"),
            S("DCGM_FI_DEV_GPU_TEMP", 71, instance="elsewhere:9400", gpu="0", Hostname="gpu-9")]
    node = [S("node_load1", 2.5, instance="10.0.0.5:9100")]
    up = [S("up", 1, instance="10.0.0.5:9464", job="enginedeck"), S("up", 0, instance="10.0.0.6:9464", job="x"),
          S("up", 1, instance="localhost:9090", job="prometheus")]
    alerts = [S("ALERTS", 1, instance="10.0.0.5:9464", alertname="EngineDown", alertstate="firing"),
              S("ALERTS", 1, alertname="FleetWide", alertstate="firing")]
    view = build_view("p", enginedeck, dcgm=dcgm, node=node, up=up, alerts=alerts)
    hosts = {h.name: h for h in view.hosts}
    assert set(hosts) == {"gpu-5", "gpu-9", "10.0.0.6:9464"}  # Prometheus itself is no host
    h = hosts["gpu-5"]
    assert h.reachable is True and h.load1 == 2.5 and hosts["10.0.0.6:9464"].reachable is False
    assert h.engines["vllm"].waiting == 3 and [m.name for m in h.engines["vllm"].models] == ["qwen", "other"]
    gpu = h.gpus[("0", "dcgm")]
    assert (gpu.mem_used_bytes, gpu.mem_total_bytes, gpu.utilization) == (1024 * 2**20, 4096 * 2**20, 0.4)
    assert hosts["gpu-9"].gpus[("0", "dcgm")].temperature_c == 71
    assert h.findings == [{"engine": "vllm", "kind": "partly_on_cpu", "count": 2}]
    assert [a["alertname"] for a in h.alerts] == ["EngineDown"] and view.alerts[0]["alertname"] == "FleetWide"
    assert [h.name for h in build_view("p", enginedeck, up=up, host_filter="gpu-*").hosts] == ["gpu-5"]


class FakePrometheus:
    """Answers every query with `body` (bytes) and `status`."""

    def __init__(self, body: bytes, status: int = 200) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(fake.body)))
                self.end_headers()
                self.wfile.write(fake.body)

            def log_message(self, *args):
                pass

        self.body, self.status = body, status
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def vector(n: int) -> bytes:
    result = [{"metric": {"__name__": "enginedeck_exporter_info", "instance": f"h{i}:9464", "host": f"h{i}"},
               "value": [0, "1"]} for i in range(n)]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


async def test_an_answer_past_max_series_is_cut_and_says_so():
    fake = FakePrometheus(vector(50))
    client = PrometheusClient(fake.url, max_series=10)
    try:
        series, cut = await client.query("enginedeck_exporter_info")
        assert len(series) == 10 and cut
        view = await prometheus_view(client)
        assert view.truncated and len(view.hosts) == 10
    finally:
        await client.aclose()
        fake.close()


@pytest.mark.parametrize("body", [b"<html>proxy</html>", b'{"status": "error", "error": "bad query"}',
                                  b'{"status": "success", "data": {"resultType": "matrix", "result": []}}'])
async def test_an_answer_that_is_not_the_api_is_a_typed_error(body):
    fake = FakePrometheus(body)
    client = PrometheusClient(fake.url)
    try:
        with pytest.raises(BadResponseError):
            await client.query("up")
    finally:
        await client.aclose()
        fake.close()


def test_a_prometheus_that_is_down_is_exit_1_with_one_line_per_query(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ENGINEDECK_DATA_DIR", str(tmp_path / "data"))
    config = tmp_path / "c.toml"
    config.write_text('discover = false\nconnect_timeout = 1.0\n[fleet]\nprometheus_url = "http://127.0.0.1:9"\n')
    assert main(["--config", str(config), "fleet"]) == 1
    err = capsys.readouterr().err
    assert "cannot connect to http://127.0.0.1:9/api/v1/query" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 5
