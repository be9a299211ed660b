"""HTTP/1.1 on the wire, bounded: the pieces both of enginedeck's transports read answers with.

console/engines/transport.py (every request and answer of every engine's httpx client) and
console/engines/stream.py (chat streams, one raw connection each) read the same way: `Reads` keeps every socket
read with its arrival stamp, `next_head` finds an answer's status and headers, `Chunked`/`Length`/`UntilClose`
find where its body ends, `ContentDecoder` undoes a compression the server applied although asked for none, and
`LineSplitter` cuts a stream into lines. Each of them refuses what would grow without bound: a head over
HEAD_LIMIT, a chunk-size line over SIZE_LINE_LIMIT, a line over the configured line limit, decompressed output
past the answer's limit. How many bytes each kind of answer may have, and every deadline, come from the config
(`WireLimits`, `Timeouts`); `answer_limit` says which limit an answer falls under.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import zlib
from collections import deque
from typing import Any

from console.config import KIB, MIB, WireLimits
from console.errors import BadResponseError, EngineTimeoutError, LimitError

READ_BUFFER_LIMIT = 1 << 20  # bytes read but not yet consumed before the socket is paused
HEAD_LIMIT = 64 * 1024
SIZE_LINE_LIMIT = 4096  # a chunk-size line (with extensions) longer than this is not HTTP
MAX_INTERIM = 16  # 1xx answers before the real one; a storm of them is not an answer
DECODE_PIECE = 64 * 1024  # decompressed bytes produced per step, so a bomb is caught one piece past its limit

# Answers whose size limit is not `other`, by path. Lists of models, what is loaded, server properties, metrics.
_KIND_BY_PATH = {
    "/api/tags": "models", "/v1/models": "models", "/models": "models", "/api/v0/models": "models",
    "/api/v1/models": "models", "/get_model_info": "models",
    "/api/ps": "ps", "/slots": "ps",
    "/props": "props", "/info": "props", "/version": "props", "/api/version": "props", "/health": "props",
    "/": "props", "/get_server_info": "props", "/server_info": "props", "/is_sleeping": "props",
    "/metrics": "metrics",
    "/api/show": "show",
}


def answer_limit(limits: WireLimits, path: str, status: int) -> tuple[str, int]:
    """Which limit an answer falls under, and its size: an error body is held to `error` whatever its path."""
    kind = "error" if status >= 400 else _KIND_BY_PATH.get(path.rstrip("/") or "/", "other")
    return kind, getattr(limits, f"{kind}_bytes")


def size_words(n: int) -> str:
    if n >= MIB and n % MIB == 0:
        return f"{n // MIB} MiB"
    if n >= KIB and n % KIB == 0:
        return f"{n // KIB} KiB"
    return f"{n} bytes"


def too_big(what: str, limit_name: str, limit: int, *, engine: str) -> LimitError:
    """`what` says where (`GET /api/tags: the answer`, `POST /api/chat: one line`)."""
    return LimitError(f"{what} passed {size_words(limit)} (limits.{limit_name})", engine=engine,
                      hint=f"raise {limit_name} in the config's [limits] table if the engine really sends that much")


def too_slow(what: str, seconds: float, key: str, *, engine: str) -> EngineTimeoutError:
    """`key` is the config key (and `--timeout` sets it) whose deadline passed."""
    return EngineTimeoutError(f"{what} within {seconds:g} s ({key})", engine=engine,
                              hint="raise --timeout (or the config's timeouts) or check the engine's load")


def parse_json(data: bytes | str, *, engine: str, what: str) -> Any:
    """JSON from an engine; anything that is not JSON (or nests deeper than Python can follow) is a bad answer."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        snippet = data[:80] if isinstance(data, str) else data[:80].decode("utf-8", "replace")
        raise BadResponseError(f"sent something that is not JSON for {what}: {snippet!r}", engine=engine) from None


# --------------------------------------------------------------------------------------------- reading


