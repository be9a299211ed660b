"""Random access to the lines of a file of any size: newline offsets found lazily from the END, lines read
with `os.pread`, decoded lines kept in a bounded LRU.

Opening a 1 GB log reads only the last few blocks: the index grows backwards as the view scrolls up and
forwards as the file grows. Memory is one int per indexed line (8 bytes) plus at most `LINE_CACHE_SIZE`
decoded lines. Lines are addressed by their position among the lines indexed so far (0 = the oldest indexed);
`extend_back` returns how many lines it prepended, so a view can keep its scroll position. A line over
`MAX_LINE_BYTES` is indexed as pieces (see `cut_points`), each an entry of its own.
"""

from __future__ import annotations

import os
import re
from array import array
from bisect import bisect_right, insort
from collections import OrderedDict
from collections.abc import Iterator
from itertools import accumulate, repeat
from operator import add
from pathlib import Path

from console.errors import LogSourceError
from console.logs.filter import LogFilter
from console.logs.line import LogLine
from console.logs.parse import LineParser

BLOCK_SIZE = 256 * 1024
# A "line" longer than this is split: a file with no newline at all must not make us read all of it.
MAX_LINE_BYTES = 64 * 1024
# Decoded lines held in memory at once (the cap on lines held; older ones are re-read from the file).
LINE_CACHE_SIZE = 5_000


