"""A loopback HTTP server that misbehaves on purpose: garbage JSON, truncated or reset streams, stalls, 401s.

It runs its own event loop in a thread, so sync tests, async tests and CLI subprocesses can all point at
`.url`. Each route answers a scripted `Reply`; `misbehave(name)` installs one of the named presets.

    from tests.fakes.hostile_server import hostile_server_fixture  # noqa: F401  (registers `hostile_server`)

    def test_x(hostile_server):
        hostile_server.misbehave("garbage_models")
        ... point an engine at hostile_server.url ...

The server speaks just enough HTTP/1.1: one request per connection, answers with `Connection: close`,
streams with chunked transfer encoding like uvicorn and llama-server do.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fakes.http_fake import LAST_CHUNK, LoopServer, chunk_frame, parse_head, sse_frame

Body = bytes | str


@dataclass(frozen=True)
class Reply:
    """What a route answers.

    `chunks` are written one by one (chunked encoding) with `delay_s` between them; `body` is one plain body
    with Content-Length. `stall_s` waits before the headers (`stall_in_body` False) or after the first chunk.
    `reset_after` aborts the connection with an RST once that many chunks are written. `end_chunked` False
    closes without the terminating zero chunk (an incomplete HTTP body).
    """

    status: int = 200
    body: Body = b""
    chunks: Sequence[Body] | None = None
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    stall_s: float = 0.0
    stall_in_body: bool = False
    reset_after: int | None = None
    end_chunked: bool = True


@dataclass(frozen=True)
class Seen:
    """A request the server received."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Handler = Reply | Callable[[Seen], Reply]


def sse(*events: Any, done: bool = True, space: bool = True) -> list[bytes]:
    """SSE chunks, one write per event: dicts become JSON, strings are sent as they are (e.g. ': ping')."""
    prefix = b"data: " if space else b"data:"
    out = []
    for ev in events:
        if isinstance(ev, str) and ev.startswith(":"):
            out.append(sse_frame(ev, b""))
        else:
            out.append(sse_frame(ev if isinstance(ev, str) else json.dumps(ev), prefix))
    if done:
        out.append(sse_frame("[DONE]", prefix))
    return out


def chunk(content: str | None = None, *, role: str | None = None, finish: str | None = None,
          **delta_extra: Any) -> dict[str, Any]:
    """One chat.completion.chunk with a single choice."""
    delta: dict[str, Any] = dict(delta_extra)
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {"id": "chatcmpl-x", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def usage_chunk(prompt: int, completion: int, **extra: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-x", "object": "chat.completion.chunk", "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}, **extra}


GOOD_STREAM = sse(chunk("", role="assistant"), chunk("Hel"), chunk("lo"), chunk(finish="stop"), usage_chunk(5, 2))

# 401 bodies as each engine sends them (reference/engines-api.md §1.6, §2.9, §3.5, §7.6).
UNAUTHORIZED_BODIES: Mapping[str, bytes] = {
    "vllm": b'{"error":"Unauthorized"}',
    "sglang": b'{"error":"Unauthorized"}',
    "llamacpp": b'{"error":{"message":"Invalid API Key","type":"authentication_error","code":401}}',
    "tgi": b"",
}

CHAT = ("POST", "/v1/chat/completions")
MODELS = ("GET", "/v1/models")


