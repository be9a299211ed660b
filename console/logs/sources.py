"""Where log lines come from: a file followed like `tail -F`, a systemd unit through `journalctl -o json`, or
the stdout/stderr of a command (an engine the user starts from enginedeck).

Each source hands over batches of `LogLine`s and `Notice`s (rotated, truncated, ended with exit code ...).
`batches()` (a UI) reads and parses files in worker threads, a block per batch and one block ahead, and large
batches of command output are parsed there too, so a burst never holds the caller's event loop; `events()` (the
CLI) reads on the caller's loop, a block per turn, and hands the events over one at a time. A
consumer that stops pulling holds the source back (files, journalctl: nothing is lost, the pipe fills); a
command's output is still read so the engine never blocks on a full pipe, and lines the viewer could not keep up
with are dropped and counted. `pause()` stops a file's polling too. Cancelling the consumer ends the source and
its subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import shutil
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, pairwise, repeat
from pathlib import Path

from console.errors import EngineDeckError, LogSourceError
from console.logs.index import MAX_LINE_BYTES, FileIndex, cut_points
from console.logs.line import Level, LogLine
from console.logs.parse import LineParser

POLL_INTERVAL_S = 0.25  # how often a followed file is checked for growth, rotation and truncation
READ_SIZE = 64 * 1024  # bytes read, and their lines parsed, per batch of a file read in a worker thread
# Per batch read on the caller's loop (the CLI): the lines of a small block die before the collector's young
# generation fills (700 objects), so a stream of lines costs it no collections; 64 KiB made 381 in 300,000 lines.
INLINE_READ_SIZE = 16 * 1024
QUEUE_SIZE = 10_000  # lines buffered between a source and a slow consumer
TERMINATE_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this long
# Files up to this size are indexed whole when opened, so their lines carry line numbers.
NUMBER_LINES_UP_TO = 16 * 1024 * 1024
# A followed file with a `keep` looks for a backlog to skip once this much is unread (about 60,000 engine lines,
# half a second of parsing: below it, reading everything costs less than it is worth to skip).
SKIP_CHECK_BYTES = 8 * 1024 * 1024
COUNT_BLOCK = 1024 * 1024  # bytes per read when counting the newlines of a skipped backlog
BATCH_LINES = 2_000  # command output handed over at most this many lines at a time
INLINE_PARSE_LINES = 64  # fewer lines than this are parsed on the caller's loop: cheaper than a thread hop
# A parsing thread lets go of the GIL this often (time.sleep(0), about every 0.5 ms): the event loop then gets it at
# once when it needs it, instead of after the interpreter's 5 ms switch interval each time.
YIELD_EVERY = 64


class NoticeKind(enum.Enum):
    WAITING = "waiting"  # the file does not exist (yet)
    ROTATED = "rotated"
    TRUNCATED = "truncated"
    DROPPED = "dropped"  # lines dropped because the consumer was too slow (command output only)
    SKIPPED = "skipped"  # a backlog past what the consumer keeps, skipped to its end (file panes only)
    ENDED = "ended"  # the process or the journal reader ended
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Notice:
    """Something that happened to a source, as opposed to a line it produced."""

    source: str
    kind: NoticeKind
    message: str
    exit_code: int | None = None

    @property
    def level(self) -> Level:
        """How much it matters: a clean exit (code 0) or a rotation is routine, lost or skipped lines are a
        warning, a failed command (non-zero exit) or an unreadable source an error."""
        if self.kind is NoticeKind.ENDED:
            if not self.exit_code:
                return Level.INFO
            return Level.ERROR if self.exit_code > 0 else Level.WARN  # below 0: ended by a signal
        return _NOTICE_LEVELS[self.kind]


_NOTICE_LEVELS = {NoticeKind.WAITING: Level.INFO, NoticeKind.ROTATED: Level.INFO, NoticeKind.TRUNCATED: Level.WARN,
                  NoticeKind.DROPPED: Level.WARN, NoticeKind.SKIPPED: Level.WARN, NoticeKind.ERROR: Level.ERROR}

Event = LogLine | Notice


class LogSource(ABC):
    """Lines and notices in batches (`batches`), or one at a time (`events`). Reading and parsing run in worker
    threads, a batch at a time, so a burst never holds the caller's event loop; the next batch is read only when
    the consumer asks for it (backpressure). `pause` stops the reading and the polling until `resume`."""

    def __init__(self, name: str, parser: LineParser | None = None) -> None:
        self.name = name
        self.parser = parser or LineParser(name)
        self._go = asyncio.Event()
        self._go.set()

    @abstractmethod
    def batches(self, *, off_loop: bool = True) -> AsyncGenerator[list[Event], None]:
        """Lists of events until the source ends (never, for a followed file) or the consumer stops; never
        empty. `off_loop`: read and parse in worker threads, so the caller's loop (a UI's) stays free; False: on
        the caller's loop, a batch per turn, which is faster where nothing else waits on the loop (the CLI:
        handing blocks between threads cost it half its throughput on a busy 2-core box)."""

    async def events(self) -> AsyncIterator[Event]:
        """The events of `batches(off_loop=False)`, one at a time (the CLI)."""
        async with contextlib.aclosing(self.batches(off_loop=False)) as batches:  # closing it closes the source
            async for batch in batches:
                for event in batch:
                    yield event

    def pause(self) -> None:
        """Stop reading (and polling) at the next batch; the position is kept. A command's output is still
        read, so the command never blocks on a full pipe (see `CommandSource`)."""
        self._go.clear()

    def resume(self) -> None:
        self._go.set()

    async def _wait_go(self) -> None:
        if not self._go.is_set():
            await self._go.wait()


class FileSource(LogSource):
    """The last `lines` lines of a file, then (with `follow`) what is appended, across rotation by rename
    (the old file is read to its end before the new one is opened) and truncation (copytruncate).

    `keep`: the most lines the consumer holds (a pane's bound). When the unread part grows past what that many
    lines could fill, the source skips to the start of its last `keep` lines, with a SKIPPED notice, instead of
    parsing lines the consumer would drop at once; line numbers stay right. None (the CLI): every line."""

    def __init__(self, path: Path, *, lines: int = 10, follow: bool = True, parser: LineParser | None = None,
                 poll_s: float = POLL_INTERVAL_S, name: str | None = None, keep: int | None = None) -> None:
        super().__init__(name or str(path), parser)
        self.path = path
        self.lines = lines
        self.follow = follow
        self.poll_s = poll_s
        self.keep = keep

    async def batches(self, *, off_loop: bool = True) -> AsyncGenerator[list[Event], None]:
        self._check_path()
        opened = await asyncio.to_thread(self._initial)
        if opened is None:
            yield [Notice(self.name, NoticeKind.WAITING, f"{self.path} does not exist; waiting for it")]
            fd = None
            while fd is None:
                await asyncio.sleep(self.poll_s)
                await self._wait_go()
                fd = _open(self.path)
            opened = fd, 1
        reader = _Reader(self, *opened)
        if not off_loop:
            try:
                while not reader.done:
                    await self._wait_go()
                    events = [] if reader.quiet() else reader.step(yield_gil=False, size=INLINE_READ_SIZE)
                    if events:
                        yield events
                        await asyncio.sleep(0)  # a turn for the other sources of `merged` between blocks
                    elif not reader.done:
                        await asyncio.sleep(self.poll_s)
            finally:
                reader.close()
            return
        loop = asyncio.get_running_loop()
        step: asyncio.Future[list[Event]] | None = None  # the read in flight, in a worker thread
        try:
            while not reader.done:
                await self._wait_go()
                if step is None:
                    if reader.quiet():  # checked here, not in a thread: an idle poll is two stat calls
                        await asyncio.sleep(self.poll_s)
                        continue
                    step = loop.run_in_executor(None, reader.step)
                events = await step
                # While the consumer takes these, the next block is read: one batch ahead at most.
                step = loop.run_in_executor(None, reader.step) if events and not reader.done else None
                if events:
                    yield events
                elif not reader.done:
                    await asyncio.sleep(self.poll_s)
        finally:
            if step is not None and not step.done():  # cancelled mid-read: the thread still uses the descriptors
                step.add_done_callback(lambda _: reader.close())
            else:
                reader.close()

    def _check_path(self) -> None:
        if self.path.is_dir():
            raise LogSourceError(f"{self.path} is a directory, not a log file")
        if not self.follow and not self.path.exists():
            raise LogSourceError(f"{self.path} does not exist")

    def _initial(self) -> tuple[int, int | None] | None:
        """(fd, number of the line it is at, or None when not known) with the fd positioned at the first of the
        last `lines` complete lines, found through the huge-file index; None when the file does not exist.
        The lines themselves are then read, parsed and handed over a block at a time like appended ones, so the
        first shows at once and `-n 300000` never holds 300,000 parsed lines at once."""
        if not self.path.exists():
            return None
        with FileIndex(self.path, self.parser) as index:
            fd = index.dup_fd()
            if index.size == 0:
                return fd, 1
            unfinished = index.raw_tail_byte() != b"\n"
            if index.size <= NUMBER_LINES_UP_TO:
                while index.extend_back(100_000):
                    pass
            if index.count < self.lines + unfinished:
                index.extend_back(self.lines + unfinished - index.count)
            last = index.count - unfinished  # the lines [first, last) are shown; an unfinished one waits
            first = max(0, last - self.lines)
            start = index.offset(first) if first < index.count else index.size
            os.lseek(fd, start, os.SEEK_SET)
            return fd, index.lineno(first)


class _Reader:
    """Where a FileSource is in its file. `step` runs in a worker thread, one call at a time; `quiet` on the
    event loop between calls."""

    def __init__(self, source: FileSource, fd: int, lineno: int | None) -> None:
        self.source = source
        self.fd = fd
        self.lineno = lineno  # of the next line; None when the lines before are not counted (a huge file's start)
        self.buf = b""  # the unfinished last line read so far
        self.new_fd: int | None = None  # the new file at `path`, while the rotated `fd` is read to its end
        self.missing_said = False
        self.checked_size = 0  # the file's size when a backlog was last checked for skipping
        self.done = False

    def quiet(self) -> bool:
        """Nothing to do before the next poll: following, nothing appended, same file, nothing new to say."""
        if not self.source.follow or self.new_fd is not None:
            return False
        if os.fstat(self.fd).st_size != os.lseek(self.fd, 0, os.SEEK_CUR):
            return False
        change = _change(self.source.path, self.fd)
        return change is None or (change == "missing" and self.missing_said)

    def step(self, *, yield_gil: bool = True, size: int = READ_SIZE) -> list[Event]:
        """The lines of the next block read, or what happened to the file; [] when there is nothing to say
        until the next poll. Sets `done` at the end of a file that is not followed."""
        source, name, path = self.source, self.source.name, self.source.path
        while True:
            skipped = self._skip()
            if skipped is not None:
                return [skipped]
            offset = os.lseek(self.fd, 0, os.SEEK_CUR) - len(self.buf)  # where buf starts in the file
            data = os.read(self.fd, size)
            if data:
                lines, self.buf = _take_lines(self.buf + data if self.buf else data, offset)
                parse, lineno = source.parser.parse, self.lineno
                events: list[Event] = []
                for raw, newline in lines:
                    events.append(parse(raw.decode("utf-8", "replace"), lineno=lineno, offset=offset))
                    offset += len(raw) + newline
                    lineno = lineno and lineno + newline
                    if yield_gil and len(events) % YIELD_EVERY == 0:
                        time.sleep(0)
                self.lineno = lineno
                if events:
                    return events
                continue  # only part of a line so far: read on
            if not source.follow or self.new_fd is not None:  # the end of this file: its unfinished line is final
                events = []
                if self.buf:
                    events.append(source.parser.parse(self.buf.decode("utf-8", "replace"), lineno=self.lineno,
                                                      offset=offset))
                if self.new_fd is None:
                    self.done = True
                    return events
                os.close(self.fd)
                self.fd, self.new_fd, self.buf, self.lineno, self.missing_said = self.new_fd, None, b"", 1, False
                self.checked_size = 0
                events.append(Notice(name, NoticeKind.ROTATED, f"{path} was rotated; following the new file"))
                return events
            change = _change(path, self.fd)
            if change == "missing" and not self.missing_said:
                self.missing_said = True
                return [Notice(name, NoticeKind.WAITING, f"{path} was removed; waiting for a new one")]
            if change == "rotated" and (new_fd := _open(path)) is not None:
                self.new_fd = new_fd
                continue  # read what the writer added to the old file after our last read, then switch
            if change == "truncated":
                os.lseek(self.fd, 0, os.SEEK_SET)
                self.buf, self.lineno, self.checked_size = b"", 1, 0
                return [Notice(name, NoticeKind.TRUNCATED, f"{path} was truncated; reading from the start")]
            return []

    def _skip(self) -> Notice | None:
        """With `keep`, when the unread part is over SKIP_CHECK_BYTES and grew by as much since the last look:
        move to the start of its last `keep` lines, counting the lines passed over (bytes.count, no parsing)."""
        keep = self.source.keep
        if keep is None:
            return None
        pos = os.lseek(self.fd, 0, os.SEEK_CUR)
        size = os.fstat(self.fd).st_size
        if size - pos <= SKIP_CHECK_BYTES or size - self.checked_size <= SKIP_CHECK_BYTES:
            return None
        self.checked_size = size
        target = _start_of_last(self.fd, pos, size, keep)
        if target <= pos:
            return None
        skipped, at = 0, pos
        while at < target:
            chunk = os.pread(self.fd, min(COUNT_BLOCK, target - at), at)
            if not chunk:
                break
            skipped += chunk.count(b"\n")
            at += len(chunk)
        os.lseek(self.fd, target, os.SEEK_SET)
        self.buf = b""
        self.lineno = self.lineno and self.lineno + skipped
        mib = (target - pos) / 2**20
        return Notice(self.source.name, NoticeKind.SKIPPED,
                      f"skipped {skipped:,} lines ({mib:,.1f} MiB) written faster than shown; "
                      f"showing from the last {keep:,}")

    def close(self) -> None:
        os.close(self.fd)
        if self.new_fd is not None:
            os.close(self.new_fd)


def _start_of_last(fd: int, lo: int, hi: int, n: int) -> int:
    """The offset just after the (n+1)-th newline before `hi`, so that n complete lines (and any unfinished
    one) follow it; `lo` when [lo, hi) holds fewer newlines."""
    seen = 0
    end = hi
    while end > lo:
        start = max(lo, end - COUNT_BLOCK)
        block = os.pread(fd, end - start, start)
        here = block.count(b"\n")
        if seen + here <= n:
            seen += here
            end = start
            continue
        i = len(block)
        for _ in range(n + 1 - seen):
            i = block.rfind(b"\n", 0, i)
        return start + i + 1
    return lo


def _open(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LogSourceError(f"cannot open {path}: {exc.strerror}") from None


def _change(path: Path, fd: int) -> str | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return None
    fst = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (fst.st_dev, fst.st_ino):
        return "rotated"
    if fst.st_size < os.lseek(fd, 0, os.SEEK_CUR):
        return "truncated"
    return None


def _take_lines(buf: bytes, offset: int) -> tuple[Iterable[tuple[bytes, int]], bytes]:
    """The complete lines in `buf`, which starts at file offset `offset`, each with 1 for its newline, and the
    unfinished rest. A line over MAX_LINE_BYTES comes as the pieces `cut_points` gives (the ones `FileIndex`
    has), all but its last with 0; so does an unfinished one, its last piece kept as the rest."""
    *complete, rest = buf.split(b"\n")
    rest_at = offset + len(buf) - len(rest)
    lines: Iterable[tuple[bytes, int]]
    if not complete or max(map(len, complete)) <= MAX_LINE_BYTES:
        lines = zip(complete, repeat(1))  # the common case, without a tuple kept per line
    else:
        lines = []
        for line in complete:
            lines += _pieces(line, offset, 1)
            offset += len(line) + 1
    if len(rest) > MAX_LINE_BYTES:
        *head, (rest, _) = _pieces(rest, rest_at, 0)
        lines = chain(lines, head)
    return lines, rest


def _pieces(line: bytes, offset: int, newline: int) -> list[tuple[bytes, int]]:
    """`line`, which starts at file offset `offset`, cut where `cut_points` says: (piece, 0) but the last,
    (piece, `newline`)."""
    bounds = [0, *(cut - offset for cut in cut_points(offset, offset + len(line))), len(line)]
    return [(line[a:b], newline if b == len(line) else 0) for a, b in pairwise(bounds)]


class CommandSource(LogSource):
    """Runs `argv` and yields its stdout and stderr lines (field `stream`), then an ENDED notice with the exit
    code. Cancelling the consumer terminates the process group (SIGTERM, then SIGKILL)."""

    def __init__(self, argv: Sequence[str], *, name: str | None = None, parser: LineParser | None = None,
                 drop_when_full: bool = True, queue_size: int = QUEUE_SIZE) -> None:
        if not argv:
            raise LogSourceError("empty command", hint="cmd:PROGRAM ARGS...")
        super().__init__(name or f"cmd:{argv[0]}", parser)
        self.argv = tuple(argv)
        self.drop_when_full = drop_when_full
        self.queue_size = queue_size

    async def _start(self) -> asyncio.subprocess.Process:
        env = dict(os.environ, PYTHONUNBUFFERED="1")  # Python engines (vLLM) then write each line at once
        try:
            return await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True, limit=MAX_LINE_BYTES)
        except FileNotFoundError:
            raise LogSourceError(f"cannot start {self.argv[0]}: command not found") from None
        except OSError as exc:
            raise LogSourceError(f"cannot start {self.argv[0]}: {exc.strerror}") from None

    async def batches(self, *, off_loop: bool = True) -> AsyncGenerator[list[Event], None]:
        proc = await self._start()
        queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(self.queue_size)
        dropped = 0

        async def pump(stream: asyncio.StreamReader, label: str) -> None:
            nonlocal dropped
            while True:
                # Not readline(): past the limit it throws away what it has buffered. readuntil() keeps it, so a
                # long line comes out whole, in pieces of MAX_LINE_BYTES.
                try:
                    raw = await stream.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:  # the end, maybe after an unterminated last line
                    raw = exc.partial
                except asyncio.LimitOverrunError:
                    raw = await stream.read(MAX_LINE_BYTES)
                if not raw:
                    break
                if self.drop_when_full:
                    try:
                        queue.put_nowait((label, raw))
                    except asyncio.QueueFull:
                        dropped += 1
                else:
                    await queue.put((label, raw))
            await queue.put(None)

        assert proc.stdout is not None and proc.stderr is not None
        tasks = [asyncio.create_task(pump(proc.stdout, "stdout")), asyncio.create_task(pump(proc.stderr, "stderr"))]
        try:
            open_streams = 2
            while open_streams:
                if not self.drop_when_full:  # paused: journalctl waits on its pipe, nothing is lost
                    await self._wait_go()
                items = [await queue.get()]
                while len(items) < BATCH_LINES and not queue.empty():
                    items.append(queue.get_nowait())
                raws = [item for item in items if item is not None]
                open_streams -= len(items) - len(raws)
                batch: list[Event] = []
                if dropped:
                    batch.append(Notice(self.name, NoticeKind.DROPPED, f"{dropped} lines dropped (viewer too slow)"))
                    dropped = 0
                if len(raws) < INLINE_PARSE_LINES or not off_loop:
                    batch += self._parse(raws, yield_gil=False)
                else:
                    batch += await asyncio.to_thread(self._parse, raws)
                if batch:
                    yield batch
            code = await proc.wait()
            yield [Notice(self.name, NoticeKind.ENDED, self._ended(code), exit_code=code)]
        finally:
            for task in tasks:
                task.cancel()
            await _stop(proc)

    def _parse(self, raws: list[tuple[str, bytes]], *, yield_gil: bool = True) -> list[Event]:
        parse = self.parser.parse
        out: list[Event] = []
        for label, raw in raws:
            line = parse(raw.decode("utf-8", "replace"))
            if label == "stderr":
                line = line._replace(fields=(("stream", "stderr"), *line.fields))
            out.append(line)
            if yield_gil and len(out) % YIELD_EVERY == 0:
                time.sleep(0)
        return out

    def _ended(self, code: int) -> str:
        program = Path(self.argv[0]).name
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"{program} ended by signal {signal.Signals(-code).name}"
        return f"{program} exited with code {code}"


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), TERMINATE_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


class JournalSource(CommandSource):
    """A systemd unit's journal through `journalctl -u UNIT -o json` (`-f` to follow). Never drops lines:
    a slow consumer holds journalctl back through its pipe."""

    def __init__(self, unit: str, *, lines: int = 10, follow: bool = True, parser: LineParser | None = None,
                 journalctl: str | None = None) -> None:
        exe = journalctl or shutil.which("journalctl")
        if exe is None:
            raise LogSourceError("journalctl not found",
                                 hint="journal:UNIT sources need systemd's journalctl; follow a log file instead")
        argv = [exe, "-u", unit, "-o", "json", "--no-pager", "-n", str(max(0, lines))]
        if follow:
            argv.append("-f")
        super().__init__(argv, name=f"journal:{unit}", parser=parser, drop_when_full=False)
        self.unit = unit


async def merged(sources: Sequence[LogSource], *, queue_size: int = QUEUE_SIZE) -> AsyncIterator[Event]:
    """Events of several sources in arrival order. A source that fails becomes an ERROR notice; the others
    go on. Ends when every source has ended."""
    queue: asyncio.Queue[Event | None] = asyncio.Queue(queue_size)

    async def pump(source: LogSource) -> None:
        try:
            async for event in source.events():
                await queue.put(event)
        except EngineDeckError as exc:
            await queue.put(Notice(source.name, NoticeKind.ERROR, str(exc)))
        except OSError as exc:
            await queue.put(Notice(source.name, NoticeKind.ERROR, f"{source.name}: {exc}"))
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(s), name=f"logs:{s.name}") for s in sources]
    try:
        running = len(tasks)
        while running:
            event = await queue.get()
            if event is None:
                running -= 1
            else:
                yield event
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
