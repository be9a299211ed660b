"""The gateway's live state, for local readers only: a unix socket (0600, in the log directory) that answers one
snapshot, or a snapshot and then the events as they happen (`enginedeck traffic`, docs/gateway.md).

The protocol is a line each way: the reader sends `snapshot` or `follow`; the gateway answers JSON lines. A
snapshot holds the requests in flight (client, model, waiting for the first byte or streaming, elapsed, chunks and
bytes so far), the last FINISHED requests with their figures, and per client the requests of the last minute. A
follower then gets `start`, `first_byte` and `end` events, and a `progress` line at most every PROGRESS_S while
streams run (chunks so far per request): nothing while nothing flows.

No reader can grow the gateway (docs/limits.md, "What enginedeck's own servers accept from clients"): at most
MAX_READERS connections at once (past it, the oldest that has not asked yet or was dropped is cut to make room, else
the newcomer gets one `refused` line and is closed), MAX_FOLLOWERS of them following; the ask within ASK_TIMEOUT_S
and ASK_LIMIT bytes; each write taken by the reader within WRITE_TIMEOUT_S, or the connection is cut; a follower
that falls FOLLOW_QUEUE events or FOLLOW_BYTES behind is dropped (its queue freed, a last `dropped` line). A
connection is counted until its socket is closed: one that was dropped but never reads keeps its place until the
write deadline cuts it, or a newcomer needs the place.

A snapshot also holds `totals`, per model since the gateway started: requests, errors, tokens in and out, and the
90th percentile of time to first byte over the last TTFT_WINDOW_S (the exporter's and the alert rules' traffic,
console/gateway_feed.py). Model names come from clients: past MODELS_KEPT of them, the rest count under OTHER.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from console.gateway.record import RequestRecord

FINISHED = 50
FOLLOW_QUEUE = 1000  # events queued for one follower
FOLLOW_BYTES = 4 << 20  # and their bytes (a progress line grows with the requests in flight)
MAX_FOLLOWERS = 16
MAX_READERS = 32  # connections at once, following or asking a snapshot
ASK_TIMEOUT_S = 5.0
ASK_LIMIT = 4096  # the ask is a word
WRITE_TIMEOUT_S = 10.0  # a reader that takes nothing of what waits for it this long is cut
PROGRESS_S = 0.5
RATE_WINDOW_S = 60.0
RATE_KEPT = 10_000  # arrivals remembered for the per-client rates
SOCKET = "live.sock"
MODELS_KEPT = 256  # models counted apart in `totals`; model names come from clients, so the table is bounded
OTHER = "(other models)"
TTFT_WINDOW_S = 300.0
TTFT_KEPT = 1000  # first-byte times kept per model for the percentile
# A model's p90 is worked out again at most this often: a snapshot asked for by every dashboard poll and scrape
# then costs a sort per model per second at worst (bench/gateway_totals.py), never one per reader.
P90_MAX_AGE_S = 1.0
# Outcomes counted as errors: the engine's or a deadline's fault. A client that went away, or one the gateway
# refused (no key, a body too large), is not the engine failing.
ERROR_OUTCOMES = ("upstream_error", "timeout")


@dataclass
class _Totals:
    requests: int = 0
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    ttfts: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=TTFT_KEPT))  # (monotonic, ms)
    p90: tuple[float, float | None, int] | None = None  # (when worked out, p90 ms, times in the window)

    def as_json(self, model: str | None, now: float) -> dict[str, Any]:
        if self.p90 is None or now - self.p90[0] > P90_MAX_AGE_S:
            recent = sorted(ms for t, ms in self.ttfts if now - t <= TTFT_WINDOW_S)
            # nearest rank: the smallest value with at least 90 % of the window at or below it
            self.p90 = (now, recent[max(0, -(-len(recent) * 9 // 10) - 1)] if recent else None, len(recent))
        return {"model": model, "requests": self.requests, "errors": self.errors, "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "ttft_p90_ms": self.p90[1], "ttft_window_n": self.p90[2]}


@dataclass
class _Flight:
    rec: RequestRecord
    t0: float  # monotonic
    first: float | None = None
    chunks: int = 0
    bytes: int = 0
    changed: bool = True


@dataclass
class Live:
    gateway: str
    upstream: str
    flights: dict[str, _Flight] = field(default_factory=dict)
    finished: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=FINISHED))
    arrivals: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=RATE_KEPT))
    followers: set[_Reader] = field(default_factory=set)
    # every connection, following or not, until closed, oldest first
    readers: dict[_Reader, asyncio.StreamWriter] = field(default_factory=dict)
    totals: dict[str | None, _Totals] = field(default_factory=dict)
    _ticker: asyncio.Task[None] | None = None

    # ---- the gateway's side (cheap: called for every request and every chunk)

    def start(self, rec: RequestRecord, at: float | None = None) -> None:
        """`at`: when it arrived (time.monotonic(), one clock for every process of the box), if not now."""
        now = time.monotonic() if at is None else at
        self.flights[rec.request_id] = _Flight(rec, now)
        self.arrivals.append((now, rec.client))
        if self.followers:
            self._send({"event": "start", **self._flight(self.flights[rec.request_id], now)})

    def chunk(self, rec: RequestRecord, size: int) -> None:
        self.progress(rec.request_id, 1, size)

    def progress(self, request_id: str, chunks: int, size: int, first: float | None = None) -> None:
        """`chunks` pieces of `size` bytes in all went to the client; `first`: when the first one did, if earlier
        (a gateway worker says its progress a few times a second: console/gateway/workers.py)."""
        flight = self.flights.get(request_id)
        if flight is None:
            return
        if flight.first is None:
            flight.first = time.monotonic() if first is None else first
            if self.followers:
                self._send({"event": "first_byte", "request_id": request_id,
                            "ttft_ms": round((flight.first - flight.t0) * 1000, 1)})
        flight.chunks += chunks
        flight.bytes += size
        flight.changed = True
        if self.followers and self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    def end(self, rec: RequestRecord) -> None:
        self.flights.pop(rec.request_id, None)
        done = {k: v for k, v in rec.entry().items() if k not in ("request_hash", "user_agent")}
        self.finished.append(done)
        self._count(rec)
        if self.followers:
            self._send({"event": "end", **done})

    def _count(self, rec: RequestRecord) -> None:
        key: str | None = rec.model
        if key not in self.totals and len(self.totals) >= MODELS_KEPT:
            key = OTHER
        totals = self.totals.setdefault(key, _Totals())
        totals.requests += 1
        totals.errors += rec.outcome.value in ERROR_OUTCOMES
        totals.tokens_in += rec.tokens_in or 0
        totals.tokens_out += rec.tokens_out or 0
        if rec.ttft_ms is not None:
            totals.ttfts.append((time.monotonic(), rec.ttft_ms))

    # ---- what readers get

    def _flight(self, f: _Flight, now: float) -> dict[str, Any]:
        r = f.rec
        return {"request_id": r.request_id, "client": r.client, "model": r.model, "method": r.method, "path": r.path,
                "phase": "waiting" if f.first is None else "streaming", "elapsed_s": round(now - f.t0, 3),
                "ttft_ms": None if f.first is None else round((f.first - f.t0) * 1000, 1), "chunks": f.chunks,
                "bytes": f.bytes,
                "chunks_per_s": round(f.chunks / (now - f.first), 1) if f.first and now > f.first else None}

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        rates: dict[str, int] = {}
        for t, client in self.arrivals:
            if now - t <= RATE_WINDOW_S:
                rates[client] = rates.get(client, 0) + 1
        return {"event": "snapshot", "gateway": self.gateway, "upstream": self.upstream, "time": time.time(),
                "in_flight": [self._flight(f, now) for f in self.flights.values()],
                "finished": list(self.finished), "requests_last_minute": rates,
                "totals": [t.as_json(model, now) for model, t in self.totals.items()]}

    def _send(self, event: dict[str, Any]) -> None:
        line = _line(event)  # once, whatever the number of followers
        for reader in list(self.followers):
            if not reader.put(line):
                self.followers.discard(reader)
                reader.finish({"event": "dropped", "reason": f"the reader fell {FOLLOW_QUEUE} events or "
                                                              f"{FOLLOW_BYTES >> 20} MiB behind"})

    async def _tick(self) -> None:
        try:
            while self.followers and any(f.first is not None for f in self.flights.values()):
                await asyncio.sleep(PROGRESS_S)
                now = time.monotonic()
                changed = [f for f in self.flights.values() if f.changed and f.first is not None]
                for f in changed:
                    f.changed = False
                if changed:
                    self._send({"event": "progress", "in_flight": [self._flight(f, now) for f in changed]})
        finally:
            self._ticker = None

    # ---- the socket

    async def serve(self, path: Path) -> asyncio.Server:
        _remove(path)  # a socket left by a gateway that was killed
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self._client, path=str(path), limit=ASK_LIMIT)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        return server

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.readers) >= MAX_READERS:
            # Full: the oldest connection that has not asked yet, or that was dropped and has not taken its last
            # line, makes room (neither idle connections nor stuck followers keep out a reader that asks at once);
            # when there is none, the newcomer is refused. A short line fits the socket's empty buffer: written at
            # once, and the close does not wait on it.
            idle = next((r for r in self.readers if r.asking or r.last), None)
            if idle is None:
                writer.write(_line({"event": "refused", "reason": f"{MAX_READERS} readers already connected"}))
                writer.close()
                return
            self.readers.pop(idle).transport.abort()
        me = _Reader()
        self.readers[me] = writer
        try:
            async with asyncio.timeout(ASK_TIMEOUT_S):
                ask = (await reader.readline()).strip()
            me.asking = False
            if me not in self.readers:  # cut to make room while it was silent
                return
            await _write(writer, _line(self.snapshot()))
            if ask != b"follow" or len(self.followers) >= MAX_FOLLOWERS:
                return
            self.followers.add(me)
            try:
                while True:
                    await me.ready.wait()
                    lines, last = me.take()
                    await _write(writer, b"".join(lines))
                    if last:
                        return
            finally:
                self.followers.discard(me)
        except (OSError, TimeoutError, ValueError, asyncio.LimitOverrunError):
            writer.transport.abort()  # what is still buffered for this reader is dropped with it
        finally:
            me.lines.clear()
            await _close(writer)
            self.readers.pop(me, None)

    def close(self) -> None:
        for reader in list(self.followers):
            reader.finish({"event": "stopped"})
        self.followers.clear()


class _Reader:
    """One connection's lines waiting to be written, bounded by FOLLOW_QUEUE and FOLLOW_BYTES."""

    def __init__(self) -> None:
        self.lines: deque[bytes] = deque()
        self.size = 0
        self.last = False
        self.asking = True  # connected, the ask not yet read
        self.ready = asyncio.Event()

    def put(self, line: bytes) -> bool:
        """Queue a line; False (nothing queued) when the reader is too far behind for it."""
        if len(self.lines) >= FOLLOW_QUEUE or self.size + len(line) > FOLLOW_BYTES:
            return False
        self.lines.append(line)
        self.size += len(line)
        self.ready.set()
        return True

    def finish(self, event: dict[str, Any]) -> None:
        """End with `event`: what was queued is freed now, not when (if ever) the reader takes it."""
        self.lines.clear()
        self.lines.append(_line(event))
        self.size = len(self.lines[0])
        self.last = True
        self.ready.set()

    def take(self) -> tuple[list[bytes], bool]:
        lines, self.size = list(self.lines), 0
        self.lines.clear()
        self.ready.clear()
        return lines, self.last


