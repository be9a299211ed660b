"""Session fixtures that run the real engines of the lab (scripts/lab.py) on free loopback ports.

Each server starts once per session, in its own process group, with its output in a log file under pytest's tmp
dir; teardown ends the whole group (SIGTERM, then SIGKILL), and a killed pytest takes its servers with it. If the
lab is not built the tests skip, unless ENGINEDECK_LAB_REQUIRED=1 (CI), where they fail with the same message.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts import lab as labkit

NOT_BUILT = "engine lab not built: run python scripts/lab.py setup"
# One compute thread per server. With one per core (llama-server's default) a decode step waits at a barrier for
# every thread; when anything else on a 2-core CI box takes a core, each step waits out the scheduler's slices.
# Measured with two busy loops beside it: a short probe took 216 s with the default, 8 s with one thread.
THREADS = 1
ROUTER_CLEAN_S = 60.0


@dataclass(frozen=True)
class LabServer:
    url: str
    model: str
    log_path: Path
    pid: int


@dataclass(frozen=True)
class LabVllmServer(LabServer):
    lora_path: Path


@dataclass(frozen=True)
class LabRouter:
    url: str
    models: tuple[str, ...]
    log_path: Path
    pid: int


def _unavailable(detail: str) -> None:
    message = f"{NOT_BUILT} ({detail})" if detail else NOT_BUILT
    if os.environ.get("ENGINEDECK_LAB_REQUIRED") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _manifest(*needs: str) -> labkit.Manifest:
    try:
        manifest = labkit.Manifest.load()
    except labkit.LabError as exc:
        _unavailable(str(exc))
    if missing := manifest.missing(*needs):
        _unavailable("missing: " + ", ".join(missing))
    return manifest


def _serve(make: Callable[[int], labkit.Launch], log_dir: Path, name: str) -> Iterator[tuple[labkit.Launch, int, Path]]:
    """Start a server on a free port, wait for /health, yield (launch, pid, log); end its process group after."""
    log = log_dir / f"{name}.log"
    # The port is free when picked but could be taken before the server binds it; one retry covers that race.
    for attempt in (1, 2):
        launch = make(labkit.free_port())
        proc = labkit.spawn(launch, log)
        try:
            labkit.wait_ready(launch, proc, log)
        except labkit.LabError as exc:
            labkit.stop(proc)
            busy = "address already in use" in labkit._log_tail(log).lower()
            if attempt == 1 and busy:
                continue
            pytest.fail(f"{name} did not start: {exc}", pytrace=False)
        except BaseException:
            labkit.stop(proc)
            raise
        try:
            yield launch, proc.pid, log
        finally:
            labkit.stop(proc)
        return


@pytest.fixture(scope="session")
def lab() -> labkit.Manifest:
    """The lab's paths (llama_server, gguf, router_models_dir, vllm_python, vllm_model_dir, lora_dir)."""
    return _manifest("llama_server", "gguf", "router_models_dir")


@pytest.fixture(scope="session")
def lab_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab-logs")


def _llama(lab: labkit.Manifest, lab_logs: Path, parallel: int) -> Iterator[LabServer]:
    name = f"llama-server-np{parallel}"
    def make(port: int) -> labkit.Launch:
        return labkit.llama_launch(lab, port, parallel=parallel, threads=THREADS)

    for launch, pid, log in _serve(make, lab_logs, name):
        yield LabServer(url=launch.url, model=labkit.SERVED_NAME, log_path=log, pid=pid)


@pytest.fixture(scope="session")
def llama_server(lab: labkit.Manifest, lab_logs: Path) -> Iterator[LabServer]:
    """llama-server with SmolLM2 as "smollm2", 4 parallel slots, /metrics on, 4096 context."""
    yield from _llama(lab, lab_logs, parallel=4)


@pytest.fixture(scope="session")
def llama_server_np1(lab: labkit.Manifest, lab_logs: Path) -> Iterator[LabServer]:
    """The same with one slot, so a concurrency probe can compare -np 1 with -np 4."""
    yield from _llama(lab, lab_logs, parallel=1)


