"""The httpx transports under every engine's client: the bounds on every answer, and keep-alive for plain http.

`BoundedTransport` wraps whichever transport speaks to the engine and holds every answer to the config's
deadlines and limits (console/config.py `Timeouts`, `WireLimits`; console/engines/wire.py says which limit an
answer falls under):
- a request that is not a stream must be answered whole within its deadline: `request_s`, or the read timeout a
  caller gave httpx for that call (a model load asks for `load_s`); a server that drips a byte at a time does not
  stretch it;
- an answer that is a stream (NDJSON or SSE: Ollama's pull) must bring a complete line within `idle_s` of the
  last one (`load_s` for a pull, whose digest check is silent for minutes), each line within `line_bytes`;
- a body is refused past the limit of its kind, counted after decompression: enginedeck asks for no
  compression, and a server that compresses anyway is decoded in bounded pieces, so a gzip bomb stops at the
  limit.
Going past any of these is a `LimitError` or `EngineTimeoutError` that names the engine, the endpoint and the
limit; the official `ollama` client, detection, the discovery scan and the metrics scrape all read through here.

`KeepAliveTransport` speaks HTTP/1.1 with keep-alive on the raw asyncio protocol of wire.py.

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
from typing import cast

import httpx

from console.config import Timeouts, WireLimits
from console.engines.wire import (
    HEAD_LIMIT,
    ContentDecoder,
    Framing,
    FramingError,
    HeadTooLarge,
    Length,
    Reads,
    UntilClose,
    answer_limit,
    body_framing,
    next_head,
    too_big,
    too_slow,
)
from console.errors import BadResponseError

RETRY_ON_STALE = (b"GET", b"HEAD", b"OPTIONS")


class _Conn:
    def __init__(self, reads: Reads, key: tuple[str, int]) -> None:
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
        for attempt in range(2):
            conn, reused = await self._connect(key, timeouts.get("connect"), request)
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
        reads = Reads(loop)  # BoundedTransport above holds the deadlines
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

    def __init__(self, transport: KeepAliveTransport, conn: _Conn, framing: Framing, *,
                 keep: bool, slots: asyncio.Semaphore, request: httpx.Request) -> None:
        self._transport = transport
        self._conn = conn
        self._framing = framing
        self._keep = keep and not isinstance(framing, UntilClose)
        self._slots = slots
        self._request = request
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        framing, reads = self._framing, self._conn.reads
        while not framing.done:
            try:
                got = await reads.next_read()
            except OSError as exc:
                raise httpx.ReadError(str(exc) or type(exc).__name__, request=self._request) from None
            try:
                if got is None:
                    framing.at_eof()
                    return
                data = framing.feed(got[1])
            except FramingError as exc:
                raise httpx.RemoteProtocolError(str(exc), request=self._request) from None
            if data:
                yield data

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._transport._release(self._conn, reusable=self._keep and self._framing.done)
        self._slots.release()


async def _read_head(reads: Reads, request: httpx.Request
                     ) -> tuple[int, dict[str, str], list[tuple[str, str]], bool]:
    """Status, headers by lower-cased name, the raw header list for httpx and whether the answer is HTTP/1.0.
    Failures are the httpx exceptions httpcore would raise, so console/engines/http.py words them as before."""
    try:
        status, headers, block = await next_head(reads, engine="")
    except OSError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from None
    except EOFError:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request) from None
    except HeadTooLarge:
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
             request: httpx.Request) -> Framing:
    """Where the body ends. Decoding a content-encoding is BoundedTransport's job, above this one."""
    if method == "HEAD" or status in (204, 304):
        return Length(0)
    try:
        return body_framing(headers, engine="")
    except BadResponseError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from None


# --------------------------------------------------------------------------------------------- bounds

STREAM_TYPES = ("application/x-ndjson", "text/event-stream")
# Streams that may fall silent for minutes: a pull verifies a digest of gigabytes before its next line.
LONG_STREAMS = ("/api/pull", "/api/push", "/api/create")


