"""uvicorn's httptools protocol with a bound on what a client may send before its request's head is complete.

uvicorn bounds neither the size of a request's head nor the time it takes to arrive when it runs on httptools:
httptools joins a header's pieces itself and uvicorn keeps the URL and every header, so a client sending one
endless header (or URL, or header lines forever) grew the gateway by hundreds of MB a second, and a client that
connects and says nothing holds its connection for good. The key check happens in the app, after the head, so
neither needed a key. Here:

- **size**: the bytes received while a head is still incomplete are counted, read by read; past `max_bytes` the
  client gets 431 and the connection is closed. A head that completes within one read is never counted, so a
  request with a small head and a large body in the same read is not refused; what is counted can include the
  end of the previous request on the connection (pipelining), at most one read.
- **time**: from the connection's start, and from the first byte of each next request, the head must be
  complete within `deadline_s`, else 408 and the connection is closed. (Between requests uvicorn's own keep-alive
  timeout closes an idle connection.)

Each refusal is one structured line on stderr (`head_refused`). No request record is written: no request was
read, so there is nothing to sign but an address.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from console.gateway.events import emit

REASONS = {431: "Request Header Fields Too Large", 408: "Request Timeout"}


class BoundedHeadProtocol(HttpToolsProtocol):
    """`uvicorn.Config(http=BoundedHeadProtocol)`; the bounds are class attributes, set per server by `bounded`."""

    max_bytes: ClassVar[int]  # the config's max_head_bytes (64 KiB: nginx takes 4 x 8 KiB, Node.js 16 KiB)
    deadline_s: ClassVar[float]  # head_timeout_s

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # a new connection waits for its first head
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_bytes:
                self._refuse(431, f"the request's head passed {self.max_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        if self._head_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next head's clock starts with its first byte (on_message_begin); until then keep-alive rules.
        self._in_head = True
        self._head_bytes = 0

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.deadline_s, self._late)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _late(self) -> None:
        self._head_timer = None
        if self._in_head and not self._refused and not self.transport.is_closing():
            self._refuse(408, f"no complete request head within {self.deadline_s:g} s")

    def _refuse(self, status: int, why: str) -> None:
        self._refused = True
        self._disarm()
        body = f"{why}\n".encode("ascii")
        self.transport.write(b"".join((
            f"HTTP/1.1 {status} {REASONS[status]}\r\n".encode("ascii"),
            b"content-type: text/plain; charset=utf-8\r\n",
            f"content-length: {len(body)}\r\n".encode("ascii"),
            b"connection: close\r\n\r\n", body)))
        self.transport.close()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else None
        emit("head_refused", level="warning", client=client, status=status, reason=why)


def bounded(max_bytes: int, deadline_s: float) -> type[BoundedHeadProtocol]:
    """The protocol class with these bounds (uvicorn makes one instance per connection from a class)."""
    return type("BoundedHead", (BoundedHeadProtocol,), {"max_bytes": max_bytes, "deadline_s": deadline_s})
