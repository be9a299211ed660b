"""Opt-in capture: off by default; on, request bodies (and replies if asked) in a bounded ring with Authorization,
cookies and configured fields redacted."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from console.gateway.capture import Capture, capture_files
from console.gateway.record import RequestRecord

SECRET = "sk-client-secret-0123456789"


def _chat(url: str, n: int = 0) -> httpx.Response:
    return httpx.post(f"{url}/api/chat", headers={"Authorization": f"Bearer {SECRET}", "Cookie": "session=abc123",
                                                  "X-Trace": "t1"},
                      json={"model": "llama3.2:1b", "stream": False, "user": "alice@example.com",
                            "messages": [{"role": "user", "content": f"why is the sky blue {n}"}],
                            "options": {"api_key": "nested-secret-value"}})


def test_capture_is_off_by_default(gateway, ollama_server) -> None:
    gw = gateway(ollama_server.url)
    assert _chat(gw.url).status_code == 200
    gw.wait_records(1)
    assert not (gw.log_dir / "capture").exists()
    assert "why is the sky" not in "".join(p.read_text() for p in gw.log_dir.glob("*.jsonl"))


def test_capture_keeps_bodies_and_replies_redacted(gateway, ollama_server) -> None:
    gw = gateway(ollama_server.url, "--capture", "1MiB", "--capture-replies",
                 "--capture-redact", "user,api_key,x-trace")
    reply = _chat(gw.url)
    gw.wait_records(1)
    gw.stop()
    (path,) = capture_files(gw.log_dir / "capture")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    (entry,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert entry["body"]["messages"][0]["content"] == "why is the sky blue 0"
    assert entry["body"]["user"] == "[redacted]" and entry["body"]["options"]["api_key"] == "[redacted]"
    headers = entry["headers"]
    assert headers["authorization"] == headers["cookie"] == headers["x-trace"] == "[redacted]"
    assert entry["reply"] == reply.text and entry["reply_truncated"] is False
    assert entry["tokens_out"] == reply.json()["eval_count"] and entry["model"] == "llama3.2:1b"
    text = path.read_text()
    assert SECRET not in text and "abc123" not in text and "alice@" not in text and "nested-secret" not in text


def test_the_ring_is_bounded(tmp_path: Path) -> None:
    cap = Capture(tmp_path, 20_000)
    rec = RequestRecord(request_id="r", started=1.0, method="POST", path="/api/chat", client_ip="", client="a",
                        user_agent="", upstream="e")
    for n in range(200):
        cap.write(cap.entry(rec, [], json.dumps({"model": "m", "n": n, "pad": "x" * 200}).encode(), None, False))
    cap.close()
    files = capture_files(tmp_path)
    assert len(files) == 2 and sum(f.stat().st_size for f in files) <= 20_000 + 400
    last = json.loads(files[-1].read_text().splitlines()[-1])
    assert last["body"]["n"] == 199  # the newest are kept