class BoundedTransport(httpx.AsyncBaseTransport):
    """Holds every answer of `inner` to one engine's deadlines and limits (see the module's docstring)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, engine: str, timeouts: Timeouts,
                 limits: WireLimits) -> None:
        self._inner = inner
        self._engine = engine
        self._timeouts = timeouts
        self._limits = limits

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Accept-Encoding"] = "identity"
        t = self._timeouts
        path = request.url.path
        endpoint = f"{request.method} {path}"
        # The read timeout httpx was given for this call is the whole answer's deadline: the client's default is
        # request_s, a model load asks for load_s.
        total = request.extensions.get("timeout", {}).get("read") or t.request_s
        key = "load_timeout" if total == t.load_s and total != t.request_s else "request_timeout"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + total
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._inner.handle_async_request(request)
        except TimeoutError:
            raise too_slow(f"{endpoint}: no answer", total, key, engine=self._engine) from None
        status = response.status_code
        content_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        streaming = status < 400 and content_type in STREAM_TYPES
        limit_name, limit = ("stream", self._limits.stream_bytes) if streaming else \
            answer_limit(self._limits, path, status)
        try:
            decoder = ContentDecoder.for_encoding(response.headers.get("content-encoding", ""), limit,
                                                  engine=self._engine)
        except BadResponseError:
            await response.aclose()
            raise
        headers = response.headers.raw if decoder is None else [
            (k, v) for k, v in response.headers.raw if k.lower() not in (b"content-encoding", b"content-length")]
        # An async transport answers with an async stream (httpx's client asserts as much).
        body = _BoundedBody(cast(httpx.AsyncByteStream, response.stream), engine=self._engine, endpoint=endpoint,
                            decoder=decoder, limit_name=limit_name, limit=limit, deadline=deadline, deadline_s=total,
                            key=key)
        if streaming:
            body.idle = (t.load_s, "load_timeout") if path in LONG_STREAMS else (t.idle_s, "idle_timeout")
            body.line_bytes = self._limits.line_bytes
        return httpx.Response(status, headers=headers, stream=body, request=request,
                              extensions=response.extensions)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _BoundedBody(httpx.AsyncByteStream):
    """An answer's body, read within its deadline and limits. A stream's deadline moves on each complete line."""

    idle: tuple[float, str] | None = None  # a stream's deadline between complete lines, and its config key
    line_bytes = 0

    def __init__(self, inner: httpx.AsyncByteStream, *, engine: str, endpoint: str, decoder: ContentDecoder | None,
                 limit_name: str, limit: int, deadline: float, deadline_s: float, key: str) -> None:
        self._inner = inner
        self._engine = engine
        self._endpoint = endpoint
        self._decoder = decoder
        self._limit_name = limit_name
        self._limit = limit
        self._deadline = deadline
        self._deadline_s = deadline_s
        self._key = key

    async def __aiter__(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        pieces = aiter(self._inner)
        size = since_newline = 0
        deadline, decoder = self._deadline, self._decoder
        idle_s = self.idle[0] if self.idle is not None else None
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    data = await anext(pieces)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise self._too_slow() from None
            if decoder is not None:
                try:
                    data = decoder.feed(data)
                except OverflowError:
                    raise self._too_big("the answer", self._limit_name, self._limit) from None
                except FramingError as exc:
                    raise BadResponseError(f"{self._endpoint}: {exc}", engine=self._engine) from None
            size += len(data)
            if size > self._limit:
                raise self._too_big("the answer", self._limit_name, self._limit)
            if idle_s is not None:
                newline = data.rfind(b"\n")
                if newline == -1:
                    since_newline += len(data)
                else:
                    since_newline = len(data) - newline - 1
                    deadline = loop.time() + idle_s
                if since_newline > self.line_bytes:
                    raise self._too_big("one line", "line", self.line_bytes)
            if data:
                yield data

    def _too_big(self, what: str, name: str, limit: int) -> Exception:
        return too_big(f"{self._endpoint}: {what}", name, limit, engine=self._engine)

    def _too_slow(self) -> Exception:
        if self.idle is not None:
            return too_slow(f"{self._endpoint}: no new line", *self.idle, engine=self._engine)
        return too_slow(f"{self._endpoint}: no whole answer", self._deadline_s, self._key, engine=self._engine)

    async def aclose(self) -> None:
        await self._inner.aclose()
