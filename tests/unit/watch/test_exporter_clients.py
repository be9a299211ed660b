"""Hostile clients of the exporter's own server: a client that drips its head, or holds a connection idle, is
answered and closed after the head deadline; connections past the cap get no thread; a scrape still answers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prometheus_client.core import GaugeMetricFamily

from console.engines.base import LoadedModel
from console.watch import exporter
from console.watch.collect import Collector
from tests.unit.watch.fakes import StubEngine, StubRegistry

HEAD_TIMEOUT_S = 2.0
CAP = 4


@pytest.fixture(autouse=True)
def small_bounds(monkeypatch):
    monkeypatch.setattr(exporter, "HEAD_TIMEOUT_S", HEAD_TIMEOUT_S, raising=False)
    monkeypatch.setattr(exporter, "MAX_CONNECTIONS", CAP, raising=False)
    monkeypatch.setattr(exporter, "MAX_PER_ADDRESS", CAP, raising=False)


@contextmanager
def running(loop: asyncio.AbstractEventLoop) -> Iterator[int]:
    collector = Collector(StubRegistry([StubEngine("ok", loaded=[LoadedModel("llama3")])]), deadline_s=0.5)
    server, thread = exporter.serve(collector, loop, host="127.0.0.1", port=0, host_name="box")
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    sock.settimeout(0.05)
    return sock


def _answer_or_none(sock: socket.socket) -> bytes | None:
    """What the server sent and whether it closed: None while the connection is open and silent."""
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except TimeoutError:
        return got or None
    except ConnectionResetError:
        pass
    return got + b"<closed>"


def _drip_until_answered(socks: list[socket.socket], limit_s: float) -> dict[int, tuple[float, bytes]]:
    """Send one byte of a header on each connection every 0.1 s, as slowloris does, until each is answered."""
    started, answered = time.monotonic(), {}
    for sock in socks:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    while len(answered) < len(socks) and time.monotonic() - started < limit_s:
        for i, sock in enumerate(socks):
            if i in answered:
                continue
            if (got := _answer_or_none(sock)) is not None:
                answered[i] = (time.monotonic() - started, got)
                continue
            try:
                sock.sendall(b"a")
            except OSError:
                answered[i] = (time.monotonic() - started, b"<reset>")
        time.sleep(0.1)
    return answered


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


async def test_clients_dripping_their_heads_get_408_after_the_head_deadline_and_a_scrape_answers_meanwhile():
    with running(asyncio.get_running_loop()) as port:
        drippers = [_connect(port) for _ in range(CAP - 1)]  # one slot left for the scrape
        try:
            dripping = asyncio.create_task(asyncio.to_thread(_drip_until_answered, drippers, 8.0))
            await asyncio.sleep(0.3)
            text = await asyncio.to_thread(_scrape, port)
            answered = await dripping
        finally:
            for sock in drippers:
                sock.close()
    assert 'enginedeck_model_loaded{engine="ok",model="llama3"} 1.0' in text
    # a drip never stretches the deadline: every dripper is answered soon after HEAD_TIMEOUT_S, then closed
    assert len(answered) == len(drippers), f"still open after 8 s: {len(drippers) - len(answered)}"
    for took, got in answered.values():
        assert got.startswith(b"HTTP/1.0 408 Request Timeout") and got.endswith(b"<closed>")
        assert HEAD_TIMEOUT_S * 0.8 < took < HEAD_TIMEOUT_S + 3.0


async def test_idle_connections_past_the_cap_get_503_and_no_thread_and_the_rest_close_at_the_deadline():
    with running(asyncio.get_running_loop()) as port:
        before = threading.active_count()
        idle = [_connect(port) for _ in range(CAP + 6)]
        try:
            await asyncio.sleep(0.4)
            threads = threading.active_count() - before
            early = [_answer_or_none(sock) for sock in idle]
            await asyncio.sleep(HEAD_TIMEOUT_S + 1.0)
            late = [_answer_or_none(sock) for sock in idle]
        finally:
            for sock in idle:
                sock.close()
    assert threads <= CAP
    refused = [got for got in early if got is not None]
    assert len(refused) == 6 and all(got.startswith(b"HTTP/1.0 503 Service Unavailable") for got in refused)
    # the ones that got a thread are answered 408 and closed once the head deadline passes: none stays open
    assert sum(got is None for got in early) == CAP
    assert all(got is not None and got.endswith(b"<closed>") for got in late)


async def test_one_address_holds_at_most_its_share_and_a_scrape_from_another_answers(monkeypatch):
    monkeypatch.setattr(exporter, "MAX_PER_ADDRESS", 2, raising=False)
    with running(asyncio.get_running_loop()) as port:
        idle = [_connect(port, source="127.0.0.2") for _ in range(CAP)]  # another host, as loopback can say it
        try:
            await asyncio.sleep(0.4)
            early = [_answer_or_none(sock) for sock in idle]
            text = await asyncio.to_thread(_scrape, port)
        finally:
            for sock in idle:
                sock.close()
    assert sum(got is None for got in early) == 2  # held, waiting for their heads
    assert all(got.startswith(b"HTTP/1.0 503") for got in early if got is not None)
    assert 'enginedeck_model_loaded{engine="ok",model="llama3"} 1.0' in text


async def test_an_endless_head_is_answered_431_and_closed():
    with running(asyncio.get_running_loop()) as port:
        sock = _connect(port)
        sock.settimeout(5)
        try:
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")
            with pytest.raises(OSError):  # the server stops reading and closes: the send fails in the end
                for _ in range(10_000):
                    sock.sendall(b"X-Endless: " + b"a" * 30_000 + b"\r\n")
            got = sock.recv(4096)
        except ConnectionResetError:
            got = b""  # the answer may be lost to the reset of a close with unread bytes; the close is what counts
        finally:
            sock.close()
    assert got == b"" or got.startswith(b"HTTP/1.0 431")


async def test_a_client_that_does_not_take_its_answer_is_cut_at_the_write_deadline_without_a_traceback(
        monkeypatch, capfd):
    def huge(snap, **_kw):  # ~16 MB of exposition: more than the sockets' buffers hold
        family = GaugeMetricFamily("enginedeck_filler", "filler", labels=["n"])
        for n in range(8_000):
            family.add_metric([f"{n:0>2000}"], 1.0)
        yield family

    monkeypatch.setattr(exporter, "families", huge)
    monkeypatch.setattr(exporter, "WRITE_TIMEOUT_S", 1.0, raising=False)
    with running(asyncio.get_running_loop()) as port:
        before = threading.active_count()
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.sleep(0.5)
            answering = threading.active_count() - before
            await asyncio.sleep(5.5)  # never read: the answer's write passes its deadline
            after = threading.active_count() - before
        finally:
            sock.close()
    assert answering == 1 and after == 0  # the thread answering it gave up and ended
    assert "Traceback" not in capfd.readouterr().err
