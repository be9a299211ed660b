"""The exporter's HTTP side: prometheus_client's own WSGI app on the standard library's threading WSGI server,
answering each scrape with a fresh collection made on the event loop, under the collector's deadline.

A scrape waits at most the deadline plus a margin for its collection; a collection still running then is
answered with what the last one found, marked by `enginedeck_scrape_stale 1`: never a hang.

The server gives each connection a thread, so what a client may hold is bounded (docs/limits.md, "What enginedeck's
own servers accept from clients"): at most MAX_CONNECTIONS at once and MAX_PER_ADDRESS from one address (past
either, 503 and closed, no thread); a request's line and headers within HEAD_TIMEOUT_S of the accept, in all, and
HEAD_LIMIT bytes (a client that drips its head, or sends one forever, gets 408 or 431 and is closed); the answer
written within WRITE_TIMEOUT_S. prometheus_client's own `start_http_server` bounds none of these: a thread per
connection, held as long as the client likes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app
from prometheus_client.registry import Collector as PromCollector
from prometheus_client.registry import CollectorRegistry

from console.config import split_listen
from console.errors import ConfigError
from console.watch.exposition import families

if TYPE_CHECKING:
    from console.watch.collect import Collector, Snapshot

DEFAULT_LISTEN = "127.0.0.1:9464"  # 9464: the port Prometheus's registry of default ports gives enginedeck's kind
MARGIN_S = 1.0  # past the collection's own deadline, before a scrape stops waiting for it
# What one client may hold. A scraper sends its head at once and reads its answer at once: these bounds never
# touch Prometheus, and a connection lives at most HEAD_TIMEOUT_S + the deadline + MARGIN_S + WRITE_TIMEOUT_S.
MAX_CONNECTIONS = 32  # served at once, a thread each; Prometheus (or a few) scrapes one at a time
MAX_PER_ADDRESS = 8  # of them from one client address
HEAD_TIMEOUT_S = 5.0  # the request line and headers, in all, from the accept: a drip does not stretch it
HEAD_LIMIT = 64 << 10  # bytes read before the head is complete (the gateway's bound, docs/limits.md)
WRITE_TIMEOUT_S = 10.0  # the whole answer, to a client that reads it slowly or never


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[v6]:PORT` for IPv6) -> (host, port); a clear error for anything else."""
    where = split_listen(text)
    if where is None or where[1] == 0:
        raise ConfigError(f"--listen {text!r} is not HOST:PORT", hint=f"e.g. --listen {DEFAULT_LISTEN}")
    return where



class ScrapeCollector(PromCollector):
    """A prometheus_client collector whose `collect` (called in the server's thread) asks the event loop for a
    snapshot and waits for it within the deadline."""

    def __init__(self, collector: Collector, loop: asyncio.AbstractEventLoop, *, host: str) -> None:
        self.collector = collector
        self.loop = loop
        self.host = host
        self.folded_total: dict[str, int] = {}
        self._lock = threading.Lock()  # folded_total is summed by one scrape at a time
        self.last: Snapshot | None = None

    def collect(self) -> Iterator[Metric]:
        future = asyncio.run_coroutine_threadsafe(self.collector.collect(), self.loop)
        stale = GaugeMetricFamily("enginedeck_scrape_stale", "1 when this answer repeats the last collection "
                                  "because the new one missed the deadline")
        snap: Snapshot | None
        try:
            snap = future.result(self.collector.deadline_s + MARGIN_S)
            stale.add_metric([], 0)
        except FutureTimeout:
            snap = self.last
            stale.add_metric([], 1)
        if snap is None:
            yield stale
            return
        self.last = snap
        with self._lock:
            yield from families(snap, host=self.host, folded_total=self.folded_total)
        yield stale


class _HeadLate(Exception):
    pass


class _HeadTooLarge(Exception):
    pass


class _HeadReader(io.RawIOBase):
    """A connection's bytes as the handler reads them, counted against HEAD_LIMIT and HEAD_TIMEOUT_S from the
    accept. The socket's own timeout is per receive, so a client dripping a byte at a time would never meet it:
    each receive here waits only for what is left of the one deadline. (prometheus_client's app never reads a
    body, so everything read is head.)"""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = time.monotonic() + HEAD_TIMEOUT_S
        self.left = HEAD_LIMIT

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            raise _HeadTooLarge
        wait = self.deadline - time.monotonic()
        if wait <= 0:
            raise _HeadLate
        self.sock.settimeout(wait)
        try:
            got = self.sock.recv_into(memoryview(buffer)[:self.left])
        except TimeoutError:
            raise _HeadLate from None
        self.left -= got
        return got


