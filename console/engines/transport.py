"""The httpx transport for plain-http engines: HTTP/1.1 with keep-alive on the raw asyncio protocol of stream.py.

Why: the dashboard asks every engine what it has loaded once a second. Through httpx's default transport
(httpcore, h11, anyio) one such GET costs ~0.9 ms of CPU on the 2-core box; through this one ~0.3 ms, most of
it httpx's own client layer, which stays: adapters, error mapping and the official `ollama` client see the same
`httpx.AsyncClient` and the same httpx exceptions as before. https engines keep httpx's default transport.

One connection per request in flight, kept open afterwards for the next request to the same host when the
answer was complete and the server did not ask to close. A kept connection the server has closed meanwhile is
noticed before reuse (its protocol saw the EOF); one that closes as a GET is sent is retried once on a new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from console.engines.stream import (
    HEAD_LIMIT,
    _body_framing,
    _Chunked,
    _Framing,
    _HeadTooLarge,
    _Length,
    _next_head,
    _Reads,
    _UntilClose,
)
from console.errors import BadResponseError

RETRY_ON_STALE = (b"GET", b"HEAD", b"OPTIONS")


class _Conn:
    def __init__(self, reads: _Reads, key: tuple[str, int]) -> None:
        self.reads = reads
        self.key = key

    @property
    def usable(self) -> bool:
        return not self.reads.ended and self.reads.error is None and not self.reads.reads


class KeepAliveTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int = 100) -> None:
        self.max_connections = max_connections
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._idle: dict[tuple[str, int], list[_Conn]] = {}

    def _for_this_loop(self) -> asyncio.Semaphore:
        # Connections and the semaphore belong to one event loop; the TUI's probe runs its own in a thread.
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            self._close_idle()
            self._loop, self._slots = loop, asyncio.Semaphore(self.max_connections)
        return self._slots

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        slots = self._for_this_loop()
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no connection free within the pool timeout", request=request) from None
        try:
            return await self._exchange(request, timeouts, slots)
        except BaseException:
            slots.release()
            raise

    async def _exchange(self, request: httpx.Request, timeouts: dict[str, float | None],
                        slots: asyncio.Semaphore) -> httpx.Response:
        url = request.url
        key = (url.host, url.port or 80)
        body = await request.aread()
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), url.raw_path)]
        for name, value in request.headers.raw:
            if name.lower() not in (b"transfer-encoding", b"content-length", b"connection"):
                head.append(b"%s: %s\r\n" % (name, value))
        if body or request.method not in ("GET", "HEAD", "OPTIONS", "DELETE"):
            head.append(b"Content-Length: %d\r\n" % len(body))
        head.append(b"\r\n")
        wire = b"".join(head) + body
        read_s = timeouts.get("read")
        for attempt in range(2):
            conn, reused = await self._connect(key, timeouts.get("connect"), request)
            conn.reads.timeout_s = read_s if read_s is not None else 1e9
            assert conn.reads.transport is not None
            conn.reads.transport.write(wire)
            try:
                status, headers, raw, http10 = await _read_head(conn.reads, request)
            except httpx.RemoteProtocolError:
                conn.reads.close()
                if reused and attempt == 0 and request.method.encode() in RETRY_ON_STALE:
                    continue  # the server closed the kept connection as the request went out
                raise
            except BaseException:
                conn.reads.close()
                raise
            break
        framing = _framing(request.method, status, headers, request)
        # HTTP/1.0 closes after each answer unless it says keep-alive (Python's http.server speaks it by default).
        connection = headers.get("connection", "").lower()
        keep = connection == "keep-alive" if http10 else connection != "close"
        stream = _Body(self, conn, framing, keep=keep, slots=slots, request=request)
        return httpx.Response(status, headers=raw, stream=stream, request=request,
                              extensions={"http_version": b"HTTP/1.1", "reason_phrase": b""})

    async def _connect(self, key: tuple[str, int], connect_s: float | None,
                       request: httpx.Request) -> tuple[_Conn, bool]:
        idle = self._idle.get(key, [])
        while idle:
            conn = idle.pop()
            if conn.usable:
                return conn, True
            conn.reads.close()
        loop = asyncio.get_running_loop()
        reads = _Reads(loop, 1e9)
        try:
            async with asyncio.timeout(connect_s):
                await loop.create_connection(lambda: reads, key[0], key[1])
        except TimeoutError:
            raise httpx.ConnectTimeout("connecting timed out", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from None
        return _Conn(reads, key), False

    def _release(self, conn: _Conn, *, reusable: bool) -> None:
        if reusable and conn.usable and self._loop is asyncio.get_running_loop():
            self._idle.setdefault(conn.key, []).append(conn)
        else:
            conn.reads.close()

    def _close_idle(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                if not conn.reads.loop.is_closed():  # a finished loop already dropped its sockets
                    conn.reads.close()
        self._idle.clear()

    async def aclose(self) -> None:
        self._close_idle()


class _Body(httpx.AsyncByteStream):
    """The body as it arrives; its connection goes back to the pool only when the body was read to its end."""

    def __init__(self, transport: KeepAliveTransport, conn: _Conn, framing: _Chunked | _Length | _UntilClose, *,
                 keep: bool, slots: asyncio.Semaphore, request: httpx.Request) -> None:
        self._transport = transport
        self._conn = conn
        self._framing = framing
        self._keep = keep and not isinstance(framing, _UntilClose)
        self._slots = slots
        self._request = request
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        framing, reads = self._framing, self._conn.reads
        while not framing.done:
            try:
                got = await reads.next_read()
            except TimeoutError:
                raise httpx.ReadTimeout("no data within the read timeout", request=self._request) from None
            except OSError as exc:
                raise httpx.ReadError(str(exc) or type(exc).__name__, request=self._request) from None
            try:
                if got is None:
                    framing.at_eof()
                    return
                data = framing.feed(got[1])
            except _Framing as exc:
                raise httpx.RemoteProtocolError(str(exc), request=self._request) from None
            if data:
                yield data

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._transport._release(self._conn, reusable=self._keep and self._framing.done)
        self._slots.release()


async def _read_head(reads: _Reads, request: httpx.Request
                     ) -> tuple[int, dict[str, str], list[tuple[str, str]], bool]:
    """Status, headers by lower-cased name, the raw header list for httpx and whether the answer is HTTP/1.0.
    Failures are the httpx exceptions httpcore would raise, so console/engines/http.py words them as before."""
    try:
        status, headers, block = await _next_head(reads, engine="")
    except TimeoutError:
        raise httpx.ReadTimeout("no answer within the read timeout", request=request) from None
    except OSError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from None
    except EOFError:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request) from None
    except _HeadTooLarge:
        raise httpx.RemoteProtocolError(f"response headers over {HEAD_LIMIT >> 10} KiB", request=request) from None
    except BadResponseError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from None
    raw = []
    for line in block.decode("latin-1").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            raw.append((name.strip(), value.strip()))
    return status, headers, raw, block.startswith(b"HTTP/1.0")


def _framing(method: str, status: int, headers: dict[str, str],
             request: httpx.Request) -> _Chunked | _Length | _UntilClose:
    """Where the body ends. Decoding a content-encoding is httpx's job, above the transport."""
    if method == "HEAD" or status in (204, 304):
        return _Length(0)
    try:
        return _body_framing(headers, engine="")
    except BadResponseError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from None
