"""The keep-alive transport of plain-http engine clients (console/engines/transport.py), against a small HTTP/1.1
server whose every answer a test scripts: reuse, the server closing kept connections, stalls, cut bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from console.config import EngineConfig, Timeouts
from console.engines.http import build_client, request, request_json
from console.errors import EngineTimeoutError, UnreachableError

Reply = Callable[[asyncio.StreamWriter], bytes | None]  # bytes to send; None: close without answering


def ok(body: bytes = b'{"models": []}', extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


class Scripted:
    """Answers requests in order with the scripted replies (then `ok()`), counting connections and requests."""

    def __init__(self, *replies: bytes | str | None) -> None:
        self.replies = list(replies)
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                reply = self.replies.pop(0) if self.replies else ok()
                if reply is None:  # close without answering
                    writer.close()
                    return
                if reply == "stall":
                    await asyncio.sleep(30)
                    return
                if reply == "close-after":
                    writer.write(ok())
                    await writer.drain()
                    writer.close()
                    return
                assert isinstance(reply, bytes)
                writer.write(reply)
                await writer.drain()
                if b"Connection: close" in reply or b"\r\n\r\n" not in reply:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return


def client(url: str, **kw: object) -> httpx.AsyncClient:
    return build_client(EngineConfig(name="e", url=url, timeouts=Timeouts.within(0.5, connect_s=2)), **kw)


async def test_a_kept_connection_serves_request_after_request():
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"6\r\n{\"a\": \r\n2\r\n1}\r\n0\r\n\r\n")
    async with Scripted(ok(), chunked, ok(b'{"b": 2}')) as srv, client(srv.url) as c:
        assert await request_json(c, "GET", "/api/ps", engine="e") == {"models": []}
        assert await request_json(c, "GET", "/x", engine="e") == {"a": 1}
        assert await request_json(c, "POST", "/y", engine="e", json={"k": 1}) == {"b": 2}
    assert srv.connections == 1 and len(srv.requests) == 3
    assert srv.requests[2].endswith(b'{"k":1}') and b"Content-Length: 7" in srv.requests[2]


async def test_a_connection_the_server_closed_is_not_reused():
    script = ("close-after", ok(b'{"n": 2}'), ok(b'{"n": 3}', "Connection: close\r\n"), ok())
    async with Scripted(*script) as srv, client(srv.url) as c:
        for _ in range(4):
            await request_json(c, "GET", "/api/ps", engine="e")
            await asyncio.sleep(0.01)  # let the EOF of a closed connection arrive, as between polls
    assert srv.connections == 3  # a new one after the close, one more after `Connection: close`


async def test_a_get_on_a_connection_closed_as_it_was_sent_is_retried_once_and_a_post_is_not():
    async with Scripted(ok(), None, ok(b'{"n": 2}'), None) as srv, client(srv.url) as c:
        await request_json(c, "GET", "/a", engine="e")
        assert await request_json(c, "GET", "/b", engine="e") == {"n": 2}  # retried on a new connection
        with pytest.raises(UnreachableError, match="broke"):
            await request_json(c, "POST", "/load", engine="e", json={})  # the engine may have acted on it
    assert srv.connections == 2


async def test_a_stall_is_a_timeout_and_a_cut_body_is_a_broken_connection():
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"partial\""
    async with Scripted("stall") as srv, client(srv.url) as c:
        with pytest.raises(EngineTimeoutError):
            await request_json(c, "GET", "/api/ps", engine="e")
    async with Scripted(cut) as srv, client(srv.url) as c:
        with pytest.raises(UnreachableError, match="broke"):
            await request_json(c, "GET", "/api/ps", engine="e")


async def test_an_unread_body_frees_its_slot_and_its_connection_is_not_kept():
    big = ok(b"[" + b"1," * 2_000_000 + b"1]")  # many reads: walking away leaves most of it unread
    async with Scripted(big, ok()) as srv, client(srv.url, max_connections=1) as c:
        async with c.stream("GET", "/big") as resp:
            async for _ in resp.aiter_raw():
                break  # walk away after the first piece
        assert await request_json(c, "GET", "/api/ps", engine="e") == {"models": []}  # the one slot is free
    assert srv.connections == 2


async def test_the_pool_caps_connections_and_queues_the_rest():
    async with Scripted() as srv, client(srv.url, max_connections=2) as c:
        answers = await asyncio.gather(*(request_json(c, "GET", f"/{i}", engine="e") for i in range(6)))
    assert answers == [{"models": []}] * 6 and srv.connections <= 2


async def test_not_http_at_all_is_a_clear_error():
    async with Scripted(b"SSH-2.0-OpenSSH_9.6\r\n\r\n") as srv, client(srv.url) as c:
        with pytest.raises(UnreachableError, match="not HTTP"):
            await request(c, "GET", "/", engine="e")


async def test_nothing_listening_is_unreachable():
    async with Scripted() as srv:
        url = srv.url
    async with client(url) as c:
        with pytest.raises(UnreachableError, match=r"cannot connect|refused"):
            await request_json(c, "GET", "/api/ps", engine="e")


def test_one_client_works_from_two_event_loops():
    """The TUI's probe runs its own loop in a thread: kept connections of another loop are not reused there."""

    c = client("http://127.0.0.1:9")

    async def run_once() -> object:
        async with Scripted() as srv:
            c.base_url = httpx.URL(srv.url)
            return await request_json(c, "GET", "/api/ps", engine="e")

    assert asyncio.run(run_once()) == {"models": []}
    assert asyncio.run(run_once()) == {"models": []}