def cut_points(start: int, end: int) -> range:
    """The file offsets where a line whose text (newline left out) runs from `start` to `end` is cut: none when
    it holds at most MAX_LINE_BYTES, else every multiple of MAX_LINE_BYTES inside it. The cuts depend only on
    where the line lies in the file, so a line has the same pieces whether it is read forwards, in one read or
    as it grows (`FileSource`, `refresh`), or found from its end (`extend_back`, which never has to reach the
    start of an over-long line). `start` may itself be a cut: the rest of the line is cut alike."""
    if end - start <= MAX_LINE_BYTES:
        return range(0)
    return range((start // MAX_LINE_BYTES + 1) * MAX_LINE_BYTES, end, MAX_LINE_BYTES)


class FileIndex:
    """One open file. Not thread-safe: use it from one thread (the UI's reader worker or a CLI task)."""

    def __init__(self, path: Path, parser: LineParser | None = None, *, cache_size: int = LINE_CACHE_SIZE) -> None:
        self.path = path
        self.parser = parser or LineParser(str(path), carry=False)
        self._cache: OrderedDict[int, LogLine] = OrderedDict()  # by start offset, which never shifts
        self._cache_size = cache_size
        self._fd = -1
        self.reopen()

    def reopen(self) -> None:
        """(Re)start on the file now at `path`: after rotation or truncation, or the first time."""
        self.close()
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise LogSourceError(f"cannot open {self.path}: {exc.strerror}") from None
        st = os.fstat(self._fd)
        self.inode = (st.st_dev, st.st_ino)
        self.size = st.st_size  # bytes covered by the index
        self._back = array("q")  # starts of lines found scanning backwards, newest first
        self._fwd = array("q")  # starts of lines appended after the first scan, oldest first
        self._cuts: list[int] = []  # the entries that are cut_points (pieces after the first of a line), sorted
        self._scan_pos = st.st_size  # everything before this is not indexed yet
        self._cache.clear()
        self.extend_back(1)  # the last (possibly unfinished) line

    def restart_before(self, offset: int) -> None:
        """Forget the index and start it again at the line that ends just before `offset`, so `extend_back`
        indexes the lines before a known line (a pane that holds the end of a file and wants older lines)."""
        self._back, self._fwd, self._cuts = array("q"), array("q"), []
        self._scan_pos = self.size = max(0, min(offset, os.fstat(self._fd).st_size))
        self._cache.clear()

    def dup_fd(self) -> int:
        """A second descriptor on the same open file (a follower continues where the index stops)."""
        return os.dup(self._fd)

    def raw_tail_byte(self) -> bytes:
        """The last indexed byte: b"\\n" when the file ends with a complete line."""
        return os.pread(self._fd, 1, self.size - 1) if self.size else b""

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def count(self) -> int:
        """Lines indexed so far."""
        return len(self._back) + len(self._fwd)

    @property
    def complete(self) -> bool:
        """True once the index reaches the start of the file."""
        return self._scan_pos == 0

    def _start(self, i: int) -> int:
        nb = len(self._back)
        return self._back[nb - 1 - i] if i < nb else self._fwd[i - nb]

    def offset(self, i: int) -> int:
        """Byte offset where line `i` starts."""
        return self._start(i)

    def _end(self, i: int) -> int:
        return self._start(i + 1) if i + 1 < self.count else self.size

    def extend_back(self, lines: int) -> int:
        """Index up to `lines` more lines before the oldest indexed one. Returns how many were added."""
        added = 0
        back = self._back
        while added < lines and self._scan_pos > 0:
            end = self._scan_pos  # the entry before ends here; byte end - 1 (its newline) is left out of the block
            lo = max(0, end - 1 - BLOCK_SIZE)
            block = os.pread(self._fd, end - 1 - lo, lo)
            # One line (as when a file is opened) is one rfind in the loop below: cheaper than splitting the block.
            bulk = self._bulk_back(block, lo, lines - added) if lines - added > 1 else 0
            if bulk:
                added += bulk
                continue
            # The entry before `end` is a line, or the piece of an over-long one, whose text ends at `text_end`:
            # before the newline at end - 1, or at `end` itself when that is a cut (or the file's unfinished end).
            text_end = end - 1 if os.pread(self._fd, 1, end - 1) == b"\n" else end
            while added < lines:
                floor = text_end - MAX_LINE_BYTES - 1  # a line that starts at or before floor is over-long
                nl = block.rfind(b"\n", max(0, floor - lo), text_end - lo)
                if nl >= 0:
                    start = lo + nl + 1
                elif lo > 0 and floor < lo:
                    break  # this line may start before the block: read the block before it
                elif floor < 0:
                    start = 0
                else:
                    start = cut_points(floor, text_end)[-1]  # its last cut before text_end, wherever it starts
                    insort(self._cuts, start)
                back.append(start)
                added += 1
                end = start
                text_end = start if nl < 0 else start - 1
                if start <= lo:
                    break
            self._scan_pos = end
        return added

    def _bulk_back(self, block: bytes, lo: int, wanted: int) -> int:
        """The common case of `extend_back`, a block of ordinary lines, without a Python loop turn per line:
        the starts of the lines in `block` (which begins at `lo` and stops short of the byte just before
        `_scan_pos`: a newline, or the last byte of a piece), newest first, at most `wanted`. Returns how many
        were added; 0 when a line in the block may be over MAX_LINE_BYTES (the line-by-line loop cuts it)."""
        parts = block.split(b"\n")
        if max(map(len, parts)) >= MAX_LINE_BYTES:
            return 0
        # starts[i] is where parts[i] starts; parts[0] is a whole line only at the start of the file.
        starts = list(accumulate(map(add, map(len, parts), repeat(1)), initial=lo))[:-1]
        usable = starts if lo == 0 else starts[1:]
        taken = usable[-wanted:]
        if not taken:
            return 0
        self._back.extend(reversed(taken))
        self._scan_pos = taken[0]
        return len(taken)

    def refresh(self) -> int:
        """Index what was appended since the last call; returns the number of new lines. An unfinished last
        line is indexed as it is and re-read when it grows. Rotation and truncation: see `changed`."""
        size = os.fstat(self._fd).st_size
        old = self.size
        if size <= old:
            return 0
        before = self.count
        if not before or os.pread(self._fd, 1, old - 1) == b"\n":
            self._fwd.append(old)
        start = self._start(self.count - 1)  # of the line or piece that goes on at `old`
        self._cache.pop(start, None)  # an unfinished last line may have grown
        pos = old
        while pos < size:
            chunk = os.pread(self._fd, min(BLOCK_SIZE, size - pos), pos)
            if not chunk:
                break
            i = chunk.find(b"\n")
            while i >= 0:
                self._add_cuts(start, pos + i)
                start = pos + i + 1
                if start < size:
                    self._fwd.append(start)
                i = chunk.find(b"\n", i + 1)
            pos += len(chunk)
        self._add_cuts(start, pos)  # the unfinished last line, as far as it goes
        self.size = pos
        return self.count - before

    def _add_cuts(self, start: int, end: int) -> None:
        cuts = cut_points(start, end)
        self._fwd.extend(cuts)
        self._cuts.extend(cuts)

    def changed(self) -> str | None:
        """'rotated' if `path` now names another file, 'truncated' if the file shrank, else None."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None  # renamed away and not recreated yet: keep the old file
        if (st.st_dev, st.st_ino) != self.inode:
            return "rotated"
        if os.fstat(self._fd).st_size < self.size:
            return "truncated"
        return None

    def raw(self, i: int) -> bytes:
        start = self._start(i)
        data = os.pread(self._fd, self._end(i) - start, start)  # at most MAX_LINE_BYTES and a newline
        return data[:-1] if data.endswith(b"\n") else data

    def line(self, i: int) -> LogLine:
        """Line `i` (0 = oldest indexed), parsed; cached in a bounded LRU."""
        if not 0 <= i < self.count:
            raise IndexError(i)
        cache = self._cache
        start = self._start(i)
        hit = cache.get(start)
        if hit is not None and (hit.lineno is not None or not self.complete):
            cache.move_to_end(start)
            return hit
        line = self.parser.parse(self.raw(i).decode("utf-8", "replace"), offset=start, lineno=self.lineno(i))
        cache[start] = line
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
        return line

    def lineno(self, i: int) -> int | None:
        """1-based number of the file line that entry `i` is, or is a piece of (`i == count`: of a line that
        starts where the index ends); known only once the index reaches the start of the file."""
        if not self.complete:
            return None
        start = self._start(i) if i < self.count else self.size
        return i + 1 - bisect_right(self._cuts, start)

    def tail(self, n: int) -> list[LogLine]:
        """The last `n` lines, reading only as much of the file as they need."""
        if n <= 0:
            return []
        if self.count < n:
            self.extend_back(n - self.count)
        return [self.line(i) for i in range(max(0, self.count - n), self.count)]

    def iter_back(self, start: int | None = None) -> Iterator[tuple[int, LogLine]]:
        """Lines from `start` (default: the last) towards the start of the file, extending the index."""
        i = self.count - 1 if start is None else start
        while True:
            if i < 0:
                added = self.extend_back(BLOCK_SIZE // 64)
                if not added:
                    return
                i += added
            yield i, self.line(i)
            i -= 1

    def find(self, flt: LogFilter | re.Pattern[str], start: int, *, forward: bool) -> int | None:
        """Position of the next matching line after `start` (or before it, going back). Positions are
        those after any backward extension this call made: compare with `count`, not with old positions."""
        match = flt.matches if isinstance(flt, LogFilter) else (lambda line: flt.search(line.text) is not None)
        if forward:
            for i in range(start + 1, self.count):
                if match(self.line(i)):
                    return i
            return None
        for i, line in self.iter_back(start - 1):
            if match(line):
                return i
        return None
