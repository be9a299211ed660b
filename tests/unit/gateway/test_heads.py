"""A client's request head is bounded in size (431) and in time (408), before any key is checked: uvicorn on
httptools bounds neither, and a client sending headers forever grew the gateway by gigabytes."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx
import psutil

from tests.unit.gateway.conftest import forwarded

SMALL = ('[[gateways]]\nname = "small"\nlisten = "127.0.0.1:0"\nupstream = "x"\n'
         'max_head_bytes = "8 KiB"\nhead_timeout_s = 1\n')


def _connect(url: str) -> socket.socket:
    where = urlsplit(url)
    sock = socket.create_connection((where.hostname, where.port), timeout=10)
    return sock


def _flood(sock: socket.socket, first: bytes, chunk: bytes, most: int) -> int:
    """Send `first`, then `chunk` until the gateway closes or `most` bytes went; the bytes sent."""
    sent = 0
    try:
        sock.sendall(first)
        while sent < most:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:  # the gateway closed its end: what we sent after that is refused
        pass
    return sent


def _answer(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:  # reset after the answer: what came before it counts
        pass
    return data


def test_headers_forever_get_431_and_the_memory_stays(gateway, ollama_server) -> None:
    gw = gateway(ollama_server.url, "small", config=SMALL)
    rss = psutil.Process(gw.proc.pid).memory_info().rss
    lines = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 200) for i in range(256))
    with _connect(gw.url) as sock:
        sent = _flood(sock, b"GET /api/tags HTTP/1.1\r\nHost: x\r\n", lines, 256 << 20)
        answer = _answer(sock)
    assert sent < 64 << 20  # the gateway stopped reading long before a quarter GB
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert psutil.Process(gw.proc.pid).memory_info().rss < rss + (64 << 20)
    assert httpx.get(f"{gw.url}/api/tags").status_code == 200  # the next client is served
    assert any(e["event"] == "head_refused" and e["status"] == 431 for e in gw.events())
    assert len(forwarded(ollama_server)) == 1  # only the well-formed request reached the engine


def test_one_endless_url_or_header_gets_431(gateway, ollama_server) -> None:
    gw = gateway(ollama_server.url, "small", config=SMALL)
    for first in (b"GET /", b"GET / HTTP/1.1\r\nX-Long: "):  # httptools joins the pieces of either itself
        with _connect(gw.url) as sock:
            _flood(sock, first, b"a" * 65536, 256 << 20)
            assert _answer(sock).startswith(b"HTTP/1.1 431 ")
    assert forwarded(ollama_server) == []


def test_a_head_that_never_completes_gets_408(gateway, ollama_server) -> None:
    gw = gateway(ollama_server.url, "small", config=SMALL)
    started = time.monotonic()
    with _connect(gw.url) as silent, _connect(gw.url) as dripping:
        dripping.sendall(b"GET /api/tags HTTP/1.1\r\n")
        for _ in range(4):  # a byte now and then is no progress: the head must be whole in time
            time.sleep(0.3)
            try:
                dripping.sendall(b"X")
            except OSError:
                break
        assert _answer(dripping).startswith(b"HTTP/1.1 408 ")
        assert _answer(silent).startswith(b"HTTP/1.1 408 ")  # connected, said nothing
    assert time.monotonic() - started < 10
    assert forwarded(ollama_server) == []


def test_a_big_body_and_a_big_head_within_bounds_pass(gateway, ollama_server) -> None:
    gw = gateway(ollama_server.url, "small", config=SMALL)
    # A head just under the bound, and a body 100 times the head bound sent with it: neither is refused.
    answer = httpx.post(f"{gw.url}/api/show", headers={"X-Pad": "p" * 7000},
                        json={"model": "nope", "pad": "b" * (800 << 10)})
    assert answer.status_code == 404  # the engine's own answer for an unknown model
    assert len(forwarded(ollama_server)) == 1
    # Keep-alive: the second request on the same connection gets its own clock, after an idle pause.
    with httpx.Client() as client:
        assert client.get(f"{gw.url}/api/tags").status_code == 200
        time.sleep(1.5)
        assert client.get(f"{gw.url}/api/tags").status_code == 200
