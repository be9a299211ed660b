"""A gateway as a service: SIGTERM drains streams in flight and loses no record; SIGKILL mid-traffic leaves no torn
line; hostile engines neither grow it nor hang it."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.fakes.ollama_server import FakeOllama, slow
from tests.fakes.wire_attacks import attack_server
from tests.unit.gateway.conftest import verify


def _chat(url: str, out: list, errors: list) -> None:
    try:
        with httpx.stream("POST", f"{url}/api/chat", timeout=30,
                          json={"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}]}) as r:
            out.append(b"".join(r.iter_bytes()))
    except httpx.HTTPError as exc:
        errors.append(exc)


def test_sigterm_drains_streams_in_flight(ollama_server: FakeOllama, gateway) -> None:
    ollama_server.queue(slow(0.05), times=4)
    gw = gateway(ollama_server.url, "--drain", "10")
    out: list[bytes] = []
    errors: list[Exception] = []
    clients = [threading.Thread(target=_chat, args=(gw.url, out, errors)) for _ in range(4)]
    for c in clients:
        c.start()
    deadline = time.monotonic() + 5
    while ollama_server.active < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gw.stop(signal.SIGTERM) == 0
    for c in clients:
        c.join(10)
    assert not errors and len(out) == 4 and all(b'"done":true' in body for body in out)
    recs = gw.records()
    assert len(recs) == 4 and {r["outcome"] for r in recs} == {"ok"}
    assert [e["event"] for e in gw.events()][-1] == "stopped"
    verify(gw)


def test_sigterm_past_the_drain_still_records(ollama_server: FakeOllama, gateway) -> None:
    ollama_server.queue(slow(1.0))
    gw = gateway(ollama_server.url, "--drain", "1")
    out: list[bytes] = []
    errors: list[Exception] = []
    client = threading.Thread(target=_chat, args=(gw.url, out, errors))
    client.start()
    while ollama_server.active < 1:
        time.sleep(0.02)
    t0 = time.monotonic()
    assert gw.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < 8  # the drain is bounded
    client.join(10)
    (rec,) = gw.records()
    assert rec["outcome"] == "timeout" and "stopped" in rec["error"]
    verify(gw)


def test_sigkill_mid_traffic_leaves_whole_lines(ollama_server: FakeOllama, gateway, tmp_path: Path) -> None:
    gw = gateway(ollama_server.url)
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    c.post(f"{gw.url}/api/generate", json={"model": "llama3.2:1b", "prompt": "x", "stream": False})

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait(5)
    stop.set()
    for t in threads:
        t.join(15)
    reports = verify(gw)
    assert sum(r["counts"]["valid"] for r in reports) > 10
    # A power cut can leave a cut-short last line: the next start removes it, says so, and the log verifies.
    torn = b'{"timestamp": "2026-12-07T00:00:00.000Z", "meth'
    with (gw.log_dir / "requests.jsonl").open("ab") as f:
        f.write(torn)
    again = gateway(ollama_server.url, log_dir=gw.log_dir)
    httpx.get(f"{again.url}/api/tags")
    again.stop()
    assert any(e["event"] == "log_repaired" and e["removed_bytes"] == len(torn) for e in again.events())
    verify(again)


# Each attack against a gateway with short deadlines and small limits: the client gets an answer (or a cut-short
# one) in time, the record says what happened, and the gateway's memory stays flat.
HOSTILE_CONFIG = """
connect_timeout = 2
request_timeout = 2
first_byte_timeout = 2
idle_timeout = 2
[limits]
stream = "4 MiB"
other = "1 MiB"
line = "64 KiB"
"""


@pytest.mark.parametrize("attack", ["endless_json", "endless_lines", "huge_line", "drip", "drip_head", "gzip_bomb",
                                    "long_length", "broken_chunked", "not_http", "endless_head", "interim_storm"])
def test_hostile_upstreams(attack: str, gateway) -> None:
    with attack_server(attack) as url:
        gw = gateway(url, config=HOSTILE_CONFIG)
        proc = psutil.Process(gw.proc.pid)
        before = proc.memory_info().rss
        t0 = time.monotonic()
        for path in ("/api/chat", "/v1/chat/completions"):
            try:
                with httpx.stream("POST", f"{gw.url}{path}", json={"model": "m", "stream": True}, timeout=20) as r:
                    for _ in r.iter_raw():
                        pass
            except httpx.HTTPError:
                pass  # a cut-short answer is what the client should get
        took = time.monotonic() - t0
        grown = proc.memory_info().rss - before
        recs = gw.wait_records(2)
    assert took < 2 * (2 + 2) + 4, took
    assert grown < 40 * 1024 * 1024, grown
    assert all(r["outcome"] in ("upstream_error", "timeout") for r in recs), recs
    verify(gw)
