"""Replay: a gateway's capture replayed with `enginedeck probe ENGINE MODEL --workload FILE` sends the same number of
chat requests with the captured max tokens (the engine's truth says what it got), closed loop and at the recorded
arrival times; a file that is not a capture is one line, exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from console.gateway.capture import capture_files
from console.probe.replay import item_of, load_workload
from tests.unit.gateway.conftest import ROOT

GAPS_S = (0.0, 0.6, 1.2)  # arrivals of the three captured chats
MAX_TOKENS = (5, 9, 13)


def _probe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "console", "--no-discover", "--config", str(tmp_path / "config.toml"),
                           "probe", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ENGINEDECK_DATA_DIR": str(tmp_path / "data")})


def _capture(gateway, url: str) -> Path:
    gw = gateway(url, "--capture", "1MiB")
    t0 = time.monotonic()
    for gap, n in zip(GAPS_S, MAX_TOKENS, strict=True):
        time.sleep(max(0.0, t0 + gap - time.monotonic()))
        httpx.post(f"{gw.url}/v1/chat/completions", timeout=30,
                   json={"model": "synthetic", "max_tokens": n, "stream": True,
                         "messages": [{"role": "user", "content": "a prompt of some forty characters or so"}]})
    httpx.get(f"{gw.url}/v1/models")  # not a chat: not replayed
    gw.wait_records(4)
    gw.stop()
    (path,) = capture_files(gw.log_dir / "capture")
    return path


def test_replay_closed_loop_and_arrivals(tmp_path: Path, gateway, synthetic_engine) -> None:
    eng = synthetic_engine(ttft_s=0.01, itl_s=0.002)
    path = _capture(gateway, eng.url)
    items = load_workload(path)
    assert [i.max_tokens for i in items] == list(MAX_TOKENS)
    assert abs(items[2].offset_s - GAPS_S[2]) < 0.3
    eng.reset()
    res = _probe(tmp_path, eng.url, "synthetic", "--workload", str(path), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["requests"] == 3 and doc["errors"] == 0
    assert [i["tokens_out"] for i in doc["items"]] == list(MAX_TOKENS)
    got = sorted(eng.truth()["requests"], key=lambda r: r["arrival_ns"])
    assert len(got) == 3 and all(r["tag"].startswith("replay-") for r in got)
    # Open loop at twice the speed: the engine sees them about half the recorded gaps apart.
    eng.reset()
    res = _probe(tmp_path, eng.url, "synthetic", "--workload", str(path), "--replay-arrivals", "--speed", "2")
    assert res.returncode == 0, res.stderr
    assert "recorded arrivals x2" in res.stdout and "send lag" in res.stdout
    got = sorted(eng.truth()["requests"], key=lambda r: r["arrival_ns"])
    span = (got[-1]["arrival_ns"] - got[0]["arrival_ns"]) / 1e9
    assert abs(span - items[2].offset_s / 2) < 0.25, span


def test_a_file_that_is_not_a_capture(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("")
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    res = _probe(tmp_path, "http://127.0.0.1:9", "m", "--workload", str(bad))
    assert res.returncode == 1 and "not a JSON line of a gateway capture" in res.stderr
    assert "Traceback" not in res.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"path": "/api/tags", "t": 1.0}) + "\n")
    res = _probe(tmp_path, "http://127.0.0.1:9", "m", "--workload", str(empty))
    assert res.returncode == 1 and "no chat or generate request" in res.stderr


def test_item_shapes() -> None:
    ollama = {"path": "/api/chat", "t": 5.0, "tokens_in": None, "tokens_out": 40,
              "body": {"model": "m", "messages": [{"role": "user", "content": "x" * 400}],
                       "options": {"num_predict": 7}}}
    assert item_of(ollama) == (5.0, 100, 7)
    openai = {"path": "/v1/chat/completions", "t": 6.0, "tokens_in": 33, "tokens_out": 12,
              "body": {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}}
    assert item_of(openai) == (6.0, 33, 12)
    assert item_of({"path": "/v1/models", "t": 1.0, "body": None}) is None
