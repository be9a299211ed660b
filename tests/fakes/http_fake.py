"""Loopback HTTP plumbing the fake engines share, so each fake holds only its engine's wire behaviour.

Threaded fakes (ollama_server, openai_family): `ThreadedFake` runs a `FakeHandler` subclass on a free loopback
port in a daemon thread, keeps the request log and a stop event that streaming handlers honour; `FakeHandler`
reads bodies and writes heads, bodies, chunked frames and hard drops. The asyncio fakes (hostile_server,
wire_attacks, synthetic_engine) write HTTP by hand and share `parse_head`, `chunk_frame` and `sse_frame` from
here; `LoopServer` runs one of them on its own event loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

LAST_CHUNK = b"0\r\n\r\n"


def chunk_frame(data: bytes) -> bytes:
    """One frame of HTTP/1.1 chunked transfer encoding; an empty `data` is the terminating frame."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def sse_frame(payload: bytes | str, prefix: bytes = b"data: ") -> bytes:
    """One SSE event; `prefix` is b"data:" for servers (axum) that write no space after the colon."""
    return prefix + (payload.encode() if isinstance(payload, str) else payload) + b"\n\n"


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Method, target and lower-cased headers of a request head read up to its blank line."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return method.upper(), target, headers


@dataclass(frozen=True)
class Recorded:
    """A request a threaded fake received (headers lower-cased, body as the fake decoded it)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    peer: tuple[str, int]  # the client's address: the same port twice means a reused connection


class Stopped(Exception):
    """The fake is shutting down: end this response quietly."""


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: ThreadedFake

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (a cancelled stream, a closed pool) are part of the game, not server bugs.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeHandler(BaseHTTPRequestHandler):
    """Answers GET, POST and DELETE through `dispatch`; a client that hangs up or a stopping fake ends it quietly."""

    server: LoopbackServer

    def dispatch(self, method: str) -> None:
        raise NotImplementedError

    def _guarded(self, method: str) -> None:
        try:
            self.dispatch(method)
        except (Stopped, BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._guarded("GET")

    def do_POST(self) -> None:
        self._guarded("POST")

    def do_DELETE(self) -> None:
        self._guarded("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def record(self, method: str, path: str, body: Any) -> None:
        fake = self.server.fake
        with fake.lock:
            fake.requests.append(Recorded(method, path, {k.lower(): v for k, v in self.headers.items()}, body,
                                          self.client_address[:2]))

    def send_head(self, status: int, headers: Mapping[str, str]) -> None:
        """The status line and `headers` in the order given."""
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def send_body(self, status: int, data: bytes, headers: Mapping[str, str]) -> None:
        """A whole response; `headers` must carry Content-Length. A HEAD request gets the head alone."""
        self.send_head(status, headers)
        if self.command != "HEAD":
            self.wfile.write(data)

    def write_chunk(self, data: bytes) -> None:
        if self.server.fake.stopping.is_set():
            raise Stopped
        self.wfile.write(chunk_frame(data))
        self.wfile.flush()

    def end_chunks(self) -> None:
        self.wfile.write(LAST_CHUNK)
        self.wfile.flush()

    def write_raw(self, data: bytes) -> None:
        """For bodies delimited by closing the connection (HTTP/1.0)."""
        self.wfile.write(data)
        self.wfile.flush()

    def drop(self) -> None:
        """Cut the connection mid-body, like a crashed runner or a proxy timeout."""
        self.wfile.flush()
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def pause(self, seconds: float) -> None:
        """Sleep between chunks, waking at once (and ending the response) when the fake stops."""
        if seconds > 0 and self.server.fake.stopping.wait(seconds):
            raise Stopped


class ThreadedFake:
    """A `FakeHandler` class served on a loopback port (0: a free one) from a daemon thread."""

    def __init__(self, handler: type[FakeHandler], *, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self.requests: list[Recorded] = []
        self.lock = threading.RLock()  # handlers run on the server's threads
        self.stopping = threading.Event()
        self._httpd = LoopbackServer((host, port), handler)
        self._httpd.fake = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-{self.name}:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def serve_until_interrupted(self) -> None:
        """For the `python -m tests.fakes.<x>` entry points: serve until Ctrl-C."""
        self.start()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def requests_to(self, path: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.path == path]


class LoopServer:
    """An asyncio server on a free loopback port, on its own event loop in a daemon thread, so sync tests, async
    tests and CLI subprocesses can all point at `.url`. Subclasses answer a connection in `handle`; a connection
    still open at `stop()` is cancelled."""

    thread_name = "loop-server"

    def __init__(self) -> None:
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=self.thread_name, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=5)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handle(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()