class _Handler(WSGIRequestHandler):
    """wsgiref's handler (one request a connection), silent, with the head bounded and the answer timed."""

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain reader is replaced; closed, so the socket's close is not deferred
        self.rfile = io.BufferedReader(_HeadReader(self.request))

    def parse_request(self) -> bool:
        complete = super().parse_request()
        self.request.settimeout(WRITE_TIMEOUT_S)  # sendall's timeout is for the whole answer (Python >= 3.5)
        return complete

    def handle(self) -> None:
        try:
            self._handle()
        except _HeadLate:
            _refuse(self.request, HTTPStatus.REQUEST_TIMEOUT)
        except _HeadTooLarge:
            _refuse(self.request, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        except OSError:
            pass  # the client went away, or did not take the answer within WRITE_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: a scrape is not an event, and a client's request line is untrusted text."""

    def _handle(self) -> None:
        # wsgiref's WSGIRequestHandler.handle, with _Answer for its ServerHandler
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return
        if not self.parse_request():  # the error was answered
            return
        # typeshed has wfile as a BufferedIOBase and the handler wanting IO[bytes]; wsgiref passes the same object
        answer = _Answer(self.rfile, self.wfile, self.get_stderr(), self.get_environ(),  # type: ignore[arg-type]
                         multithread=False)
        answer.request_handler = self  # type: ignore[attr-defined]  # wsgiref's own back-pointer, for logging
        answer.run(self.server.get_app())  # type: ignore[attr-defined]


class _Answer(ServerHandler):
    """wsgiref's ServerHandler, which writes a traceback to stderr for any failure while answering but a reset:
    a client that did not take its answer within WRITE_TIMEOUT_S (a timeout) is the client's failure, not ours."""

    def log_exception(self, exc_info: Any) -> None:
        if not isinstance(exc_info[1], OSError):
            super().log_exception(exc_info)


def _refuse(sock: socket.socket, status: HTTPStatus) -> None:
    with contextlib.suppress(OSError):
        sock.settimeout(1.0)
        sock.sendall(f"HTTP/1.0 {status.value} {status.phrase}\r\nContent-Length: 0\r\n"
                     f"Connection: close\r\n\r\n".encode())


class _Server(ThreadingWSGIServer):
    """prometheus_client's threading WSGI server (daemon threads), with at most MAX_CONNECTIONS handled at once and
    MAX_PER_ADDRESS of them from one client address, so that one host holding its share cannot starve Prometheus's
    scrape from another. A connection past either is answered 503 from the accepting thread and closed: it gets no
    thread."""

    request_queue_size = 128  # socketserver's 5 drops a burst of connects before the accepting thread sees them

    def __init__(self, where: tuple[str, int], family: socket.AddressFamily) -> None:
        self.lock = threading.Lock()
        self.held: dict[str, int] = {}  # connections handled now, per client address
        self.address_family = family  # read by the socket server's constructor (IPv6 when the host is one)
        super().__init__(where, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        peer = str(client_address[0])
        with self.lock:
            full = sum(self.held.values()) >= MAX_CONNECTIONS or self.held.get(peer, 0) >= MAX_PER_ADDRESS
            if not full:
                self.held[peer] = self.held.get(peer, 0) + 1
        if full:
            _refuse(request, HTTPStatus.SERVICE_UNAVAILABLE)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release(peer)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(str(client_address[0]))

    def _release(self, peer: str) -> None:
        with self.lock:
            self.held[peer] -= 1
            if not self.held[peer]:
                del self.held[peer]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client's failure is its own, never a traceback
            super().handle_error(request, client_address)


def serve(collector: Collector, loop: asyncio.AbstractEventLoop, *, host: str, port: int,
          host_name: str) -> tuple[WSGIServer, threading.Thread]:
    """Serve prometheus_client's WSGI app on (host, port) in a thread; the caller runs `loop` and shuts it down."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector(collector, loop, host=host_name))
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        server = _Server((host, port), family)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                          hint="pick a free port with --listen HOST:PORT") from None
    server.set_app(make_wsgi_app(registry))
    thread = threading.Thread(target=server.serve_forever, name="exporter", daemon=True)
    thread.start()
    return server, thread
