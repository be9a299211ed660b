"""The live view: a 0600 unix socket for local readers; `enginedeck traffic --json` (one snapshot) shows a stream in
flight, then finished with its figures; `--follow` prints its start, first byte and end as NDJSON; nothing flows
while nothing happens."""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.fakes.ollama_server import FakeOllama, slow
from tests.unit.gateway.conftest import ROOT


def _traffic(tmp_path: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "console", "--no-discover", "--config", str(tmp_path / "config.toml"),
                           "traffic", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "ENGINEDECK_DATA_DIR": str(tmp_path / "data")})


def _stream(url: str) -> None:
    httpx.post(f"{url}/api/chat", timeout=30, json={"model": "llama3.2:1b",
                                                     "messages": [{"role": "user", "content": "hi"}]})


def test_snapshot_and_follow(tmp_path: Path, gateway, ollama_server: FakeOllama) -> None:
    ollama_server.queue(slow(0.1), times=2)
    config = (f'[[gateways]]\nname = "front"\nlisten = "127.0.0.1:0"\nupstream = "{ollama_server.url}"\n'
              f'log_dir = "{tmp_path / "log"}"\n')
    gw = gateway(ollama_server.url, "front", config=config)
    sock = gw.log_dir / "live.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    follower = subprocess.Popen([sys.executable, "-m", "console", "--no-discover", "--config",
                                 str(tmp_path / "config.toml"), "traffic", "--socket", str(sock), "--follow", "--json"],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert follower.stdout is not None
    assert json.loads(follower.stdout.readline())["event"] == "snapshot"
    client = threading.Thread(target=_stream, args=(gw.url,))
    client.start()
    deadline = time.monotonic() + 10
    while ollama_server.active < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    res = _traffic(tmp_path, "--socket", str(sock), "--json")
    assert res.returncode == 0, res.stderr
    (snap,) = json.loads(res.stdout)["gateways"]
    (flight,) = snap["in_flight"]
    assert flight["model"] == "llama3.2:1b" and flight["phase"] == "streaming" and flight["chunks"] >= 1
    client.join(30)
    rec = gw.wait_records(1)[0]
    events = []
    while not any(e["event"] == "end" for e in events):
        events.append(json.loads(follower.stdout.readline()))
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and "first_byte" in kinds and kinds[-1] == "end"
    assert "progress" in kinds
    end = events[-1]
    assert end["request_id"] == rec["request_id"] and end["tokens_out"] == rec["tokens_out"]
    # Nothing in flight: nothing more comes (no timer ticks while idle).
    assert select.select([follower.stdout], [], [], 1.5)[0] == []
    # Found without --socket too (the configured gateways'); text output names the finished request.
    text = _traffic(tmp_path)
    assert text.returncode == 0 and "last finished" in text.stdout and "llama3.2:1b" in text.stdout
    assert "requests in the last minute: anonymous 1" in text.stdout
    gw.stop()
    follower.wait(10)
    assert not sock.exists()


def test_no_gateway_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("")
    res = _traffic(tmp_path)
    assert res.returncode == 1 and "no running gateway found" in res.stderr and res.stderr.count("\n") == 1
