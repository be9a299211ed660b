"""The fleet view at 100 hosts: a REAL Prometheus (the lab's, `python scripts/lab.py setup prometheus`) scrapes
100 simulated hosts, and `prometheus_view` (what `enginedeck fleet` and the dashboard read) is timed refreshing
them all. Target: ≤ 2 s per refresh.

    .venv/bin/python bench/fleet_scale.py                      # 100 hosts, 20 refreshes
    .venv/bin/python bench/fleet_scale.py --hosts 300 --refreshes 50

The hosts are recorded metrics served by one fake exporter: each host's page is what `enginedeck exporter`
answers (console/watch/exposition.py over a snapshot of 2 engines with 3 loaded models each, and 8 GPUs), made
once and served at /host/N/metrics; Prometheus scrapes each path as its own target (`__metrics_path__` and
`instance` set per target), every 2 s. Once every host is in Prometheus, each refresh is the fleet's five
queries, all hosts, timed from the first request to the built view (median, p90 and worst are printed, with the
series count and the answer's bytes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from console.engines.base import EngineInfo, Health, LoadedModel, MetricsSnapshot  # noqa: E402
from console.engines.poll import EngineStatus  # noqa: E402
from console.telemetry.gpu import GpuSample, GpuSnapshot  # noqa: E402
from console.watch.collect import Snapshot, pressure_of  # noqa: E402
from console.watch.exposition import families  # noqa: E402
from scripts import lab as labkit  # noqa: E402


def host_page(i: int) -> bytes:
    """What one host's exporter answers: 2 engines, 3 models each, 8 GPUs."""
    from prometheus_client import CollectorRegistry, generate_latest

    engines = tuple(
        EngineStatus(name=f"vllm-{j}", url=f"http://10.0.{i}.1:800{j}", kind="vllm",
                     info=EngineInfo("vllm", "", "0.11.0", Health.OK, latency_ms=8.0 + j),
                     loaded=tuple(LoadedModel(f"model-{j}-{k}", size=(k + 1) * 2**33, size_vram=(k + 1) * 2**33,
                                              context_length=32768) for k in range(3)),
                     metrics=MetricsSnapshot(taken_at=0, running=4, waiting=i % 5, kv_cache_usage=0.42,
                                             prompt_tokens_total=1e6, generation_tokens_total=2e6))
        for j in range(2))
    gpus = GpuSnapshot(available=True, gpus=tuple(
        GpuSample(g, "NVIDIA H100 80GB HBM3", f"GPU-{i:03d}-{g}", 71.0, 20.0, 60 * 2**30, 80 * 2**30, 64.0, 420.0,
                  700.0) for g in range(8)))
    snap = Snapshot(taken_at=time.time(), engines=engines, gpus=gpus,
                    pressure={e.name: pressure_of(e) for e in engines})

    class Static:
        def collect(self):
            return families(snap, host=f"host-{i:03d}", folded_total={})

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Static())
    return generate_latest(registry)


def serve(pages: list[bytes]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            parts = self.path.strip("/").split("/")
            if len(parts) != 3 or parts[0] != "host" or not parts[1].isdigit() or int(parts[1]) >= len(pages):
                self.send_error(404)
                return
            body = pages[int(parts[1])]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # Prometheus stopped mid-scrape
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def query(url: str, promql: str) -> list:
    q = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as resp:
        return json.load(resp)["data"]["result"]


async def refreshes(url: str, n: int) -> tuple[list[float], int, int]:
    from console.engines.prometheus import PrometheusClient
    from console.watch.fleet import ENGINEDECK, prometheus_view

    client = PrometheusClient(url)
    times: list[float] = []
    try:
        for _ in range(n):
            started = time.perf_counter()
            view = await prometheus_view(client, deadline_s=10)
            times.append(time.perf_counter() - started)
            if view.errors:
                raise SystemExit(f"fleet_scale: the view has errors: {view.errors}")
        hosts = len(view.hosts)
        series = len((await client.query(ENGINEDECK))[0])
    finally:
        await client.aclose()
    return times, hosts, series


@contextlib.contextmanager
def prometheus_fleet(hosts: int) -> Iterator[tuple[str, list[bytes]]]:
    """The lab's Prometheus scraping `hosts` simulated hosts every 2 s, every host in it: (its URL, the pages)."""
    manifest = labkit.Manifest.load()
    if manifest.missing("prometheus"):
        raise SystemExit("the lab has no Prometheus: run python scripts/lab.py setup prometheus")
    pages = [host_page(i) for i in range(hosts)]
    server = serve(pages)
    port = server.server_port
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "prometheus.yml"
        targets = [{"targets": [f"127.0.0.1:{port}"],
                    "labels": {"__metrics_path__": f"/host/{i}/metrics", "instance": f"host-{i:03d}:9464"}}
                   for i in range(hosts)]
        config.write_text(json.dumps({"global": {"scrape_interval": "2s", "scrape_timeout": "2s"},
                                      "scrape_configs": [{"job_name": "enginedeck", "static_configs": targets}]}))
        launch = labkit.prometheus_launch(manifest, labkit.free_port(), config, Path(tmp) / "data")
        proc = labkit.spawn(launch, Path(tmp) / "prometheus.log")
        try:
            labkit.wait_ready(launch, proc, Path(tmp) / "prometheus.log")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                got = query(launch.url, "count(enginedeck_exporter_info)")
                if got and int(float(got[0]["value"][1])) >= hosts:
                    break
                time.sleep(0.5)
            else:
                raise SystemExit("Prometheus did not see every host within 120 s")
            yield launch.url, pages
        finally:
            labkit.stop(proc)
            server.shutdown()


def prometheus_version() -> str:
    manifest = labkit.Manifest.load()
    return subprocess.run([str(manifest.prometheus), "--version"], capture_output=True, text=True,
                          check=False).stdout.split("\n")[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--refreshes", type=int, default=20)
    args = parser.parse_args()
    with prometheus_fleet(args.hosts) as (url, pages):
        times, hosts, series = asyncio.run(refreshes(url, args.refreshes))
    times.sort()
    p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
    version = prometheus_version()
    print(f"fleet_scale: {hosts} hosts ({sum(len(p) for p in pages) / len(pages) / 1024:.1f} KiB of metrics each, "
          f"{series} enginedeck series in Prometheus), {version}")
    print(f"refresh of the whole fleet view (5 PromQL queries + parse), {len(times)} refreshes: "
          f"median {statistics.median(times) * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, worst {times[-1] * 1000:.0f} ms "
          f"(target ≤ 2000 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