class Reads(asyncio.Protocol):
    """Keeps every read with its arrival stamp; the consumer drains them at its own pace.

    `deadline` (event-loop time) bounds every wait for a read; the consumer moves it, so what counts as progress
    is the consumer's choice: a stream reader moves it on each complete line, not on each read.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float = math.inf) -> None:
        self.loop = loop
        self.deadline = deadline
        self.reads: deque[tuple[int, bytes]] = deque()
        self.buffered = 0
        self.transport: asyncio.Transport | None = None
        self.ended = False
        self.error: Exception | None = None
        self.paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio types this hook for every kind of connection; a stream connection's is an asyncio.Transport.
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
        connection, or TimeoutError once `deadline` passes with nothing to hand out."""
        while not self.reads:
            if self.error is not None:
                raise self.error
            if self.ended:
                return None
            if self.loop.time() >= self.deadline:
                raise TimeoutError
            waiter = self._waiter = self.loop.create_future()
            if self._timer is None and self.deadline != math.inf:
                self._timer = self.loop.call_at(self.deadline, self._check_timeout)
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
        # One timer per deadline rather than one per read: at thousands of reads a second, arming and cancelling
        # a timer for each would cost more than the parsing. A deadline moved later re-arms it.
        self._timer = None
        if self.loop.time() < self.deadline - 0.001:
            self._timer = self.loop.call_at(self.deadline, self._check_timeout)
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()


# --------------------------------------------------------------------------------------------- heads


class HeadTooLarge(Exception):
    """More than HEAD_LIMIT bytes came without the blank line that ends a response head."""


async def next_head(reads: Reads, *, engine: str) -> tuple[int, dict[str, str], bytes]:
    """The next final (not 1xx) answer's status, headers (names lower-cased) and raw head; body bytes that came
    with the head go back to the front of the reads. Raises what the reads raise (TimeoutError, OSError),
    EOFError when the connection closed first, HeadTooLarge, or BadResponseError for a head that is not HTTP or
    for more than MAX_INTERIM interim answers."""
    buf = bytearray()
    t_ns = 0
    interim = 0
    while True:
        end = buf.find(b"\r\n\r\n")
        if end == -1:
            if len(buf) > HEAD_LIMIT:
                raise HeadTooLarge
            got = await reads.next_read()
            if got is None:
                raise EOFError
            t_ns, data = got
            buf += data
            continue
        block = bytes(buf[:end])
        status, headers = parse_head(block, engine=engine)
        del buf[:end + 4]
        if 100 <= status < 200:
            interim += 1
            if interim > MAX_INTERIM:
                raise BadResponseError(f"sent more than {MAX_INTERIM} interim (1xx) answers and no real one",
                                       engine=engine)
            continue  # an interim answer (100 Continue, 103 Early Hints); the real one follows
        if buf:
            reads.reads.appendleft((t_ns, bytes(buf)))
            reads.buffered += len(buf)
        return status, headers, block


def parse_head(head: bytes, *, engine: str) -> tuple[int, dict[str, str]]:
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


# --------------------------------------------------------------------------------------------- body framing


class FramingError(Exception):
    """The body broke its own framing or was cut short."""


class Chunked:
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
                    raise FramingError("a chunk did not end where its size said")
                pos += 2
                self._state = 0
            else:
                nl = data.find(b"\n", pos)
                if nl == -1:
                    if end - pos > SIZE_LINE_LIMIT:
                        raise FramingError("a chunk-size or trailer line is too long")
                    self._held = data[pos:]
                    break
                line = data[pos:nl].rstrip(b"\r")
                pos = nl + 1
                if state == 3:
                    self.done = not line  # trailer fields are skipped; a blank line ends the body
                    continue
                size_text = line.split(b";", 1)[0].strip()
                if not size_text or len(size_text) > 16 or size_text.strip(b"0123456789abcdefABCDEF"):
                    raise FramingError(f"a chunk size is not hex: {line[:20]!r}")
                size = int(size_text, 16)
                if size and data[pos + size:pos + size + 2] == b"\r\n":  # the whole chunk is here: take it at once
                    out.append(data[pos:pos + size])
                    pos += size + 2
                    continue
                self._left = size
                self._state = 1 if size else 3
        return b"".join(out) if len(out) != 1 else out[0]

    def at_eof(self) -> None:
        if not self.done:
            raise FramingError("the connection closed before the last chunk")


class Length:
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
            raise FramingError(f"the connection closed {self._left} byte(s) before the end of the body")


class UntilClose:
    done = False

    def feed(self, data: bytes) -> bytes:
        return data

    def at_eof(self) -> None:
        self.done = True


Framing = Chunked | Length | UntilClose


