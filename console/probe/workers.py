"""Worker processes for large probe levels: one closed-loop level's streams, or one open-loop rate's arrivals,
spread over several Python processes.

One Python thread spends tens of microseconds on every chunk (the adapter's JSON parsing, the probe's records,
asyncio's wake-ups), so 256 streams at 200 chunks/s each need more than one core, and a saturated event loop
stamps arrivals late. A large level therefore runs in W worker processes, each with its own event loop and its
own engine adapter, built from the engine's config by the one `build_engine` the CLI uses (secrets stay
references in the config: each worker reads them itself, as the parent would).

The semantics are the in-process ones. Closed loop (console/probe/streams.py): the measured tickets are one
counter shared by every process of the level (`TicketFile`). Open loop (console/probe/arrivals.py): every worker
walks the one schedule from the parent's t0 and sends the arrivals whose number modulo W is its own, with its
part of the in-flight cap. Either way each worker keeps its fillers going until the parent holds every measured
record. Records come back one by one, so progress and cancel-with-partial-results keep working; each worker's
trace and overhead samples come back at the level's end and are merged by the parent, which also keeps the
/metrics sampler.

Workers are fresh interpreters (`python -m console.probe.workers`, console/frames.py says why never forks),
started once per run, each talking to the parent over a socket pair. Workers never outlive the probe: the parent
terminates them on cancel or error, and a worker whose socket to the parent closes exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import gc
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from console.config import EngineConfig
from console.errors import EngineDeckError, ProbeError
from console.frames import read_frame, spawn, write_frame
from console.probe.arrivals import walk
from console.probe.figures import LevelTrace
from console.probe.overhead import MeterState, OverheadMeter
from console.probe.params import GC_THRESHOLD_DURING_PROBE
from console.probe.record import RequestRecord
from console.probe.streams import LevelStreams

if TYPE_CHECKING:
    from console.probe.params import ProbeParams

# Measured on a 16-core host, 5 ms per token (docs/probe.md): one process holds p99 added latency under 1 ms up to
# about 16 fast streams; at 32 per process it drifts to 2-3 ms. Levels up to 32 streams stay in-process (no start-up
# cost; p99 under 1 ms at 16); larger ones get one worker per 16 streams, on at most half the cores, because the
# engine under test needs CPU too (15 workers at 256 streams beside the engine did worse than 8).
IN_PROCESS_UP_TO = 32
STREAMS_PER_WORKER = 16
START_TIMEOUT_S = 60.0  # a spawned interpreter imports the engine adapter; a loaded box can take seconds
STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class EngineSource:
    """What a worker needs to build its own adapter: the engine's config (secrets by reference only) and kind."""

    config: EngineConfig
    kind: str


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def workers_for(level: int, requested: int = 0, cores: int | None = None) -> int:
    """Processes for a level of `level` streams. `requested` > 0 is honoured (up to one stream each); 0 = auto:
    in-process for small levels or small boxes, else STREAMS_PER_WORKER streams each on up to half the cores."""
    if requested > 0:
        return max(1, min(requested, level))
    cores = usable_cores() if cores is None else cores
    if level <= IN_PROCESS_UP_TO or cores <= 2:
        return 1
    return max(1, min(math.ceil(level / STREAMS_PER_WORKER), cores // 2))


class TicketFile:
    """The level's numbered tickets, shared by its processes: an 8-byte counter in a file, taken under flock."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR)

    def take(self) -> int:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            i = int.from_bytes(os.pread(self.fd, 8, 0), "little")
            os.pwrite(self.fd, (i + 1).to_bytes(8, "little"), 0)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        return i

    def reset(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            os.pwrite(self.fd, bytes(8), 0)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


# ---------------------------------------------------------------------------------------------- parent side


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    writer: asyncio.StreamWriter
    reader_task: asyncio.Task[None]


class WorkerPool:
    """`size` worker processes for one probe run. `await start()`, `await run_level(...)` per level
    or `await run_rate(...)` per rate, `close()`."""

    def __init__(self, source: EngineSource, model: str, params: ProbeParams, size: int) -> None:
        self.source = source
        self.model = model
        self.params = params
        self.size = size
        self._workers: list[_Worker] = []
        self._inbox: asyncio.Queue[tuple[int, tuple[Any, ...]]] = asyncio.Queue()
        fd, self._ticket_path = tempfile.mkstemp(prefix="enginedeck-probe-", suffix=".tickets")
        os.close(fd)
        self._tickets = TicketFile(self._ticket_path)
        self._tickets.reset()

    async def start(self) -> None:
        try:
            for w in range(self.size):
                try:
                    proc, ours = spawn("console.probe.workers")
                except OSError as exc:
                    raise ProbeError(f"cannot start a probe worker: {exc}", hint="try --workers 1") from None
                reader, writer = await asyncio.open_unix_connection(sock=ours)
                task = asyncio.create_task(self._pump(w, reader), name=f"probe-worker-{w}-inbox")
                self._workers.append(_Worker(proc, writer, task))
                write_frame(writer, ("init", self.source, self.model, self.params, self._ticket_path))
            ready = 0
            async with asyncio.timeout(START_TIMEOUT_S):
                while ready < self.size:
                    w, msg = await self._inbox.get()
                    self._check(w, msg)
                    ready += msg[0] == "ready"
        except TimeoutError:
            raise ProbeError(f"probe workers did not start within {START_TIMEOUT_S:g} s",
                             hint="the box may be overloaded; try --workers 1") from None
        finally:
            # Every worker holds the file open by now (or failed): its name is no longer needed.
            with contextlib.suppress(OSError):
                os.unlink(self._ticket_path)

    async def _pump(self, w: int, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                self._inbox.put_nowait((w, await read_frame(reader)))
        except (asyncio.IncompleteReadError, ConnectionError):
            self._inbox.put_nowait((w, ("gone",)))
        except Exception as exc:  # an unreadable message: say so, rather than wait for it forever
            self._inbox.put_nowait((w, ("error", f"unreadable message ({type(exc).__name__}: {exc})")))

    def _check(self, w: int, msg: tuple[Any, ...]) -> None:
        """Turn a worker's failure into a ProbeError the caller can show in one line."""
        if msg[0] == "error":
            raise ProbeError(f"probe worker {w} failed: {msg[1]}")
        if msg[0] == "gone":
            proc = self._workers[w].proc
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(1.0)
            raise ProbeError(f"probe worker {w} (pid {proc.pid}) stopped unexpectedly (exit code {proc.returncode})",
                             hint="the levels measured so far are kept; run again, or with --workers 1")

    async def run_level(self, level: int, workers: int, *, on_record: Callable[[RequestRecord], None],
                        on_first_ticket: Callable[[], None], trace: LevelTrace) -> list[MeterState]:
        """Run level `level` on the first `workers` processes; return their overhead samples (`trace` is filled)."""
        self._tickets.reset()
        for w in range(workers):
            write_frame(self._workers[w].writer, ("level", level, list(range(w, level, workers))))
        return await self._collect(f"level {level}", self.params.requests_for(level), workers,
                                   on_record=on_record, on_first_ticket=on_first_ticket, trace=trace)

    async def run_rate(self, rate: float, index: int, t0: int, workers: int, *,
                       on_record: Callable[[RequestRecord], None], trace: LevelTrace) -> list[MeterState]:
        """The open-loop rate `rate` (the run's `index`-th) from t0 on the first `workers` processes, arrival i
        from process i mod `workers`; return their overhead samples (`trace` is filled)."""
        for w in range(workers):
            write_frame(self._workers[w].writer, ("rate", rate, index, t0, w, workers))
        return await self._collect(f"{rate:g}/s", self.params.requests, workers, on_record=on_record,
                                   on_first_ticket=lambda: None, trace=trace)

    async def _collect(self, what: str, total: int, workers: int, *, on_record: Callable[[RequestRecord], None],
                       on_first_ticket: Callable[[], None], trace: LevelTrace) -> list[MeterState]:
        """Take the `total` measured records as they come, then tell the workers to stop and merge what each
        measured about itself."""
        received = 0
        while received < total:
            w, msg = await self._inbox.get()
            self._check(w, msg)
            if msg[0] == "record":
                received += 1
                on_record(msg[1])
            elif msg[0] == "measure":
                on_first_ticket()
        for w in range(workers):
            write_frame(self._workers[w].writer, ("stop",))
        states: list[MeterState] = []
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                while len(states) < workers:
                    w, msg = await self._inbox.get()
                    self._check(w, msg)
                    if msg[0] == "level_done":
                        trace.merge(msg[1])
                        states.append(msg[2])
        except TimeoutError:
            raise ProbeError(f"probe workers did not finish {what} within {STOP_TIMEOUT_S:g} s of being "
                             "told to stop", hint="the levels measured so far are kept") from None
        return states

    def close(self) -> None:
        """Stop every worker now (SIGTERM, then SIGKILL) and wait for it. Safe to call twice."""
        for wk in self._workers:
            wk.reader_task.cancel()
            wk.writer.close()
            if wk.proc.poll() is None:
                wk.proc.terminate()
        for wk in self._workers:
            try:
                wk.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                wk.proc.kill()
                wk.proc.wait()
        self._workers = []
        self._tickets.close()
        with contextlib.suppress(OSError):
            os.unlink(self._ticket_path)


# ---------------------------------------------------------------------------------------------- worker side


def main(argv: list[str]) -> None:
    """Entry point of a worker process: `python -m console.probe.workers FD`."""
    # Ctrl-C reaches the whole process group; the parent decides, and terminates the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD_DURING_PROBE, *gc.get_threshold()[1:])
    asyncio.run(_serve(socket.socket(fileno=int(argv[0]))))


async def _serve(sock: socket.socket) -> None:
    from console.engines.registry import build_engine

    reader, writer = await asyncio.open_unix_connection(sock=sock)
    try:
        cmd = await read_frame(reader)
        source, model, params, ticket_path = cmd[1:]
        tickets = TicketFile(ticket_path)
        engine = build_engine(source.config, source.kind, max_connections=params.connections)
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    except EngineDeckError as exc:
        write_frame(writer, ("error", str(exc)))
        await writer.drain()
        return
    try:
        write_frame(writer, ("ready",))
        while True:
            try:
                cmd = await read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):  # the parent is gone: stop
                return
            if cmd[0] == "level":
                level, sids = cmd[1], cmd[2]
                told = await _share(reader, writer, functools.partial(
                    _streams, engine, model, params, tickets, level, sids, writer))
            elif cmd[0] == "rate":
                rate, index, t0, worker, workers = cmd[1:]
                told = await _share(reader, writer, functools.partial(
                    _arrivals, engine, model, params, rate, index, t0, worker, workers, writer))
            else:
                return
            if told[0] != "stop":
                return
    except Exception as exc:  # a bug in the probe: said in one line by the parent, never a hang
        write_frame(writer, ("error", f"{type(exc).__name__}: {exc}"))
        await writer.drain()
    finally:
        await engine.aclose()
        tickets.close()


async def _share(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 run: Callable[[LevelTrace, OverheadMeter, asyncio.Event], Awaitable[None]]) -> tuple[Any, ...]:
    """This worker's share of one level or rate, run until the parent's word ("stop", or "gone") ends it; its
    trace and overhead samples go back then. Returns the word."""
    trace, meter, stop = LevelTrace(), OverheadMeter(), asyncio.Event()
    watcher = asyncio.create_task(_until_told(reader, stop))
    try:
        async with meter:
            await run(trace, meter, stop)
    finally:
        if not watcher.done():
            watcher.cancel()
    told = await watcher
    write_frame(writer, ("level_done", trace, meter.state()))
    await writer.drain()
    return told


async def _streams(engine: Any, model: str, params: ProbeParams, tickets: TicketFile, level: int, sids: list[int],
                   writer: asyncio.StreamWriter, trace: LevelTrace, meter: OverheadMeter, stop: asyncio.Event
                   ) -> None:
    """Closed loop: streams `sids` of level `level`, taking measured tickets from the level's shared counter."""
    streams = LevelStreams(engine, model, params, level, next_ticket=tickets.take,
                           on_record=lambda rec: write_frame(writer, ("record", rec)),
                           on_first_ticket=lambda: write_frame(writer, ("measure",)), trace=trace, meter=meter)
    await streams.run(sids, stop)


async def _arrivals(engine: Any, model: str, params: ProbeParams, rate: float, index: int, t0: int, worker: int,
                    workers: int, writer: asyncio.StreamWriter, trace: LevelTrace, meter: OverheadMeter,
                    stop: asyncio.Event) -> None:
    """Open loop: the arrivals i of the rate's schedule with i mod `workers` = `worker`, from the parent's t0."""
    await walk(engine, model, params, rate, index=index, t0=t0,
               keep=lambda rec: write_frame(writer, ("record", rec)), stop=stop, trace=trace, meter=meter,
               worker=worker, workers=workers)


async def _until_told(reader: asyncio.StreamReader, stop: asyncio.Event) -> tuple[Any, ...]:
    """The parent's next word ("stop" when it holds every measured record) ends the level; so does its absence."""
    try:
        told = await read_frame(reader)
    except (asyncio.IncompleteReadError, ConnectionError):
        told = ("gone",)
    stop.set()
    return told


if __name__ == "__main__":
    # Run the package's own module, not this __main__ copy, so the classes pickled back and forth are one set.
    from console.probe import workers

    workers.main(sys.argv[1:])
