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
raise `StreamError` (broken, cut short) or `EngineTimeoutError` (stalled), which the adapters yield as one
ERROR event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from console.config import EngineConfig
from console.engines.http import cannot_connect, connection_broke, error_for_status, no_answer_in_time, tls_verify
from console.errors import BadResponseError, ConfigError, EngineError, StreamError

READ_BUFFER_LIMIT = 1 << 20  # bytes read but not yet consumed before the socket is paused
HEAD_LIMIT = 64 * 1024
ERROR_BODY_READ = 64 * 1024  # error_for_status keeps far less; the rest of a huge error page is not read
WHOLE_BODY_LIMIT = 16 << 20  # a server that ignored `stream: true` sends the whole reply as one body
SIZE_LINE_LIMIT = 4096  # a chunk-size line (with extensions) longer than this is not HTTP


class SSELineSplitter:
    """Split a byte stream into lines, whatever the read boundaries.

    Lines end in LF, CRLF or CR (the SSE spec allows all three; NDJSON never holds a raw CR inside a line).
    Splitting happens on bytes, so a multibyte UTF-8 character cut across two reads is joined before decoding:
    no newline byte occurs inside one.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[str]:
        """The lines completed by `data`. One pass over the buffer, so a large read stays linear."""
        buf = self._buf
        if not buf and b"\r" not in data:  # the common read: whole LF-ended lines, nothing held over
            *lines, rest = data.split(b"\n")
            buf += rest
            return [line.decode("utf-8", "replace") for line in lines]
        buf += data
        lines: list[str] = []
        start = 0
        while True:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, lf if lf != -1 else len(buf))
            if cr != -1:
                if cr == len(buf) - 1:
                    break  # a CR at the end may be the first half of CRLF: wait for the next read
                lines.append(buf[start:cr].decode("utf-8", "replace"))
                start = cr + 2 if buf[cr + 1] == 0x0A else cr + 1
            elif lf != -1:
                lines.append(buf[start:lf].decode("utf-8", "replace"))
                start = lf + 1
            else:
                break
        del buf[:start]
        return lines

    def flush(self) -> str | None:
        """The unterminated tail at EOF, if any (a server that closes without a final newline)."""
        if not self._buf:
            return None
        tail = bytes(self._buf).decode("utf-8", "replace")
        self._buf.clear()
        return tail


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


# --------------------------------------------------------------------------------------------- reading


class _Reads(asyncio.Protocol):
    """Keeps every read with its arrival stamp; the consumer drains them at its own pace."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.loop = loop
        self.timeout_s = timeout_s
        self.reads: deque[tuple[int, bytes]] = deque()
        self.buffered = 0
        self.transport: asyncio.Transport | None = None
        self.ended = False
        self.error: Exception | None = None
        self.paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._wait_since = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reads.append((time.perf_counter_ns(), data))  # the stamp first: it is why this class exists
        self.buffered += len(data)
        if self.buffered > READ_BUFFER_LIMIT and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = self.error or exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_read(self) -> tuple[int, bytes] | None:
        """The oldest unconsumed read; None once the peer closed and all was consumed. Raises what broke the
        connection, or TimeoutError after `timeout_s` of waiting with nothing arriving."""
        while not self.reads:
            if self.error is not None:
                raise self.error
            if self.ended:
                return None
            waiter = self._waiter = self.loop.create_future()
            self._wait_since = self.loop.time()
            if self._timer is None:
                self._timer = self.loop.call_at(self._wait_since + self.timeout_s, self._check_timeout)
            try:
                await waiter
            finally:
                self._waiter = None
        t_ns, data = self.reads.popleft()
        self.buffered -= len(data)
        if self.paused and self.buffered < READ_BUFFER_LIMIT // 4 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return t_ns, data

    def _check_timeout(self) -> None:
        # One timer per stall rather than one per read: at thousands of reads a second, arming and cancelling a
        # timer for each would cost more than the parsing.
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        due = self._wait_since + self.timeout_s
        if self.loop.time() >= due - 0.001:
            waiter.set_exception(TimeoutError())
        else:
            self._timer = self.loop.call_at(due, self._check_timeout)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()


# --------------------------------------------------------------------------------------------- body framing


