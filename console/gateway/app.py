"""The gateway's ASGI application: every request passed to one engine, and a record of each (docs/gateway.md).

A plain ASGI callable, no framework: it needs no routing, and each layer between the socket and the engine costs
every chunk of 64 streams. Per request:
1. the client's key is checked when the gateway has keys (401 and a `rejected` record without a valid one);
2. the body is read whole, within `max_request_bytes` (413) and the engine's `request_timeout` (408);
3. the request goes to the engine (console/engines/passthrough.py: the engine's key instead of the client's,
   every byte read back bounded); status, headers and body come back to the client as the engine sent them,
   one socket read at a time (no re-chunking of SSE or NDJSON; the one exception: console/gateway/usage.py);
4. a client that goes away cancels the engine's request (its connection is closed);
5. the record (console/gateway/record.py) goes to every sink: the signed log, the usage ledger, the live view.
An engine that cannot be reached, or breaks a bound before its answer's head, gets the client a 502 (504 for a
deadline) with a JSON error; one that breaks off mid-answer gets the client's connection closed, so the client
sees a cut-short answer, not a complete one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from console.engines.passthrough import Upstream
from console.errors import EngineError, EngineTimeoutError
from console.gateway.capture import REPLY_MAX, Capture
from console.gateway.events import emit
from console.gateway.keys import ClientKeys, bearer, fingerprint
from console.gateway.record import Outcome, RequestRecord
from console.gateway.tokens import TokenCounter
from console.gateway.usage import UsageCut, with_usage_asked
from console.secrets import redact

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Sink = Callable[[RequestRecord], None]

MODEL_CHARS = 200  # a model name longer than this is cut in the record
AGENT_CHARS = 200
REQUEST_ID_HEADER = b"x-enginedeck-request-id"


class _TooLarge(Exception):
    pass


class _Gone(Exception):
    pass


@dataclass
class _Flags:
    done: bool = False
    disconnected: bool = False


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for k, v in headers:
        if k == name:
            return v
    return None


def _text(value: bytes | None, limit: int) -> str:
    return value.decode("utf-8", "replace")[:limit] if value else ""


class Gateway:
    def __init__(self, upstream: Upstream, *, keys: ClientKeys, max_request_bytes: int,
                 sinks: Iterable[Sink] = (), on_start: Callable[[RequestRecord], None] | None = None,
                 on_close: Callable[[], Awaitable[None]] | None = None, capture: Capture | None = None,
                 on_chunk: Callable[[RequestRecord, int], None] | None = None) -> None:
        self.upstream = upstream
        self.keys = keys
        self.max_request_bytes = max_request_bytes
        self.sinks = list(sinks)
        self.on_start = on_start
        self.on_close = on_close
        self.capture = capture
        self.on_chunk = on_chunk
        self.in_flight = 0
        self.ask_usage = False  # set once the engine's kind is known to take the question (console/gateway/usage.py)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.on_close is not None:
                    await self.on_close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _finish(self, rec: RequestRecord, t0: int) -> None:
        rec.latency_ms = (time.perf_counter_ns() - t0) / 1e6
        for sink in self.sinks:
            try:
                sink(rec)
            except Exception as exc:  # one sink failing (a full disk) must not hide the record from the others
                emit("sink_failed", level="error", sink=getattr(sink, "__qualname__", str(sink)),
                     request_id=rec.request_id, error=f"{type(exc).__name__}: {exc}")
        if rec.outcome is not Outcome.OK:
            emit("request", level="warning", request_id=rec.request_id, client=rec.client, path=rec.path,
                 status=rec.status_code, outcome=rec.outcome.value, error=rec.error)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter_ns()
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        client_addr = scope.get("client")
        presented = bearer(_header(headers, b"authorization"))
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        rec = RequestRecord(
            request_id=secrets.token_hex(8), started=time.time(), method=scope["method"],
            path=raw_path.decode("latin-1")[:2048], client_ip=client_addr[0] if client_addr else "",
            client=fingerprint(presented) if presented else "anonymous",
            user_agent=_text(_header(headers, b"user-agent"), AGENT_CHARS), upstream=self.upstream.cfg.name)
        rid = rec.request_id.encode("ascii")
        body = b""
        reply = bytearray() if self.capture is not None and self.capture.replies else None
        self.in_flight += 1
        try:
            if self.keys:
                kid = self.keys.match(presented)
                if kid is None:
                    rec.outcome, rec.error = Outcome.REJECTED, "no valid gateway key"
                    rec.status_code = 401
                    await _answer(send, 401, "a valid gateway API key is needed (Authorization: Bearer KEY)", rid)
                    return
                rec.client = kid
            length = _header(headers, b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_request_bytes:
                rec.outcome, rec.status_code = Outcome.REJECTED, 413
                rec.error = f"request body of {int(length)} bytes, over max_request_bytes"
                await _answer(send, 413, f"the request body is over {self.max_request_bytes} bytes", rid)
                return
            try:
                async with asyncio.timeout(self.upstream.cfg.timeouts.request_s):
                    body = await self._body(receive)
            except _TooLarge:
                rec.outcome, rec.status_code = Outcome.REJECTED, 413
                rec.error = "request body over max_request_bytes"
                await _answer(send, 413, f"the request body is over {self.max_request_bytes} bytes", rid)
                return
            except TimeoutError:
                rec.outcome, rec.status_code = Outcome.TIMEOUT, 408
                rec.error = "the request body did not arrive within request_timeout"
                await _answer(send, 408, "the request body did not arrive in time", rid)
                return
            except _Gone:
                rec.outcome, rec.error = Outcome.CLIENT_DISCONNECT, "the client left while sending its body"
                return
            rec.bytes_in = len(body)
            rec.request_hash = hashlib.sha256(body).hexdigest()
            obj = _json(body)
            model = obj.get("model") if isinstance(obj, dict) else None
            rec.model = model[:MODEL_CHARS] if isinstance(model, str) else None
            asked = with_usage_asked(raw_path, body, obj) if self.ask_usage else None
            if self.on_start is not None:
                self.on_start(rec)
            await self._forward(rec, t0, scope, headers, body if asked is None else asked, receive, send, rid, reply,
                                UsageCut() if asked is not None else None)
        finally:
            self.in_flight -= 1
            self._finish(rec, t0)
            if self.capture is not None:
                self._capture(rec, headers, body, reply)

    def _capture(self, rec: RequestRecord, headers: list[tuple[bytes, bytes]], body: bytes,
                 reply: bytearray | None) -> None:
        assert self.capture is not None
        try:
            truncated = reply is not None and rec.bytes_out > len(reply)
            self.capture.write(self.capture.entry(rec, headers, body, None if reply is None else bytes(reply),
                                                  truncated))
        except (OSError, ValueError) as exc:
            emit("capture_failed", level="error", request_id=rec.request_id, error=f"{type(exc).__name__}: {exc}")

    async def _body(self, receive: Receive) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_request_bytes:
                raise _TooLarge
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def _forward(self, rec: RequestRecord, t0: int, scope: Scope, headers: list[tuple[bytes, bytes]],
                       body: bytes, receive: Receive, send: Send, rid: bytes, reply: bytearray | None,
                       cut: UsageCut | None) -> None:
        query: bytes = scope.get("query_string", b"")
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        target = raw_path + (b"?" + query if query else b"")
        flags = _Flags()
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.create_task(_watch(receive, flags, task))
        started = False
        counter: TokenCounter | None = None
        try:
            async with self.upstream.open(rec.method, target, headers, body) as resp:
                rec.stream = resp.streaming
                counter = TokenCounter(streaming=resp.streaming)
                on_chunk = self.on_chunk
                await send({"type": "http.response.start", "status": resp.status,
                            "headers": [*resp.headers, (REQUEST_ID_HEADER, rid)]})
                started = True
                rec.status_code = resp.status
                async for piece in resp.pieces():
                    if rec.ttft_ms is None:
                        rec.ttft_ms = (time.perf_counter_ns() - t0) / 1e6
                    counter.feed(piece)
                    last = resp.complete
                    if cut is not None:  # the usage event the gateway asked for is the record's, not the client's
                        piece = cut.feed(piece) + (cut.end() if last else b"")
                        if not piece and not last:
                            continue
                    rec.bytes_out += len(piece)
                    if reply is not None and len(reply) < REPLY_MAX:
                        reply += piece[:REPLY_MAX - len(reply)]
                    if on_chunk is not None:
                        on_chunk(rec, len(piece))
                    # The last piece goes with the body's end: one write (and syscall) instead of two.
                    flags.done = last
                    await send({"type": "http.response.body", "body": piece, "more_body": not last})
                if not flags.done:  # no body, or one that ended with the connection
                    flags.done = True
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                if resp.status >= 400:
                    rec.outcome = Outcome.UPSTREAM_ERROR
                    rec.error = f"the engine answered {resp.status}"
        except asyncio.CancelledError:
            if not flags.disconnected:
                # The drain at shutdown ran out (or the server is going away): the record still gets written.
                rec.outcome, rec.error = Outcome.TIMEOUT, "cancelled: the gateway stopped before the answer ended"
                raise
            task.uncancel()
            # A client that leaves after the stream's own end ([DONE], "done": true) had its whole answer: ok.
            if counter is None or not counter.finished:
                rec.outcome = Outcome.CLIENT_DISCONNECT
                rec.error = "the client went away; the engine's request was closed"
        except EngineError as exc:
            rec.outcome = Outcome.TIMEOUT if isinstance(exc, EngineTimeoutError) else Outcome.UPSTREAM_ERROR
            rec.error = redact(str(exc))[:500]
            if not started:
                status = 504 if rec.outcome is Outcome.TIMEOUT else 502
                rec.status_code = status
                await _answer(send, status, rec.error, rid)
            # Started: the client's connection closes without the body's end, so it sees a cut-short answer.
        finally:
            flags.done = True
            watcher.cancel()
            if counter is not None:  # the engine's counts, however the answer ended
                counter.end()
                rec.tokens_in, rec.tokens_out = counter.tokens_in, counter.tokens_out


async def _watch(receive: Receive, flags: _Flags, task: asyncio.Task[Any]) -> None:
    """Cancel `task` when the client goes away before the answer is complete."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not flags.done:
                flags.disconnected = True
                task.cancel()
            return


async def _answer(send: Send, status: int, message: str, rid: bytes) -> None:
    body = json.dumps({"error": {"message": message, "type": "enginedeck_gateway",
                                 "request_id": rid.decode("ascii")}}).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
                            (REQUEST_ID_HEADER, rid)]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _json(body: bytes) -> Any:
    """A JSON request body parsed (for its `model`, which OpenAI and Ollama both name there, and its `stream`), or
    None; bodies that cannot hold either are not parsed."""
    if not body.lstrip().startswith(b"{") or (b'"model"' not in body and b'"stream"' not in body):
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None