def _presets() -> dict[str, dict[tuple[str, str], Reply]]:
    truncated = sse(chunk("", role="assistant"), chunk("partial"), done=False)
    presets: dict[str, dict[tuple[str, str], Reply]] = {
        "garbage_models": {MODELS: Reply(body=b'{"object": "list", "data": [{"id": "x"'),
                           ("GET", "/health"): Reply(body=b"<html>oops</html>", content_type="text/html")},
        "truncated_stream": {CHAT: Reply(chunks=truncated, content_type="text/event-stream")},
        "reset_mid_stream": {CHAT: Reply(chunks=truncated, content_type="text/event-stream", reset_after=2)},
        "incomplete_body": {CHAT: Reply(chunks=truncated, content_type="text/event-stream", end_chunked=False)},
        "stall": {MODELS: Reply(body=b'{"data": []}', stall_s=30.0),
                  CHAT: Reply(chunks=GOOD_STREAM, content_type="text/event-stream", stall_s=30.0,
                              stall_in_body=True)},
        "busy": {path: Reply(status=503, body=b'{"error":{"code":503,"message":"Loading model",'
                                              b'"type":"unavailable_error"}}')
                 for path in (MODELS, CHAT, ("GET", "/health"))},
        "model_not_found": {CHAT: Reply(status=404, body=b'{"error":{"message":"The model `nope` does not exist.",'
                                                         b'"type":"NotFoundError","param":"model","code":404}}')},
        "error_in_stream": {CHAT: Reply(chunks=sse(chunk("", role="assistant"), chunk("a"),
                                                   {"error": {"message": "Internal server error",
                                                              "type": "InternalServerError", "code": 500}}),
                                        content_type="text/event-stream")},
    }
    for kind, body in UNAUTHORIZED_BODIES.items():
        presets[f"unauthorized_{kind}"] = {path: Reply(status=401, body=body) for path in (MODELS, CHAT)}
    return presets


PRESETS = _presets()


class HostileServer(LoopServer):
    """The server. Start with `start()` (or the fixture), stop with `stop()`; `.url` is its base URL."""

    thread_name = "hostile-server"

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[tuple[str, str], Handler] = {}
        self.seen: list[Seen] = []

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method.upper(), path)] = handler

    def misbehave(self, name: str) -> None:
        """Install a named preset (see PRESETS) on top of the current routes."""
        self.routes.update(PRESETS[name])

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = await _read_request(reader)
        if seen is None:
            return
        self.seen.append(seen)
        handler = self.routes.get((seen.method, seen.path))
        if handler is None:
            reply = Reply(status=404, body=b'{"error":{"message":"File Not Found","type":"not_found_error",'
                                           b'"code":404}}')
        else:
            reply = handler(seen) if callable(handler) else handler
        await _answer(writer, reply)


async def _read_request(reader: asyncio.StreamReader) -> Seen | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    method, target, headers = parse_head(head)
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    parts = urlsplit(target)
    return Seen(method, parts.path, parse_qs(parts.query), headers, body)


def _bytes(b: Body) -> bytes:
    return b.encode() if isinstance(b, str) else b


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN: what a crashed or killed server looks like to the client."""
    sock: socket.socket | None = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _answer(writer: asyncio.StreamWriter, reply: Reply) -> None:
    if reply.stall_s and not reply.stall_in_body:
        await asyncio.sleep(reply.stall_s)
    streamed = reply.chunks is not None
    head = [f"HTTP/1.1 {reply.status} X", f"Content-Type: {reply.content_type}", "Connection: close",
            "Server: hostile"]
    head += [f"{k}: {v}" for k, v in reply.headers.items()]
    body = _bytes(reply.body)
    head.append("Transfer-Encoding: chunked" if streamed else f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    if not streamed:
        writer.write(body)
        await writer.drain()
        return
    assert reply.chunks is not None
    for i, piece in enumerate(reply.chunks):
        if reply.reset_after is not None and i >= reply.reset_after:
            await writer.drain()
            _reset(writer)
            return
        writer.write(chunk_frame(_bytes(piece)))
        await writer.drain()
        if i == 0 and reply.stall_s and reply.stall_in_body:
            await asyncio.sleep(reply.stall_s)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
    if reply.reset_after is not None:
        _reset(writer)
        return
    if reply.end_chunked:
        writer.write(LAST_CHUNK)
    await writer.drain()


def split_every(data: Sequence[bytes], size: int) -> list[bytes]:
    """Re-cut a list of chunks into writes of `size` bytes, so events and UTF-8 characters straddle reads."""
    joined = b"".join(data)
    return [joined[i : i + size] for i in range(0, len(joined), size)]


@pytest.fixture(name="hostile_server")
def hostile_server_fixture() -> Iterator[HostileServer]:
    server = HostileServer().start()
    try:
        yield server
    finally:
        server.stop()