async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    async with asyncio.timeout(WRITE_TIMEOUT_S):
        await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close once what is buffered is taken, within WRITE_TIMEOUT_S: a transport closed with bytes a reader never
    takes would otherwise hold them (and its socket) for good."""
    writer.close()
    try:
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except OSError:
        pass


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=True, default=str) + "\n").encode("ascii")


LINE_LIMIT = 16 << 20  # one line from a gateway's socket (a snapshot with a thousand requests in flight is ~0.5 MB)


async def ask(path: Path, *, follow: bool = False) -> Any:
    """The lines a gateway's live socket answers, parsed: one snapshot, or (follow) a snapshot and its events
    until the gateway stops. An async generator of dicts."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=LINE_LIMIT)
    try:
        writer.write(b"follow\n" if follow else b"snapshot\n")
        await writer.drain()
        while line := await reader.readline():
            event = json.loads(line)
            if isinstance(event, dict):
                yield event
            if not follow:
                return
    finally:
        writer.close()


def sockets(log_dirs: list[Path], data_dir: Path) -> list[Path]:
    """The live sockets of configured gateways and of any gateway under the data dir, each once."""
    found = [d / SOCKET for d in log_dirs] + sorted((data_dir / "gateway").glob(f"*/{SOCKET}"))
    seen: set[Path] = set()
    out = []
    for path in found:
        key = path.resolve() if path.exists() else path
        if path.is_socket() and key not in seen:
            seen.add(key)
            out.append(path)
    return out
