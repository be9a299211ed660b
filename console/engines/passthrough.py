"""The gateway's upstream side: a client's request passed to an engine as it came, the answer read back bounded.

The gateway (console/gateway/) forwards what the engine sends byte for byte, one socket read at a time, so an
SSE or NDJSON stream keeps its events as the engine cut them. What it reads is held to the same bounds as every
other read of enginedeck (console/engines/wire.py; docs/limits.md), from the engine's `EngineConfig`:
- connecting within `connect_timeout`; the answer's head within `first_byte_timeout` of sending;
- a stream (SSE or NDJSON, by its content type): its first complete line within `first_byte_timeout`, each next
  one within `idle_timeout` (only a complete line counts: a drip that never ends a line is idle), no line past
  `limits.line`, the whole stream within `limits.stream`;
- any other answer: whole within `request_timeout` of its head, within the limit of its kind (`answer_limit`:
  an error body `limits.error`, a chat answered as one JSON body `limits.other`, ...);
- counted after decompression: the engine is asked for no compression, and one that compresses anyway is decoded
  in bounded pieces (a gzip bomb stops at the limit) and forwarded decoded.
Bytes read but not yet forwarded stay under wire.READ_BUFFER_LIMIT: the socket pauses while the client is slow.

Headers: the client's go on except the hop-by-hop ones, Host, the framing, Accept-Encoding (identity instead)
and Authorization: the engine's own key from the config takes its place, so a client never learns it and never
needs it.

Connections are kept alive between requests: opening and closing a loopback TCP connection cost ~0.6 ms of the
gateway's CPU per request (measured with cProfile), most of what a request costs it. A connection goes back to
the pool only when its answer was read to the end and the engine did not ask to close it; one idle for more than
IDLE_REUSE_S is closed instead of reused (engines behind uvicorn close theirs after 5 s), and a kept connection
that turns out closed before any byte of an answer is replaced by a new one, once. A request whose client went
away, or whose answer broke a bound, closes its connection: the engine sees its request cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from console.config import EngineConfig
from console.engines.http import cannot_connect, connection_broke
from console.engines.stream import _ssl_context
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
from console.errors import BadResponseError, ConfigError, StreamError

STREAM_TYPES = (b"text/event-stream", b"application/x-ndjson")
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
                        b"trailer", b"transfer-encoding", b"upgrade"})
# What the gateway sets itself, or must not pass on: the client's key (the engine's comes from the config).
NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length", b"authorization", b"accept-encoding", b"expect"}


IDLE_REUSE_S = 2.0
MAX_IDLE = 256  # kept connections per engine; more in flight at once are closed after their answer


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class PassResponse:
    """The engine's status and headers (those a client may get), and its body piece by piece."""

    def __init__(self, reads: Reads, status: int, raw_head: bytes, *, method: str, path: str,
                 cfg: EngineConfig) -> None:
        self.status = status
        self._reads = reads
        self._cfg = cfg
        self._endpoint = f"{method} {path}"
        headers: list[tuple[bytes, bytes]] = []
        by_name: dict[str, str] = {}
        for line in raw_head.split(b"\r\n")[1:]:
            name, sep, value = line.partition(b":")
            if sep:
                key = name.strip().lower()
                by_name[key.decode("latin-1")] = value.strip().decode("latin-1")
                headers.append((key, value.strip()))
        content_type = by_name.get("content-type", "").partition(";")[0].strip().lower().encode("latin-1")
        self.streaming = status < 400 and content_type in STREAM_TYPES
        engine = cfg.name
        self._framing: Framing = Length(0) if method == "HEAD" or status in (204, 304) else \
            body_framing(by_name, engine=engine)
        limits = cfg.limits
        self.limit_name, self.limit = ("stream", limits.stream_bytes) if self.streaming else \
            answer_limit(limits, path, status)
        self._decoder = ContentDecoder.for_encoding(by_name.get("content-encoding", ""), self.limit, engine=engine)
        drop = HOP_BY_HOP if self._decoder is None and isinstance(self._framing, Length) else \
            HOP_BY_HOP | {b"content-length", b"content-encoding"}
        self.headers = [(k, v) for k, v in headers if k not in drop]
        self._keep = raw_head.startswith(b"HTTP/1.1") and by_name.get("connection", "").lower() != "close" and \
            not isinstance(self._framing, UntilClose)

    @property
    def complete(self) -> bool:
        """The body's framing has ended: the piece just read was the last."""
        return self._framing.done

    @property
    def reusable(self) -> bool:
        """The answer was read to its end on a connection the engine keeps open."""
        return self._keep and self._framing.done

    async def pieces(self) -> AsyncIterator[bytes]:
        """The body as it arrives, each socket read's bytes as one piece (decoded if the engine compressed)."""
        reads, cfg, engine = self._reads, self._cfg, self._cfg.name
        loop, t, limits = reads.loop, cfg.timeouts, cfg.limits
        framing, decoder = self._framing, self._decoder
        streaming, line_bytes = self.streaming, limits.line_bytes
        first_line = False
        if not streaming:
            reads.deadline = loop.time() + t.request_s
        size = since_newline = 0
        while not framing.done:
            try:
                got = await reads.next_read()
            except TimeoutError:
                if not streaming:
                    raise too_slow(f"{self._endpoint}: no whole answer", t.request_s, "request_timeout",
                                   engine=engine) from None
                if first_line:
                    raise too_slow(f"{self._endpoint}: no new line", t.idle_s, "idle_timeout", engine=engine) from None
                raise too_slow(f"{self._endpoint}: no first line", t.first_byte_s, "first_byte_timeout",
                               engine=engine) from None
            except OSError as exc:
                raise StreamError(f"the connection broke mid-reply ({_reason(exc)})", engine=engine) from None
            try:
                if got is None:
                    framing.at_eof()
                    return
                data = framing.feed(got[1])
                if decoder is not None:
                    data = decoder.feed(data)
            except FramingError as exc:
                raise StreamError(f"the connection broke mid-reply ({exc})", engine=engine) from None
            except OverflowError:
                raise too_big(f"{self._endpoint}: the answer", self.limit_name, self.limit, engine=engine) from None
            size += len(data)
            if size > self.limit:
                raise too_big(f"{self._endpoint}: the answer", self.limit_name, self.limit, engine=engine)
            if streaming:
                newline = data.rfind(b"\n")
                if newline == -1:
                    since_newline += len(data)
                else:
                    since_newline = len(data) - newline - 1
                    first_line = True
                    reads.deadline = loop.time() + t.idle_s
                if since_newline > line_bytes:
                    raise too_big(f"{self._endpoint}: one line", "line", line_bytes, engine=engine)
            if data:
                yield data