@pytest.fixture(scope="session")
def llama_router(lab: labkit.Manifest, lab_logs: Path) -> Iterator[LabRouter]:
    """llama-server in router mode: smol-a and smol-b (same weights), at most one loaded, none loaded at start."""
    def make(port: int) -> labkit.Launch:
        return labkit.router_launch(lab, port, threads=THREADS)

    for launch, pid, log in _serve(make, lab_logs, "llama-router"):
        yield LabRouter(url=launch.url, models=labkit.ROUTER_MODELS, log_path=log, pid=pid)


def _router_states(url: str) -> dict[str, str]:
    with urllib.request.urlopen(url + "/models", timeout=10) as resp:
        return {m["id"]: m["status"]["value"] for m in json.load(resp)["data"]}


def _post_json(url: str, body: dict[str, str]) -> None:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def unload_router_models(router: LabRouter) -> None:
    """Unload every model of the router, waiting out any load in flight."""
    deadline = time.monotonic() + ROUTER_CLEAN_S
    while True:
        busy = {name: state for name, state in _router_states(router.url).items() if state != "unloaded"}
        if not busy:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"router models still not unloaded after {ROUTER_CLEAN_S:.0f} s: {busy}", pytrace=False)
        for name, state in busy.items():
            if state == "loaded":
                _post_json(router.url + "/models/unload", {"model": name})
        time.sleep(0.2)


@pytest.fixture
def router(llama_router: LabRouter) -> LabRouter:
    """The session router with every model unloaded, so each test starts from the same state."""
    unload_router_models(llama_router)
    return llama_router


@pytest.fixture(scope="session")
def vllm_server(lab_logs: Path) -> Iterator[LabVllmServer]:
    """vLLM (CPU build) serving the converted SmolLM2 as "smollm2", runtime LoRA and dev endpoints enabled.

    The first start of a session takes minutes (~4 min with a cold compile cache, ~2.5 min warm).
    """
    manifest = _manifest("vllm_python", "vllm_model_dir", "lora_dir")
    for launch, pid, log in _serve(lambda port: labkit.vllm_launch(manifest, port), lab_logs, "vllm"):
        assert manifest.lora_dir is not None
        yield LabVllmServer(url=launch.url, model=labkit.SERVED_NAME, log_path=log, pid=pid,
                            lora_path=manifest.lora_dir)


@dataclass(frozen=True)
class LabPrometheus:
    url: str
    log_path: Path
    pid: int

    def query(self, promql: str) -> list[dict[str, object]]:
        """An instant query through the HTTP API: the result vector (each item's `metric` and `value`)."""
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_for(self, promql: str, count: int = 1, timeout_s: float = 60.0) -> list[dict[str, object]]:
        """Query until the answer has at least `count` series (Prometheus scrapes on its own interval)."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(promql)
            if len(result) >= count:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"Prometheus answered {result!r} to {promql!r} after {timeout_s:.0f} s", pytrace=False)
            time.sleep(0.25)


PrometheusFactory = Callable[[list[dict[str, object]]], LabPrometheus]


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[PrometheusFactory]:
    """A factory: `prometheus_server(static_configs)` starts the lab's real Prometheus (Debian's package, from
    `python scripts/lab.py setup prometheus`) on a free loopback port, scraping those targets every second; it
    is stopped after the test. Skips (fails under ENGINEDECK_LAB_REQUIRED=1) when the lab has no Prometheus."""
    try:
        manifest = labkit.Manifest.load()
    except labkit.LabError as exc:
        _unavailable(str(exc))
    if manifest.missing("prometheus"):
        _unavailable("missing: prometheus; run python scripts/lab.py setup prometheus")
    stack: list[Iterator[tuple[labkit.Launch, int, Path]]] = []

    def start(static_configs: list[dict[str, object]]) -> LabPrometheus:
        n = len(stack)
        config = tmp_path / f"prometheus-{n}.yml"
        # JSON is YAML: Prometheus reads it as its config file.
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "enginedeck", "static_configs": static_configs}],
        }))

        def make(port: int) -> labkit.Launch:
            return labkit.prometheus_launch(manifest, port, config, tmp_path / f"prometheus-data-{n}")

        served = _serve(make, tmp_path, f"prometheus-{n}")
        launch, pid, log = next(served)
        stack.append(served)
        return LabPrometheus(url=launch.url, log_path=log, pid=pid)

    yield start
    for served in reversed(stack):
        next(served, None)  # runs _serve's teardown: the server's process group ends
