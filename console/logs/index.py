"""Random access to the lines of a file of any size: newline offsets found lazily from the END, lines read
with `os.pread`, decoded lines kept in a bounded LRU.

Opening a 1 GB log reads only the last few blocks: the index grows backwards as the view scrolls up and
forwards as the file grows. Memory is one int per indexed line (8 bytes) plus at most `LINE_CACHE_SIZE`
decoded lines. Lines are addressed by their position among the lines indexed so far (0 = the oldest indexed);
`extend_back` returns how many lines it prepended, so a view can keep its scroll position.
"""

from __future__ import annotations

import os
import re
from array import array
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
        self._scan_pos = st.st_size  # everything before this is not indexed yet
        self._cache.clear()
        self._tail_start: int | None = None  # start of the last (possibly unfinished) line, when size > 0
        if st.st_size:
            self._tail_start = self._find_line_start(st.st_size)
            self._back.append(self._tail_start)
            self._scan_pos = self._tail_start

    def restart_before(self, offset: int) -> None:
        """Forget the index and start it again at the line that ends just before `offset`, so `extend_back`
        indexes the lines before a known line (a pane that holds the end of a file and wants older lines)."""
        self._back, self._fwd = array("q"), array("q")
        self._scan_pos = self.size = max(0, min(offset, os.fstat(self._fd).st_size))
        self._tail_start = None
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

    def _find_line_start(self, end: int) -> int:
        """Start of the line that ends at `end` (exclusive; a newline just before `end` belongs to it)."""
        pos = end - 1 if end and os.pread(self._fd, 1, end - 1) == b"\n" else end
        limit = max(0, end - MAX_LINE_BYTES)
        while pos > limit:
            lo = max(limit, pos - BLOCK_SIZE)
            nl = os.pread(self._fd, pos - lo, lo).rfind(b"\n")
            if nl >= 0:
                return lo + nl + 1
            pos = lo
        return limit

    def extend_back(self, lines: int) -> int:
        """Index up to `lines` more lines before the oldest indexed one. Returns how many were added."""
        added = 0
        back = self._back
        while added < lines and self._scan_pos > 0:
            end = self._scan_pos  # the line before ends here; its newline (end - 1) is left out of the search
            lo = max(0, end - 1 - BLOCK_SIZE)
            block = os.pread(self._fd, end - 1 - lo, lo)
            bulk = self._bulk_back(block, lo, lines - added)
            if bulk:
                added += bulk
                continue
            j = len(block)
            while added < lines:
                nl = block.rfind(b"\n", 0, j)
                if nl < 0 and lo > 0 and end - MAX_LINE_BYTES < lo:
                    break  # this line starts before the block: read the block before it
                start = max(lo + nl + 1, end - MAX_LINE_BYTES, 0)
                back.append(start)
                added += 1
                end = start
                if start <= lo:
                    break
                j = start - lo - 1
            self._scan_pos = end
        return added

    def _bulk_back(self, block: bytes, lo: int, wanted: int) -> int:
        """The common case of `extend_back`, a block of ordinary lines, without a Python loop turn per line:
        the starts of the lines in `block` (which begins at `lo` and ends just before the newline of the line
        that starts at `_scan_pos`), newest first, at most `wanted`. Returns how many were added; 0 when a
        line in the block may be over MAX_LINE_BYTES (the line-by-line loop cuts it in pieces)."""
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
        if self._tail_start is not None:
            self._cache.pop(self._tail_start, None)  # the unfinished last line may have grown
        if old == 0 or os.pread(self._fd, 1, old - 1) == b"\n":
            self._fwd.append(old)
            self._tail_start = old
        pos = old
        while pos < size:
            chunk = os.pread(self._fd, min(BLOCK_SIZE, size - pos), pos)
            if not chunk:
                break
            i = chunk.find(b"\n")
            while i >= 0:
                start = pos + i + 1
                if start < size:
                    self._fwd.append(start)
                    self._tail_start = start
                i = chunk.find(b"\n", i + 1)
            pos += len(chunk)
        self.size = pos
        return self.count - before

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
        start, end = self._start(i), self._end(i)
        data = os.pread(self._fd, min(end - start, MAX_LINE_BYTES), start)
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
        line = self.parser.parse(self.raw(i).decode("utf-8", "replace"), offset=start, lineno=self._absolute(i))
        cache[start] = line
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
        return line

    def _absolute(self, i: int) -> int | None:
        """1-based line number, known only once the index reaches the start of the file."""
        return i + 1 if self.complete else None

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