class _Chunked:
    """Incremental `Transfer-Encoding: chunked` decoding; any byte may be the last of a read."""

    def __init__(self) -> None:
        self.done = False
        self._held = b""  # an unfinished size line, chunk-ending CRLF or trailer line
        self._left = 0  # data bytes still due in the current chunk
        self._state = 0  # 0 size line, 1 data, 2 CRLF after data, 3 trailers

    def feed(self, data: bytes) -> bytes:
        if self._held:
            data = self._held + data
            self._held = b""
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end and not self.done:
            state = self._state
            if state == 1:
                take = min(self._left, end - pos)
                out.append(data[pos:pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._state = 2
            elif state == 2:
                if end - pos < 2:
                    self._held = data[pos:]
                    break
                if data[pos:pos + 2] != b"\r\n":
                    raise _Framing("a chunk did not end where its size said")
                pos += 2
                self._state = 0
            else:
                nl = data.find(b"\n", pos)
                if nl == -1:
                    if end - pos > SIZE_LINE_LIMIT:
                        raise _Framing("a chunk-size line is too long")
                    self._held = data[pos:]
                    break
                line = data[pos:nl].rstrip(b"\r")
                pos = nl + 1
                if state == 3:
                    self.done = not line  # trailer fields are skipped; a blank line ends the body
                    continue
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _Framing(f"a chunk size is not hex: {line[:20]!r}") from None
                if size < 0:
                    raise _Framing("a chunk size is negative")
                if size and data[pos + size:pos + size + 2] == b"\r\n":  # the whole chunk is here: take it at once
                    out.append(data[pos:pos + size])
                    pos += size + 2
                    continue
                self._left = size
                self._state = 1 if size else 3
        return b"".join(out) if len(out) != 1 else out[0]

    def at_eof(self) -> None:
        if not self.done:
            raise _Framing("the connection closed before the last chunk")


class _Length:
    def __init__(self, length: int) -> None:
        self._left = length
        self.done = length == 0

    def feed(self, data: bytes) -> bytes:
        if len(data) >= self._left:
            data = data[:self._left]
            self.done = True
        self._left -= len(data)
        return data

    def at_eof(self) -> None:
        if not self.done:
            raise _Framing(f"the connection closed {self._left} byte(s) before the end of the body")


class _UntilClose:
    done = False

    def feed(self, data: bytes) -> bytes:
        return data

    def at_eof(self) -> None:
        self.done = True


class _Framing(Exception):
    """The body broke its own framing or was cut short; becomes a StreamError with the engine's name."""


# --------------------------------------------------------------------------------------------- the exchange


class StreamResponse:
    """Status, headers and the body of one streamed answer. Its connection closes with the `open()` block."""

    def __init__(self, reads: _Reads, status: int, headers: Mapping[str, str], *, url: str, engine: str) -> None:
        self.status = status
        self.headers = headers
        self.url = url
        self._reads = reads
        self._engine = engine
        self._decoder = _body_decoder(headers, engine=engine)

    async def _read(self) -> tuple[int, bytes] | None:
        try:
            return await self._reads.next_read()
        except TimeoutError:
            raise no_answer_in_time(self.url, "ReadTimeout", engine=self._engine) from None
        except OSError as exc:  # reset, broken pipe, TLS failure
            raise StreamError(f"the connection broke mid-reply ({_reason(exc)})", engine=self._engine) from None

    async def _next_piece(self) -> tuple[int, bytes] | None:
        """The next non-empty run of body bytes with its arrival stamp; None at the end of the body."""
        decoder = self._decoder
        while not decoder.done:
            got = await self._read()
            try:
                if got is None:
                    decoder.at_eof()
                    return None
                body = decoder.feed(got[1])
            except _Framing as exc:
                raise StreamError(f"the connection broke mid-reply ({exc})", engine=self._engine) from None
            if body:
                return got[0], body
        return None

    async def lines(self) -> AsyncIterator[tuple[int, str]]:
        """Every line of the body with the arrival stamp of the read that completed it; a last line without its
        newline comes at the end with the stamp of the last read."""
        splitter = SSELineSplitter()
        t_ns = time.perf_counter_ns()
        while (piece := await self._next_piece()) is not None:
            t_ns = piece[0]
            for line in splitter.feed(piece[1]):
                yield t_ns, line
        tail = splitter.flush()
        if tail is not None:
            yield t_ns, tail

    async def read(self, limit: int = WHOLE_BODY_LIMIT) -> bytes:
        """The whole body (a server that answered a stream request with one JSON reply)."""
        parts: list[bytes] = []
        size = 0
        while (piece := await self._next_piece()) is not None:
            parts.append(piece[1])
            size += len(piece[1])
            if size > limit:
                raise BadResponseError(f"sent a reply over {limit >> 20} MiB", engine=self._engine)
        return b"".join(parts)

    async def _error_body(self) -> bytes:
        """As much of an error body as is worth showing; a body that breaks off still says something."""
        parts: list[bytes] = []
        size = 0
        with contextlib.suppress(EngineError):
            while size < ERROR_BODY_READ and (piece := await self._next_piece()) is not None:
                parts.append(piece[1])
                size += len(piece[1])
        return b"".join(parts)[:ERROR_BODY_READ]


class StreamClient:
    """Streams from one engine: its address, key, TLS settings, timeouts and connection cap."""

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
    async def open(self, method: str, path: str, *, json_body: Any, what: str) -> AsyncIterator[StreamResponse]:
        """Send one request and read the answer's head. A non-2xx answer raises its typed error (`what` says
        what was being asked); the connection closes when the block ends, however it ends."""
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
        loop = asyncio.get_running_loop()
        reads = _Reads(loop, t.idle_s)
        async with self._semaphore():
            try:
                try:
                    async with asyncio.timeout(t.connect_s):
                        await loop.create_connection(lambda: reads, parts.hostname, port,
                                                     ssl=self._ssl if tls else None)
                except TimeoutError:
                    raise no_answer_in_time(url, "ConnectTimeout", engine=engine) from None
                except OSError as exc:  # refused, no route, unknown name, TLS verification
                    raise cannot_connect(url, _reason(exc), engine=engine) from None
                assert reads.transport is not None
                reads.transport.write(request)
                status, headers = await _read_head(reads, url=url, engine=engine)
                response = StreamResponse(reads, status, headers, url=url, engine=engine)
                if not 200 <= status < 300:
                    raise error_for_status(status, await response._error_body(), engine=engine, what=what)
                yield response
            finally:
                reads.close()


class _HeadTooLarge(Exception):
    """More than HEAD_LIMIT bytes came without the blank line that ends a response head."""


async def _next_head(reads: _Reads, *, engine: str) -> tuple[int, dict[str, str], bytes]:
    """The next final (not 1xx) answer's status, headers (names lower-cased) and raw head; body bytes that came
    with the head go back to the front of the reads. Raises what the reads raise (TimeoutError, OSError),
    EOFError when the connection closed first, _HeadTooLarge, or BadResponseError for a head that is not HTTP."""
    buf = bytearray()
    t_ns = 0
    while True:
        end = buf.find(b"\r\n\r\n")
        if end == -1:
            if len(buf) > HEAD_LIMIT:
                raise _HeadTooLarge
            got = await reads.next_read()
            if got is None:
                raise EOFError
            t_ns, data = got
            buf += data
            continue
        block = bytes(buf[:end])
        status, headers = _parse_head(block, engine=engine)
        del buf[:end + 4]
        if 100 <= status < 200:
            continue  # an interim answer (100 Continue, 103 Early Hints); the real one follows
        if buf:
            reads.reads.appendleft((t_ns, bytes(buf)))
            reads.buffered += len(buf)
        return status, headers, block


async def _read_head(reads: _Reads, *, url: str, engine: str) -> tuple[int, dict[str, str]]:
    try:
        status, headers, _ = await _next_head(reads, engine=engine)
    except TimeoutError:
        raise no_answer_in_time(url, "ReadTimeout", engine=engine) from None
    except OSError as exc:
        raise connection_broke(url, _reason(exc), engine=engine) from None
    except EOFError:
        raise connection_broke(url, "closed without an answer", engine=engine) from None
    except _HeadTooLarge:
        raise BadResponseError(f"sent response headers over {HEAD_LIMIT >> 10} KiB", engine=engine) from None
    return status, headers


def _parse_head(head: bytes, *, engine: str) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise BadResponseError(f"answered something that is not HTTP/1.x: {lines[0][:60]!r}", engine=engine)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return int(code), headers


def _body_decoder(headers: Mapping[str, str], *, engine: str) -> _Chunked | _Length | _UntilClose:
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise BadResponseError(f"sent a {encoding}-compressed stream although asked for none", engine=engine,
                               hint="turn compression off for this path in the proxy in front of the engine")
    return _body_framing(headers, engine=engine)


def _body_framing(headers: Mapping[str, str], *, engine: str) -> _Chunked | _Length | _UntilClose:
    """Where a body ends (RFC 9112 §6.3): chunked, a Content-Length, or the connection closing."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _Chunked()
    length = headers.get("content-length")
    if length is not None:
        value = length.split(",")[0].strip()
        if not value.isdigit():
            raise BadResponseError(f"sent a Content-Length that is not a number: {length[:20]!r}", engine=engine)
        return _Length(int(value))
    return _UntilClose()


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
