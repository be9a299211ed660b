"""A gateway served by several processes: `workers` = N (docs/gateway.md, "Workers").

One event loop forwards a batch of chunks one after another: an engine decodes its streams together, so at 64
streams the last chunk of a step can wait for the other 63 (30-40 µs each on a 2-core box). N worker processes
each listen on the gateway's port (SO_REUSEPORT: the kernel spreads new connections over their sockets by a hash of
the client's address and port, where one shared socket would let whichever worker wakes first take a whole burst)
and each runs the same ASGI app on its own loop, so a batch is spread over N cores. The supervisor holds the port
bound, not listening.

What stays in this process, the supervisor: every sink (console/gateway/sinks.py). So there is one signed
log with its rotation, one usage ledger writer, one live socket whose readers see every worker's requests, and the
file formats and readers are those of one process. A worker sends what the sinks need over a socket pair
(console/frames.py): `start` with the record and its arrival time, `progress` (chunks and bytes per request, at
most every PROGRESS_S while streams run: nothing per chunk) and `end` with the finished record.

Life cycle: workers are fresh interpreters (`python -m console.gateway.workers SOCK LINK`), never forks of this
event loop. SIGTERM or Ctrl-C to the supervisor goes to every worker, which drains as a lone gateway does
(`drain_timeout_s`) and sends its last records; the supervisor closes the log once every worker has gone. A worker
that dies is started again (its requests in flight are lost, and said so on stderr); more than MAX_DEATHS in
DEATH_WINDOW_S stops the gateway with exit 1. A worker whose supervisor dies (its link closes) stops serving.
Capture is refused with workers: one process writes its ring.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from console.errors import EngineDeckError
from console.frames import read_frame, spawn, write_frame
from console.gateway.events import emit
from console.gateway.record import RequestRecord

if TYPE_CHECKING:
    from console.gateway.server import Settings
    from console.gateway.sinks import Sinks

PROGRESS_S = 0.1
START_TIMEOUT_S = 60.0  # a fresh interpreter imports uvicorn and the app; a loaded box can take seconds
STOP_MARGIN_S = 10.0  # past the drain: a worker that has not gone by then is killed
MAX_DEATHS, DEATH_WINDOW_S = 5, 60.0


# ---------------------------------------------------------------------------------------------- supervisor


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    writer: asyncio.StreamWriter
    flights: set[str] = field(default_factory=set)  # its requests in flight, by id
    ready: bool = False
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    pump: asyncio.Task[None] | None = None  # reads its link


class Supervisor:
    def __init__(self, settings: Settings, sinks: Sinks) -> None:
        self.settings = settings
        self.sinks = sinks
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        self.deaths: list[float] = []
        self.failed: str | None = None
        self.changed = asyncio.Event()  # a worker became ready or went

    async def start(self, index: int) -> None:
        try:  # stderr: the gateway's own, one JSON line at a time from each process
            proc, ours = spawn("console.gateway.workers", stderr=None)
        except OSError as exc:
            raise EngineDeckError(f"cannot start a gateway worker: {exc}", hint="try --workers 1") from None
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        worker = _Worker(index, proc, writer)
        self.workers[index] = worker
        write_frame(writer, ("init", self.settings))
        worker.pump = asyncio.create_task(self._pump(worker, reader), name=f"gateway-worker-{index}")

    async def _pump(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        live, records = self.sinks.live, self.sinks.records
        try:
            while True:
                msg = await read_frame(reader)
                kind = msg[0]
                if kind == "progress":
                    for rid, chunks, size, first in msg[1]:
                        live.progress(rid, chunks, size, first)
                elif kind == "start":
                    worker.flights.add(msg[1].request_id)
                    live.start(msg[1], msg[2])
                elif kind == "end":
                    rec: RequestRecord = msg[1]
                    worker.flights.discard(rec.request_id)
                    for sink in records:
                        try:
                            sink(rec)
                        except Exception as exc:  # one sink failing (a full disk) must not hide it from the others
                            emit("sink_failed", level="error", request_id=rec.request_id,
                                 error=f"{type(exc).__name__}: {exc}")
                elif kind == "ready":
                    worker.ready = True
                    self.changed.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception as exc:  # a message this process cannot read: the worker is stopped and started again
            emit("worker_unreadable", level="error", worker=worker.index, error=f"{type(exc).__name__}: {exc}")
            worker.proc.kill()
        worker.writer.close()
        await asyncio.to_thread(worker.proc.wait)
        await self._gone(worker)

    async def _gone(self, worker: _Worker) -> None:
        for rid in worker.flights:  # their records went with the worker
            self.sinks.live.flights.pop(rid, None)
        worker.gone.set()
        self.changed.set()
        if self.stopping:
            return
        emit("worker_died", level="error", worker=worker.index, pid=worker.proc.pid, exit_code=worker.proc.returncode,
             lost_in_flight=len(worker.flights))
        now = time.monotonic()
        self.deaths = [t for t in self.deaths if now - t < DEATH_WINDOW_S] + [now]
        if len(self.deaths) > MAX_DEATHS:
            self.failed = f"{len(self.deaths)} workers died within {DEATH_WINDOW_S:g} s"
            return
        try:
            await self.start(worker.index)
        except EngineDeckError as exc:
            self.failed = str(exc)

    async def stop(self) -> None:
        """SIGTERM to every worker; wait for each to drain and go (killing those past the drain and a margin)."""
        self.stopping = True
        for worker in self.workers.values():
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        deadline = self.settings.drain_timeout_s + STOP_MARGIN_S
        try:
            async with asyncio.timeout(deadline):
                for worker in list(self.workers.values()):
                    await worker.gone.wait()
        except TimeoutError:
            for worker in self.workers.values():
                if worker.proc.poll() is None:
                    emit("worker_killed", level="error", worker=worker.index,
                         reason=f"still running {deadline:g} s after SIGTERM")
                    worker.proc.kill()
            for worker in list(self.workers.values()):
                await worker.gone.wait()


async def supervise(settings: Settings, sinks: Sinks, *, on_ready: Callable[[], None]) -> int:
    """Run `settings.workers` workers on the settings' port until SIGTERM / SIGINT; the exit status."""
    sup = Supervisor(settings, sinks)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for index in range(settings.workers):
            await sup.start(index)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                while not all(w.ready for w in sup.workers.values()):
                    if sup.failed or any(w.gone.is_set() for w in sup.workers.values()):
                        raise EngineDeckError("a gateway worker stopped while starting",
                                              hint="its error is on stderr above; or try --workers 1")
                    sup.changed.clear()
                    await sup.changed.wait()
        except TimeoutError:
            raise EngineDeckError(f"the gateway's workers did not start within {START_TIMEOUT_S:g} s",
                                  hint="the box may be overloaded; try fewer --workers") from None
        on_ready()
        while not stop.is_set() and sup.failed is None:
            sup.changed.clear()
            waiter = asyncio.create_task(sup.changed.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait((waiter, stopper), return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await sup.stop()
        await sinks.ledger.flush()
    if sup.failed is not None:
        emit("stopped", level="error", gateway=settings.name, reason=sup.failed)
        return 1
    emit("stopped", gateway=settings.name)
    return 0


# ---------------------------------------------------------------------------------------------- worker


class Link:
    """The app's callbacks in a worker: what the supervisor's sinks need, sent over the link."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self._progress: dict[str, list[Any]] = {}  # request id -> [chunks, bytes, first piece's time]
        self._ticker: asyncio.Task[None] | None = None

    def start(self, rec: RequestRecord) -> None:
        write_frame(self.writer, ("start", rec, time.monotonic()))

    def chunk(self, rec: RequestRecord, size: int) -> None:
        got = self._progress.get(rec.request_id)
        if got is None:
            self._progress[rec.request_id] = [1, size, time.monotonic()]
            if self._ticker is None:
                self._ticker = asyncio.get_running_loop().create_task(self._tick())
        else:
            got[0] += 1
            got[1] += size

    def end(self, rec: RequestRecord) -> None:
        if (got := self._progress.pop(rec.request_id, None)) is not None:
            write_frame(self.writer, ("progress", [(rec.request_id, *got)]))
        write_frame(self.writer, ("end", rec))

    def flush(self) -> None:
        if self._progress:
            write_frame(self.writer, ("progress", [(rid, *got) for rid, got in self._progress.items()]))
            # what follows for these requests is counted from here: the first piece's time is said once
            self._progress = {rid: [0, 0, got[2]] for rid, got in self._progress.items()}

    async def _tick(self) -> None:
        try:
            while self._progress:
                await asyncio.sleep(PROGRESS_S)
                self.flush()
        finally:
            self._ticker = None


def main(argv: list[str]) -> None:
    """Entry point of a worker: `python -m console.gateway.workers LINK_FD`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group; the supervisor sends SIGTERM
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_work(socket.socket(fileno=int(argv[0]))))


async def _work(link_sock: socket.socket) -> None:
    from console.engines.passthrough import Upstream
    from console.gateway.app import Gateway
    from console.gateway.server import bind, learn_kind, serve_on, server_for, until_idle

    reader, writer = await asyncio.open_unix_connection(sock=link_sock)
    try:
        settings = (await read_frame(reader))[1]
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    try:
        sock = bind(settings.host, settings.port, shared=True)
    except EngineDeckError as exc:
        emit("worker_failed", level="error", error=str(exc))
        return
    link = Link(writer)
    upstream = Upstream(settings.engine)

    async def drained() -> None:
        await until_idle(app)

    app = Gateway(upstream, keys=settings.keys, max_request_bytes=settings.max_request_bytes, sinks=(link.end,),
                  on_close=drained, on_start=link.start, on_chunk=link.chunk)
    kind_task = await learn_kind(app, settings)
    server = server_for(app, settings)

    async def orphaned() -> None:
        """The supervisor is gone (its end of the link closed): stop serving."""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.read()
        server.should_exit = True

    watcher = asyncio.create_task(orphaned())
    write_frame(writer, ("ready",))
    try:
        await serve_on(server, sock)
    finally:
        watcher.cancel()
        if kind_task is not None:
            kind_task.cancel()
        upstream.close()
        sock.close()
        link.flush()
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()


if __name__ == "__main__":
    # Run the package's own module, not this __main__ copy, so the records pickled to the supervisor are one class.
    from console.gateway import workers

    workers.main(sys.argv[1:])
