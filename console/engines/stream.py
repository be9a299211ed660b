"""The chat streams' transport: one HTTP/1.1 request per connection on a raw asyncio protocol.

Why not httpx here (every other call uses it, through console/engines/http.py): its stack (httpcore, h11,
anyio) costs 0.1–0.4 ms of CPU per network read. A batching engine sends the chunks of N streams in lock step,
so one Python thread stamped the last of N chunks about N × that cost after it arrived. Here each read is
stamped in `data_received`, which the event loop calls for every socket select() found ready before it runs
any coroutine those reads wake: the stamps of one batch are taken together, and parsing comes after.

`StreamClient.open()` connects, sends the request, reads the status line and headers, and turns a non-2xx
answer into the typed error http.py would give. `StreamResponse.lines()` then decodes the body (chunked,
Content-Length, or until close) and yields `(arrival_ns, line)`: a line carries the stamp of the read that
completed it. Failures before the body raise the wording of `error_for_transport`; failures inside the body
raise `StreamError` (broken, cut short), `EngineTimeoutError` (stalled) or `LimitError` (a line or the whole
stream too long), which the adapters yield as one ERROR event.

Deadlines (console/config.py `Timeouts`): the answer's head and its first complete line must come within
`first_byte_s` of connecting (the engine may load the model first); after that each complete line must come
within `idle_s` of the one before. Only a complete line moves the deadline, so a server that drips bytes without
finishing a line is stalled. Sizes (`WireLimits`): a line past `line_bytes`, a stream past `stream_bytes`, an
error body past `error_bytes` and a whole-body answer past `other_bytes` are refused.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from console.config import EngineConfig
from console.engines.http import cannot_connect, connection_broke, error_for_status, tls_verify
from console.engines.wire import (
    HEAD_LIMIT,
    ContentDecoder,
    FramingError,
    HeadTooLarge,
    LineSplitter,
    LineTooLong,
    Reads,
    body_framing,
    next_head,
    too_big,
    too_slow,
)
from console.errors import BadResponseError, ConfigError, EngineError, StreamError

# For a caller that asks (the probe): the perf_counter_ns moment each request's bytes went to the socket. A
# request that waits for its connection on a busy event loop waits on the client, not the engine, so the probe
# measures from here.
WIRE_STAMPS: ContextVar[list[int] | None] = ContextVar("wire_stamps", default=None)


def _ssl_context(cfg: EngineConfig) -> ssl.SSLContext:
    """The context for an https engine, by the rules every httpx client follows (http.py's `tls_verify`)."""
    verify = tls_verify(cfg)
    if isinstance(verify, ssl.SSLContext):
        return verify
    import certifi  # httpx's default CA bundle: both transports trust the same authorities

    ctx = ssl.create_default_context(cafile=certifi.where())
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class StreamResponse:
    """Status, headers and the body of one streamed answer. Its connection closes with the `open()` block."""

    def __init__(self, reads: Reads, status: int, headers: Mapping[str, str], *, cfg: EngineConfig,
                 endpoint: str) -> None:
        self.status = status
        self.headers = headers
        self._reads = reads
        self._cfg = cfg
        self._engine = cfg.name
        self._endpoint = endpoint
        self._framing = body_framing(dict(headers), engine=cfg.name)
        # Asked for no compression; a proxy that compresses anyway is undone within the stream's limit.
        self._decoder = ContentDecoder.for_encoding(headers.get("content-encoding", ""), cfg.limits.stream_bytes,
                                                    engine=cfg.name)
        self._first_line = False

    async def _read(self) -> tuple[int, bytes] | None:
        try:
            return await self._reads.next_read()
        except TimeoutError:
            t = self._cfg.timeouts
            if self._first_line:
                raise too_slow(f"{self._endpoint}: no new line", t.idle_s, "idle_timeout",
                               engine=self._engine) from None
            raise too_slow(f"{self._endpoint}: no first line", t.first_byte_s, "first_byte_timeout",
                           engine=self._engine) from None
        except OSError as exc:  # reset, broken pipe, TLS failure
            raise StreamError(f"the connection broke mid-reply ({_reason(exc)})", engine=self._engine) from None

    async def _next_piece(self) -> tuple[int, bytes] | None:
        """The next non-empty run of body bytes with its arrival stamp; None at the end of the body."""
        framing, decoder = self._framing, self._decoder
        while not framing.done:
            got = await self._read()
            try:
                if got is None:
                    framing.at_eof()
                    return None
                body = framing.feed(got[1])
                if decoder is not None:
                    body = decoder.feed(body)
            except FramingError as exc:
                raise StreamError(f"the connection broke mid-reply ({exc})", engine=self._engine) from None
            except OverflowError:
                raise too_big(f"{self._endpoint}: the stream", "stream", self._cfg.limits.stream_bytes,
                              engine=self._engine) from None
            if body:
                return got[0], body
        return None

    async def lines(self) -> AsyncIterator[tuple[int, str]]:
        """Every line of the body with the arrival stamp of the read that completed it; a last line without its
        newline comes at the end with the stamp of the last read."""
        limits, idle_s = self._cfg.limits, self._cfg.timeouts.idle_s
        splitter = LineSplitter(limits.line_bytes)
        reads, loop = self._reads, self._reads.loop
        t_ns = time.perf_counter_ns()
        size = 0
        while (piece := await self._next_piece()) is not None:
            t_ns, data = piece
            size += len(data)
            if size > limits.stream_bytes:
                raise too_big(f"{self._endpoint}: the stream", "stream", limits.stream_bytes, engine=self._engine)
            try:
                lines = splitter.feed(data)
            except LineTooLong:
                raise too_big(f"{self._endpoint}: one line", "line", limits.line_bytes, engine=self._engine) from None
            if lines:
                self._first_line = True
                reads.deadline = loop.time() + idle_s
                for line in lines:
                    yield t_ns, line
        tail = splitter.flush()
        if tail is not None:
            yield t_ns, tail

    async def read(self) -> bytes:
        """The whole body (a server that answered a stream request with one JSON reply); it must come whole
        within the first-byte deadline, and within the `other` size limit."""
        limit = self._cfg.limits.other_bytes
        parts: list[bytes] = []
        size = 0
        while (piece := await self._next_piece()) is not None:
            parts.append(piece[1])
            size += len(piece[1])
            if size > limit:
                raise too_big(f"{self._endpoint}: the answer", "other", limit, engine=self._engine)
        return b"".join(parts)

    async def _error_body(self) -> bytes:
        """As much of an error body as is worth showing; a body that breaks off still says something."""
        limit = self._cfg.limits.error_bytes
        parts: list[bytes] = []
        size = 0
        try:
            while size < limit and (piece := await self._next_piece()) is not None:
                parts.append(piece[1])
                size += len(piece[1])
        except EngineError:
            pass
        return b"".join(parts)[:limit]


class StreamClient:
    """Streams from one engine: its address, key, TLS settings, deadlines, limits and connection cap."""

    def __init__(self, cfg: EngineConfig, *, max_connections: int = 100) -> None:
        self.cfg = cfg
        self.max_connections = max_connections
        self._base = cfg.url.rstrip("/")
        key = cfg.resolve_api_key()
        if key and any(c in key for c in "\r\n\0"):  # it goes into a header line as it is
            raise ConfigError(f"engine {cfg.name!r}: the API key holds a line break or NUL",
                              hint="check the value api_key_env or api_key_file points at")
        self._auth = f"Authorization: Bearer {key}\r\n" if key else ""
        self._ssl: ssl.SSLContext | None = None  # built on the first https stream: it costs tens of ms
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def _semaphore(self) -> asyncio.Semaphore:
        # A semaphore belongs to one event loop; the TUI's probe runs its own loop in a worker thread.
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.max_connections))
        return self._slots[1]

    @asynccontextmanager
    async def open(self, method: str, path: str, *, json_body: Any, what: str,
                   model: str | None = None) -> AsyncIterator[StreamResponse]:
        """Send one request and read the answer's head. A non-2xx answer raises its typed error (`what` says
        what was being asked, `model` which model it was about); the connection closes when the block ends,
        however it ends."""
        url = f"{self._base}{path}"
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"engine {self.cfg.name!r}: url {self.cfg.url!r} is not an http:// or https:// address")
        tls = parts.scheme == "https"
        if tls and self._ssl is None:
            self._ssl = _ssl_context(self.cfg)
        port = parts.port or (443 if tls else 80)
        body = json.dumps(json_body).encode()
        request = (
            f"{method} {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n"
            f"Host: {parts.netloc.rpartition('@')[2]}\r\n"
            f"User-Agent: enginedeck\r\n{self._auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Accept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
        ).encode("latin-1") + body
        engine, t = self.cfg.name, self.cfg.timeouts
        endpoint = f"{method} {parts.path or '/'}"
        loop = asyncio.get_running_loop()
        reads = Reads(loop)
        async with self._semaphore():
            try:
                try:
                    async with asyncio.timeout(t.connect_s):
                        await loop.create_connection(lambda: reads, parts.hostname, port,
                                                     ssl=self._ssl if tls else None)
                except TimeoutError:
                    raise too_slow(f"{endpoint}: could not connect to {url}", t.connect_s, "connect_timeout",
                                   engine=engine) from None
                except OSError as exc:  # refused, no route, unknown name, TLS verification
                    raise cannot_connect(url, _reason(exc), engine=engine) from None
                assert reads.transport is not None
                reads.deadline = loop.time() + t.first_byte_s
                if (stamps := WIRE_STAMPS.get()) is not None:
                    stamps.append(time.perf_counter_ns())
                reads.transport.write(request)
                status, headers = await _read_head(reads, url=url, endpoint=endpoint, cfg=self.cfg)
                response = StreamResponse(reads, status, headers, cfg=self.cfg, endpoint=endpoint)
                if not 200 <= status < 300:
                    raise error_for_status(status, await response._error_body(), engine=engine, what=what,
                                           model=model)
                yield response
            finally:
                reads.close()


async def _read_head(reads: Reads, *, url: str, endpoint: str, cfg: EngineConfig) -> tuple[int, dict[str, str]]:
    engine = cfg.name
    try:
        status, headers, _ = await next_head(reads, engine=engine)
    except TimeoutError:
        raise too_slow(f"{endpoint}: no answer", cfg.timeouts.first_byte_s, "first_byte_timeout",
                       engine=engine) from None
    except OSError as exc:
        raise connection_broke(url, _reason(exc), engine=engine) from None
    except EOFError:
        raise connection_broke(url, "closed without an answer", engine=engine) from None
    except HeadTooLarge:
        raise BadResponseError(f"sent response headers over {HEAD_LIMIT >> 10} KiB", engine=engine) from None
    return status, headers


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