class Upstream:
    """One engine, as the gateway reaches it: address, key, TLS, deadlines, limits and a connection cap."""

    def __init__(self, cfg: EngineConfig, *, max_connections: int = 1024) -> None:
        self.cfg = cfg
        parts = urlsplit(cfg.url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"engine {cfg.name!r}: url {cfg.url!r} is not an http:// or https:// address")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._netloc = parts.netloc.rpartition("@")[2].encode("latin-1")
        self._prefix = parts.path.encode("latin-1")  # an engine served under a path (behind a proxy)
        key = cfg.resolve_api_key()
        if key and any(c in key for c in "\r\n\0"):  # it goes into a header line as it is
            raise ConfigError(f"engine {cfg.name!r}: the API key holds a line break or NUL",
                              hint="check the value api_key_env or api_key_file points at")
        self._auth = f"Authorization: Bearer {key}\r\n".encode("latin-1") if key else b""
        self._ssl = _ssl_context(cfg) if self._tls else None
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[tuple[Reads, float]] = []

    async def _connect(self, endpoint: str, url: str) -> Reads:
        engine, t = self.cfg.name, self.cfg.timeouts
        loop = asyncio.get_running_loop()
        reads = Reads(loop)
        try:
            async with asyncio.timeout(t.connect_s):
                await loop.create_connection(lambda: reads, self._host, self._port, ssl=self._ssl)
        except TimeoutError:
            raise too_slow(f"{endpoint}: could not connect to {url}", t.connect_s, "connect_timeout",
                           engine=engine) from None
        except OSError as exc:
            raise cannot_connect(url, _reason(exc), engine=engine) from None
        return reads

    def _kept(self) -> Reads | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            reads, since = self._idle.pop()
            if now - since < IDLE_REUSE_S and not reads.ended and reads.error is None and not reads.reads:
                return reads
            reads.close()
        return None

    def _release(self, reads: Reads, *, reusable: bool) -> None:
        if reusable and len(self._idle) < MAX_IDLE and not reads.ended and reads.error is None:
            self._idle.append((reads, reads.loop.time()))
        else:
            reads.close()

    def close(self) -> None:
        while self._idle:
            self._idle.pop()[0].close()

    @asynccontextmanager
    async def open(self, method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]],
                   body: bytes) -> AsyncIterator[PassResponse]:
        """Send one request (`target`: the client's path and query, as raw bytes) and read the answer's head;
        any status comes back as it is. When the block ends the connection goes back to the pool if its answer was
        read to the end, else it is closed."""
        cfg, engine, t = self.cfg, self.cfg.name, self.cfg.timeouts
        path = target.partition(b"?")[0].decode("latin-1")
        endpoint = f"{method} {path}"
        url = f"{cfg.url.rstrip('/')}{path}"
        head = [b"%s %s%s HTTP/1.1\r\nHost: %s\r\n" % (method.encode("latin-1"), self._prefix, target, self._netloc)]
        head.extend(b"%s: %s\r\n" % (k, v) for k, v in headers if k.lower() not in NOT_FORWARDED)
        if body or method not in ("GET", "HEAD", "OPTIONS", "DELETE"):
            head.append(b"Content-Length: %d\r\n" % len(body))
        head.append(self._auth + b"Accept-Encoding: identity\r\n\r\n")
        request = b"".join(head) + body
        loop = asyncio.get_running_loop()
        async with self._slots:
            kept = self._kept()
            reads = kept or await self._connect(endpoint, url)
            response: PassResponse | None = None
            try:
                while True:
                    assert reads.transport is not None
                    reads.deadline = loop.time() + t.first_byte_s
                    reads.transport.write(request)
                    try:
                        status, _, raw = await next_head(reads, engine=engine)
                    except (EOFError, OSError) as exc:
                        if kept is not None:  # closed while it sat in the pool: once more on a new connection
                            reads.close()
                            kept = None
                            reads = await self._connect(endpoint, url)
                            continue
                        detail = "closed without an answer" if isinstance(exc, EOFError) else _reason(exc)
                        raise connection_broke(url, detail, engine=engine) from None
                    except TimeoutError:
                        raise too_slow(f"{endpoint}: no answer", t.first_byte_s, "first_byte_timeout",
                                       engine=engine) from None
                    except HeadTooLarge:
                        raise BadResponseError(f"sent response headers over {HEAD_LIMIT >> 10} KiB",
                                               engine=engine) from None
                    break
                response = PassResponse(reads, status, raw, method=method, path=path, cfg=cfg)
                yield response
            finally:
                self._release(reads, reusable=response is not None and response.reusable)
