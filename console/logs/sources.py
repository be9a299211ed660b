"""Where log lines come from: a file followed like `tail -F`, a systemd unit through `journalctl -o json`, or
the stdout/stderr of a command (an engine the user starts from enginedeck).

Each source is an async iterator of `LogLine`s and `Notice`s (rotated, truncated, ended with exit code ...).
A consumer that stops pulling holds the source back (files, journalctl: nothing is lost, the pipe fills);
a command's output is still read so the engine never blocks on a full pipe, and lines the viewer could not
keep up with are dropped and counted. Cancelling the consumer ends the source and its subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import shutil
import signal
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, pairwise, repeat
from pathlib import Path

from console.errors import EngineDeckError, LogSourceError
from console.logs.index import MAX_LINE_BYTES, FileIndex, cut_points
from console.logs.line import LogLine
from console.logs.parse import LineParser

POLL_INTERVAL_S = 0.25  # how often a followed file is checked for growth, rotation and truncation
READ_SIZE = 256 * 1024
QUEUE_SIZE = 10_000  # lines buffered between a source and a slow consumer
TERMINATE_GRACE_S = 5.0
# Files up to this size are indexed whole when opened, so their lines carry line numbers.
NUMBER_LINES_UP_TO = 16 * 1024 * 1024  # SIGTERM, then SIGKILL after this long


class NoticeKind(enum.Enum):
    WAITING = "waiting"  # the file does not exist (yet)
    ROTATED = "rotated"
    TRUNCATED = "truncated"
    DROPPED = "dropped"  # lines dropped because the consumer was too slow (command output only)
    ENDED = "ended"  # the process or the journal reader ended
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Notice:
    """Something that happened to a source, as opposed to a line it produced."""

    source: str
    kind: NoticeKind
    message: str
    exit_code: int | None = None


Event = LogLine | Notice


class LogSource(ABC):
    def __init__(self, name: str, parser: LineParser | None = None) -> None:
        self.name = name
        self.parser = parser or LineParser(name)

    @abstractmethod
    def events(self) -> AsyncIterator[Event]:
        """Lines and notices until the source ends (never, for a followed file) or the consumer stops."""


class FileSource(LogSource):
    """The last `lines` lines of a file, then (with `follow`) what is appended, across rotation by rename
    (the old file is read to its end before the new one is opened) and truncation (copytruncate)."""

    def __init__(self, path: Path, *, lines: int = 10, follow: bool = True, parser: LineParser | None = None,
                 poll_s: float = POLL_INTERVAL_S, name: str | None = None) -> None:
        super().__init__(name or str(path), parser)
        self.path = path
        self.lines = lines
        self.follow = follow
        self.poll_s = poll_s

    async def events(self) -> AsyncIterator[Event]:
        self._check_path()
        lineno: int | None = 1  # None when the lines before are not counted (the start of a huge file)
        buf = b""
        opened = await asyncio.to_thread(self._initial)
        if opened is None:
            yield Notice(self.name, NoticeKind.WAITING, f"{self.path} does not exist; waiting for it")
            fd = None
            while fd is None:
                await asyncio.sleep(self.poll_s)
                fd = _open(self.path)
        else:
            fd, lineno = opened
        new_fd: int | None = None  # the new file at `path`, while the rotated `fd` is read to its end
        try:
            missing_said = False
            while True:
                offset = os.lseek(fd, 0, os.SEEK_CUR) - len(buf)  # where buf starts in the file
                data = os.read(fd, READ_SIZE)
                if data:
                    lines, buf = _take_lines(buf + data if buf else data, offset)
                    parse = self.parser.parse
                    for raw, newline in lines:
                        yield parse(raw.decode("utf-8", "replace"), lineno=lineno, offset=offset)
                        offset += len(raw) + newline
                        lineno = lineno and lineno + newline
                    continue
                if not self.follow or new_fd is not None:  # the end of this file: its unfinished line is final
                    if buf:
                        yield self.parser.parse(buf.decode("utf-8", "replace"), lineno=lineno, offset=offset)
                    if new_fd is None:
                        return
                    os.close(fd)
                    fd, new_fd, buf, lineno, missing_said = new_fd, None, b"", 1, False
                    yield Notice(self.name, NoticeKind.ROTATED, f"{self.path} was rotated; following the new file")
                    continue
                change = _change(self.path, fd)
                if change == "missing" and not missing_said:
                    missing_said = True
                    yield Notice(self.name, NoticeKind.WAITING, f"{self.path} was removed; waiting for a new one")
                elif change == "rotated" and (new_fd := _open(self.path)) is not None:
                    continue  # read what the writer added to the old file after our last read, then switch
                elif change == "truncated":
                    os.lseek(fd, 0, os.SEEK_SET)
                    buf, lineno = b"", 1
                    yield Notice(self.name, NoticeKind.TRUNCATED, f"{self.path} was truncated; reading from the start")
                    continue
                await asyncio.sleep(self.poll_s)
        finally:
            os.close(fd)
            if new_fd is not None:
                os.close(new_fd)

    def _check_path(self) -> None:
        if self.path.is_dir():
            raise LogSourceError(f"{self.path} is a directory, not a log file")
        if not self.follow and not self.path.exists():
            raise LogSourceError(f"{self.path} does not exist")

    def _initial(self) -> tuple[int, int | None] | None:
        """(fd, number of the line it is at, or None when not known) with the fd positioned at the first of the
        last `lines` complete lines, found through the huge-file index; None when the file does not exist.
        The lines themselves are then read, parsed and yielded a block at a time like appended ones, so the
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

    async def events(self) -> AsyncIterator[Event]:
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
                item = await queue.get()
                if item is None:
                    open_streams -= 1
                    continue
                if dropped:
                    yield Notice(self.name, NoticeKind.DROPPED, f"{dropped} lines dropped (viewer too slow)")
                    dropped = 0
                label, raw = item
                line = self.parser.parse(raw.decode("utf-8", "replace"))
                if label == "stderr":
                    line = line._replace(fields=(("stream", "stderr"), *line.fields))
                yield line
            code = await proc.wait()
            yield Notice(self.name, NoticeKind.ENDED, self._ended(code), exit_code=code)
        finally:
            for task in tasks:
                task.cancel()
            await _stop(proc)

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
