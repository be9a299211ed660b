"""The gateways' live state feeds the exporter, the alert rules and the pressure of the engine they front: a real
gateway process in front of the Ollama contract server, traffic through it, then `enginedeck exporter`'s scrape,
`enginedeck watch --once` and `enginedeck ps --json` (console/gateway_feed.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import httpx

from tests.fakes.ollama_server import FakeOllama, slow
from tests.unit.gateway.conftest import ROOT


def _config(tmp_path: Path, engine_url: str) -> str:
    return (f'[[engines]]\nname = "local"\nurl = "{engine_url}"\nkind = "ollama"\n\n'
            f'[[gateways]]\nname = "front"\nlisten = "127.0.0.1:0"\nupstream = "local"\n'
            f'log_dir = "{tmp_path / "log"}"\n')


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "ENGINEDECK_DATA_DIR": str(tmp_path / "data")}


def _enginedeck(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "console", "--no-discover", "--config", str(tmp_path / "config.toml"),
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=60, env=_env(tmp_path))


def _chat(url: str, model: str = "llama3.2:1b") -> None:
    httpx.post(f"{url}/api/chat", timeout=30, json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def _scrape(tmp_path: Path) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "console", "--no-discover", "--config",
                             str(tmp_path / "config.toml"), "exporter", "--listen", f"127.0.0.1:{port}"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True, env=_env(tmp_path))
    try:
        assert proc.stderr is not None and "serving" in proc.stderr.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
            return resp.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def _value(metrics: str, prefix: str) -> float:
    (line,) = [m for m in metrics.splitlines() if m.startswith(prefix)]
    return float(line.rsplit(" ", 1)[1])


def test_the_exporter_shows_the_gateway_counters_and_the_ttft_rule_fires(tmp_path: Path, gateway,
                                                                          ollama_server: FakeOllama) -> None:
    ollama_server.queue(slow(0.0, first_token_delay_s=0.3), times=3)
    gw = gateway("local", "front", config=_config(tmp_path, ollama_server.url))
    for _ in range(3):
        _chat(gw.url)
    _chat(gw.url, model="no-such-model")  # the engine answers 404: an error through the gateway
    records = gw.wait_records(4)
    tokens_out = sum(r["tokens_out"] or 0 for r in records if r["model"] == "llama3.2:1b")
    assert tokens_out > 0

    metrics = _scrape(tmp_path)
    labels = '{engine="local",model="llama3.2:1b"}'
    assert _value(metrics, f"enginedeck_gateway_requests_total{labels}") == 3
    assert _value(metrics, f"enginedeck_gateway_errors_total{labels}") == 0
    assert _value(metrics, f"enginedeck_gateway_tokens_out_total{labels}") == tokens_out
    assert _value(metrics, 'enginedeck_gateway_errors_total{engine="local",model="no-such-model"}') == 1
    assert 0.3 <= _value(metrics, f"enginedeck_gateway_ttft_p90_seconds{labels}") < 10

    (tmp_path / "rules.toml").write_text('[[rule]]\nname = "slow-first-token"\nmetric = "ttft_p90"\nabove = 0.2\n'
                                         'engine = "local"\nmodel = "llama3.2:1b"\n')
    res = _enginedeck(tmp_path, "watch", "--rules", str(tmp_path / "rules.toml"), "--once")
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.returncode == 1, res.stdout + res.stderr
    (fired,) = [e for e in events if e["event"] == "firing"]
    assert fired["rule"] == "slow-first-token" and fired["value"] >= 0.3
    # The same rule over a threshold the traffic stays under: judged (not "unknown"), nothing fires.
    (tmp_path / "rules.toml").write_text('[[rule]]\nname = "slow-first-token"\nmetric = "ttft_p90"\nabove = 30\n')
    assert _enginedeck(tmp_path, "watch", "--rules", str(tmp_path / "rules.toml"), "--once").returncode == 0


def test_ollama_running_and_waiting_come_from_the_gateway(tmp_path: Path, gateway,
                                                          ollama_server: FakeOllama) -> None:
    # One request streams slowly (running), one gets no first token for a long while (waiting).
    ollama_server.queue(slow(0.5))
    ollama_server.queue(slow(0.0, first_token_delay_s=8))
    gw = gateway("local", "front", config=_config(tmp_path, ollama_server.url))
    clients = [threading.Thread(target=_chat, args=(gw.url,)) for _ in range(2)]
    for client in clients:
        client.start()
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while ollama_server.active < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)

    res = _enginedeck(tmp_path, "ps", "--json")
    assert res.returncode == 0, res.stderr
    (pressure,) = json.loads(res.stdout)["pressure"]
    assert pressure["running"] == {"value": 1.0, "source": "gateway front", "missing": None}
    assert pressure["waiting"] == {"value": 1.0, "source": "gateway front", "missing": None}
    assert pressure["kv_cache_pct"]["value"] is None  # what the gateway cannot know stays missing

    metrics = _scrape(tmp_path)
    assert _value(metrics, 'enginedeck_engine_requests_running{engine="local"}') == 1
    assert _value(metrics, 'enginedeck_engine_requests_waiting{engine="local"}') == 1
    for client in clients:
        client.join(30)


def test_without_a_running_gateway_ollama_pressure_stays_missing(tmp_path: Path, ollama_server: FakeOllama) -> None:
    (tmp_path / "config.toml").write_text(_config(tmp_path, ollama_server.url))
    res = _enginedeck(tmp_path, "ps", "--json")
    assert res.returncode == 0, res.stderr
    (pressure,) = json.loads(res.stdout)["pressure"]
    assert pressure["running"]["value"] is None and "gateway" in pressure["running"]["missing"]
