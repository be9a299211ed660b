"""A loopback server that attacks the client at the HTTP level: whatever is asked, it answers with one attack.

Each ATTACKS entry is what a broken or hostile endpoint can do to a reader that trusts it: talk forever, send one
line that never ends, drip a byte at a time, inflate a gzip bomb, nest JSON 100 000 deep, lie about a length,
break chunked framing, speak something that is not HTTP, send interim answers forever, redirect to itself.
The answer ignores the path, so every command of enginedeck meets the same attack: configure the engine's kind
(`kind = "ollama"` or `"vllm"`) so that detection does not stop at the first answer.

    with attack_server("endless_json") as url: ...
    python -m tests.fakes.wire_attacks endless_json   # serves until Ctrl-C, prints its URL
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import zlib
from collections.abc import Awaitable, Callable, Iterator

from tests.fakes.http_fake import LoopServer

Writer = asyncio.StreamWriter
Attack = Callable[[Writer, str], Awaitable[None]]

DRIP_INTERVAL_S = 0.3
MIB = 1 << 20


def _head(status: int = 200, content_type: str = "application/json", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nServer: attack\r\n{extra}\r\n").encode()


def _stream_type(path: str) -> str:
    # A chat is asked for as a stream: answer it as one, so the attack reaches the stream reader.
    if path.endswith("/chat/completions"):
        return "text/event-stream"
    return "application/x-ndjson" if path in ("/api/chat", "/api/pull", "/api/generate") else "application/json"


async def _forever(w: Writer, piece: bytes) -> None:
    while True:
        w.write(piece)
        await w.drain()


async def endless_json(w: Writer, path: str) -> None:
    """A valid JSON document that never ends (close-delimited)."""
    w.write(_head(content_type=_stream_type(path)) + b'{"models": [')
    await _forever(w, b'{"name": "m", "model": "m", "size": 1},' * 1000)


async def endless_lines(w: Writer, path: str) -> None:
    """Complete, valid-looking lines forever: a stream that keeps its deadline but never ends."""
    line = b'data: {"choices": [{"index": 0, "delta": {"content": "x"}}]}\n\n' if "completions" in path else \
        b'{"model": "m", "message": {"role": "assistant", "content": "x"}, "done": false}\n'
    w.write(_head(content_type=_stream_type(path)))
    await _forever(w, line * 1000)


async def huge_line(w: Writer, path: str) -> None:
    """One line with no newline, 200 MB and more (close-delimited)."""
    w.write(_head(content_type=_stream_type(path)) + b'data: {"x": "' if "completions" in path else
            _head(content_type=_stream_type(path)) + b'{"x": "')
    await _forever(w, b"a" * MIB)


async def drip(w: Writer, path: str) -> None:
    """A byte every DRIP_INTERVAL_S: each read is quick, the answer never completes."""
    w.write(_head(content_type=_stream_type(path), extra="Content-Length: 1000000\r\n"))
    while True:
        w.write(b" ")
        await w.drain()
        await asyncio.sleep(DRIP_INTERVAL_S)


async def drip_head(w: Writer, path: str) -> None:
    """The head itself, a byte at a time."""
    for byte in _head(content_type=_stream_type(path)) * 1000:
        w.write(bytes([byte]))
        await w.drain()
        await asyncio.sleep(DRIP_INTERVAL_S)


async def gzip_bomb(w: Writer, path: str) -> None:
    """gzip of endless zeros: ~1 KB on the wire per MB it inflates to."""
    w.write(_head(content_type=_stream_type(path), extra="Content-Encoding: gzip\r\n"))
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + 15)
    zeros = bytes(16 * MIB)
    w.write(z.compress(zeros))
    while True:
        w.write(z.compress(zeros) + z.flush(zlib.Z_SYNC_FLUSH))
        await w.drain()


async def invalid_utf8(w: Writer, path: str) -> None:
    body = b'{"models": [{"name": "\xff\xfe\xc3\x28 bad", "model": "\xed\xa0\x80"}], "data": []}\n'
    w.write(_head(content_type=_stream_type(path), extra=f"Content-Length: {len(body)}\r\n") + body)
    await w.drain()


async def deep_json(w: Writer, path: str) -> None:
    body = b"[" * 100_000 + b"]" * 100_000 + b"\n"
    w.write(_head(content_type=_stream_type(path), extra=f"Content-Length: {len(body)}\r\n") + body)
    await w.drain()


async def huge_number(w: Writer, path: str) -> None:
    body = b'{"models": [{"name": "m", "size": ' + b"9" * 1_000_000 + b'}], "data": []}\n'
    w.write(_head(content_type=_stream_type(path), extra=f"Content-Length: {len(body)}\r\n") + body)
    await w.drain()


async def short_length(w: Writer, path: str) -> None:
    """Content-Length promises more than comes; the connection then closes."""
    w.write(_head(extra="Content-Length: 5000\r\n") + b'{"models": [')
    await w.drain()


async def long_length(w: Writer, path: str) -> None:
    """Content-Length of a terabyte, and bytes to match for as long as anyone reads."""
    w.write(_head(extra="Content-Length: 1099511627776\r\n") + b'{"models": [')
    await _forever(w, b" " * MIB)


async def broken_chunked(w: Writer, path: str) -> None:
    w.write(_head(content_type=_stream_type(path), extra="Transfer-Encoding: chunked\r\n")
            + b"5\r\n{\"mod\r\nzz\r\nels\r\n")
    await w.drain()
    await asyncio.sleep(60)


async def not_http(w: Writer, path: str) -> None:
    """What a TLS server says to a plain-text client: a handshake record, then nothing that parses."""
    w.write(b"\x16\x03\x01\x00\x2a\x02\x00\x00\x26\x03\x03" + bytes(range(256)) * 4)
    await w.drain()


async def endless_head(w: Writer, path: str) -> None:
    """A status line and then header lines forever, never the blank line."""
    w.write(b"HTTP/1.1 200 OK\r\n")
    await _forever(w, b"X-Filler: " + b"a" * 1000 + b"\r\n")


async def interim_storm(w: Writer, path: str) -> None:
    await _forever(w, b"HTTP/1.1 100 Continue\r\n\r\n" * 100)


async def redirect_loop(w: Writer, path: str) -> None:
    w.write(_head(302, extra=f"Location: {path}\r\nContent-Length: 0\r\n"))
    await w.drain()


# What the CLI test and bench/hostile_wire.py run against an attack (engine "bad", configured with a kind).
COMMANDS = {
    "engines": ["engines"],
    "models": ["models"],
    "ps": ["ps"],
    "chat": ["chat", "bad", "m", "hi", "--max-tokens", "8"],
    "probe": ["probe", "bad", "m", "--levels", "1", "--requests", "2", "--max-tokens", "8", "--workers", "1"],
}

ATTACKS: dict[str, Attack] = {f.__name__: f for f in (
    endless_json, endless_lines, huge_line, drip, drip_head, gzip_bomb, invalid_utf8, deep_json, huge_number,
    short_length, long_length, broken_chunked, not_http, endless_head, interim_storm, redirect_loop)}


class AttackServer(LoopServer):
    """Serves ATTACKS[name] to every request."""

    def __init__(self, name: str) -> None:
        self.thread_name = f"attack-{name}"
        super().__init__()
        self.attack = ATTACKS[name]
        self.requests: list[tuple[str, str]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, _, rest = head.decode("latin-1").partition("\r\n")
            method, target, _ = request_line.split(" ", 2)
            length = next((int(line.split(":", 1)[1]) for line in rest.split("\r\n")
                           if line.lower().startswith("content-length:")), 0)
            if length:
                await reader.readexactly(length)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            return
        path = target.split("?", 1)[0]
        self.requests.append((method, path))
        await self.attack(writer, path)


@contextlib.contextmanager
def attack_server(name: str) -> Iterator[str]:
    server = AttackServer(name).start()
    try:
        yield server.url
    finally:
        server.stop()


if __name__ == "__main__":
    with attack_server(sys.argv[1]) as url:
        print(url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