def body_framing(headers: dict[str, str], *, engine: str) -> Framing:
    """Where a body ends (RFC 9112 §6.3): chunked, a Content-Length, or the connection closing."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return Chunked()
    length = headers.get("content-length")
    if length is not None:
        values = {v.strip() for v in length.split(",")}
        value = values.pop() if len(values) == 1 else ""
        if not value.isdigit() or len(value) > 18:
            raise BadResponseError(f"sent a Content-Length that is not one number: {length[:20]!r}", engine=engine)
        return Length(int(value))
    return UntilClose()


# --------------------------------------------------------------------------------------------- content


class ContentDecoder:
    """Undoes gzip or deflate, never producing more than `limit` bytes in all (a gzip bomb stops at its limit,
    having made at most DECODE_PIECE bytes past it). enginedeck asks for no compression; a server or proxy that
    compresses anyway is still understood, within the same limits."""

    SUPPORTED = ("gzip", "x-gzip", "deflate")

    def __init__(self, encoding: str, limit: int) -> None:
        self.limit = limit
        self.produced = 0
        # 32 + 15: a zlib or gzip header, detected; a bare deflate stream (what some servers send) is retried.
        self._raw_deflate = False
        self._z = zlib.decompressobj(32 + 15)
        self._encoding = encoding

    @classmethod
    def for_encoding(cls, encoding: str, limit: int, *, engine: str) -> ContentDecoder | None:
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            return None
        if encoding not in cls.SUPPORTED:
            raise BadResponseError(f"sent a {encoding}-compressed answer although asked for none", engine=engine,
                                   hint="turn compression off for this engine in the proxy in front of it")
        return cls(encoding, limit)

    def feed(self, data: bytes) -> bytes:
        """The decompressed bytes; raises OverflowError past the limit, FramingError for data that is not
        compressed the way its header said."""
        out: list[bytes] = []
        while data:
            try:
                piece = self._z.decompress(data, DECODE_PIECE)
            except zlib.error:
                if self.produced or self._raw_deflate or self._encoding != "deflate":
                    raise FramingError(f"the {self._encoding} data is corrupt") from None
                self._raw_deflate, self._z = True, zlib.decompressobj(-15)
                continue
            self.produced += len(piece)
            if self.produced > self.limit:
                raise OverflowError
            out.append(piece)
            data = self._z.unconsumed_tail
        return b"".join(out)


# --------------------------------------------------------------------------------------------- lines


class LineTooLong(Exception):
    """A line grew past its limit without ending."""


class LineSplitter:
    """Split a byte stream into lines, whatever the read boundaries, refusing a line longer than `max_line`.

    Lines end in LF, CRLF or CR (the SSE spec allows all three; NDJSON never holds a raw CR inside a line).
    Splitting happens on bytes, so a multibyte UTF-8 character cut across two reads is joined before decoding:
    no newline byte occurs inside one.
    """

    def __init__(self, max_line: int = 1 << 20) -> None:
        self._buf = bytearray()
        self.max_line = max_line

    def feed(self, data: bytes) -> list[str]:
        """The lines completed by `data`. One pass over the buffer, so a large read stays linear."""
        buf = self._buf
        if not buf and b"\r" not in data:  # the common read: whole LF-ended lines, nothing held over
            *lines, rest = data.split(b"\n")
            if len(rest) > self.max_line or any(len(line) > self.max_line for line in lines):
                raise LineTooLong
            buf += rest
            return [line.decode("utf-8", "replace") for line in lines]
        buf += data
        out: list[bytes | bytearray] = []
        start = 0
        while True:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, lf if lf != -1 else len(buf))
            if cr != -1:
                if cr == len(buf) - 1:
                    break  # a CR at the end may be the first half of CRLF: wait for the next read
                out.append(buf[start:cr])
                start = cr + 2 if buf[cr + 1] == 0x0A else cr + 1
            elif lf != -1:
                out.append(buf[start:lf])
                start = lf + 1
            else:
                break
        del buf[:start]
        if len(buf) > self.max_line or any(len(line) > self.max_line for line in out):
            raise LineTooLong
        return [line.decode("utf-8", "replace") for line in out]

    def flush(self) -> str | None:
        """The unterminated tail at EOF, if any (a server that closes without a final newline)."""
        if not self._buf:
            return None
        tail = bytes(self._buf).decode("utf-8", "replace")
        self._buf.clear()
        return tail
