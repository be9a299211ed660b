"""A gateway served by several worker processes (console/gateway/workers.py): the load spread over them, one signed
log and one live view, a drain that loses no record, a dead worker replaced, no worker outliving its supervisor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest

from tests.unit.gateway.conftest import ROOT, verify

BODY = {"model": "synthetic", "stream": True, "max_tokens": 30, "messages": [{"role": "user", "content": "x"}]}


def _workers(gw) -> list[psutil.Process]:
    """The supervisor's live workers (a killed one, a zombie until reaped, is not one)."""
    out = []
    for p in psutil.Process(gw.proc.pid).children():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "console.gateway.workers" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass
    return out


def _streams(url: str, n: int, out: list[int]) -> list[threading.Thread]:
    def one() -> None:
        with httpx.Client() as client, client.stream("POST", f"{url}/v1/chat/completions", json=BODY,
                                                     timeout=30) as r:
            out.append(sum(1 for line in r.iter_lines() if line.startswith("data:")))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_two_workers_share_the_connections_and_write_one_log(synthetic_engine, gateway) -> None:
    eng = synthetic_engine(ttft_s=0.01, itl_s=0.05)
    gw = gateway(eng.url, "--workers", "2")
    workers = _workers(gw)
    assert len(workers) == 2
    done: list[int] = []
    threads = _streams(gw.url, 16, done)
    time.sleep(0.8)  # every stream is open for 1.5 s
    held = [sum(1 for c in w.net_connections() if c.status == "ESTABLISHED" and c.laddr.port == _port(gw.url))
            for w in workers]
    snapshot = subprocess.run([sys.executable, "-m", "console", "--no-discover", "traffic", "--json", "--socket",
                               str(gw.log_dir / "live.sock")], cwd=ROOT, capture_output=True, text=True, timeout=30)
    for t in threads:
        t.join(30)
    assert min(held) >= 1 and sum(held) == 16, held  # each worker holds some of the clients' connections
    live = json.loads(snapshot.stdout)
    flights = live["gateways"][0]["in_flight"]
    assert len(flights) == 16 and all(f["phase"] == "streaming" and f["chunks"] > 0 for f in flights)
    recs = gw.wait_records(16)
    assert len(done) == 16 and all(r["outcome"] == "ok" and r["status_code"] == 200 for r in recs)
    assert len({r["request_id"] for r in recs}) == 16
    verify(gw)  # one log, every line signed, from both workers


def test_sigterm_drains_every_worker_and_loses_no_record(synthetic_engine, gateway) -> None:
    eng = synthetic_engine(ttft_s=0.01, itl_s=0.05)
    gw = gateway(eng.url, "--workers", "2")
    workers = _workers(gw)
    done: list[int] = []
    threads = _streams(gw.url, 6, done)
    time.sleep(0.5)
    assert gw.stop(signal.SIGTERM, timeout=30) == 0
    for t in threads:
        t.join(30)
    assert len(done) == 6 and all(n >= 30 for n in done)  # each stream ran to its end during the drain
    assert len(gw.records()) == 6 and {r["outcome"] for r in gw.records()} == {"ok"}
    assert not any(w.is_running() for w in workers)
    assert any(e["event"] == "stopped" for e in gw.events())
    verify(gw)


def test_a_dead_worker_is_replaced_and_the_gateway_serves_on(ollama_server, gateway) -> None:
    gw = gateway(ollama_server.url, "--workers", "2")
    victim = _workers(gw)[0]
    victim.kill()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the replacement runs, and the line saying why has been read from stderr
        now = _workers(gw)
        died = [e for e in gw.events() if e["event"] == "worker_died"]
        if len(now) == 2 and victim.pid not in {w.pid for w in now} and died:
            break
        time.sleep(0.1)
    assert len(_workers(gw)) == 2
    assert [e["exit_code"] for e in gw.events() if e["event"] == "worker_died"] == [-9]
    for _ in range(8):
        assert httpx.get(f"{gw.url}/api/tags", timeout=10).status_code == 200
    assert len(gw.wait_records(8)) == 8
    verify(gw)


def test_workers_do_not_outlive_a_killed_supervisor(ollama_server, gateway) -> None:
    gw = gateway(ollama_server.url, "--workers", "2")
    workers = _workers(gw)
    os.kill(gw.proc.pid, signal.SIGKILL)
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive


def test_capture_with_workers_is_refused_in_one_line(tmp_path) -> None:
    (tmp_path / "c.toml").write_text("")
    res = subprocess.run([sys.executable, "-m", "console", "--no-discover", "--config", str(tmp_path / "c.toml"),
                          "gateway", "--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9", "--workers", "2",
                          "--capture", "1MiB", "--log-dir", str(tmp_path / "log")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "ENGINEDECK_DATA_DIR": str(tmp_path / "data")})
    assert res.returncode != 0 and "capture needs workers = 1" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("bad", ["0", "-1", "many"])
def test_bad_worker_counts_are_usage_errors(tmp_path, bad) -> None:
    res = subprocess.run([sys.executable, "-m", "console", "--no-discover", "gateway", "--listen", "127.0.0.1:0",
                          "--upstream", "http://127.0.0.1:9", "--workers", bad], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "ENGINEDECK_DATA_DIR": str(tmp_path)})
    assert res.returncode == 2 and "--workers" in res.stderr and "Traceback" not in res.stderr
