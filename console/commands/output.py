"""How headless commands print: one JSON document with --json, text fitted to the terminal otherwise.

Everything a command prints goes through one place. While a command runs (`installed`), stdout and stderr are
`InertWriter`s: every string written is passed through `InertWriter.clean` (control sequences removed with
`console.logs.sanitize.neutralise`), whether the stream is a terminal, a pipe or a file, so no model reply,
log line or engine message can set the window title, write the clipboard (OSC 52) or move the cursor, wherever
the output ends up. `--raw` leaves stdout's text as it is, for someone who asks for the bytes; stderr stays
inert. Our own codes (bold search hits, a progress line rewritten in place, on a terminal) go through
`InertWriter.own`, which writes only the codes it knows.

JSON escapes every control character (C0, DEL, C1, line and paragraph separators) as `\\uXXXX`: inert, and still
exactly the text. Exports escape them visibly (`visible`: ESC becomes the four characters `\\x1b`), so a reader
sees that something was there.

A reader that goes away (`enginedeck ... | head -1`) is not an error: the writer drops what follows and says so
(`stdout_closed`), the command finishes, and its exit status is still its own.

Tables fit the terminal's width (80 columns when stdout is not a terminal, or $COLUMNS): long names are elided in
the middle, then columns are left out by their declared priority; `--wide` prints every column whole. A cell is
never cut through a number and a row never wraps mid-cell.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import io
import json
import os
import re
import shutil
import sys
import textwrap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from console.logs.sanitize import neutralise
from console.present.format import cell_width, elide_end, elide_middle
from console.secrets import redact, redact_data

__all__ = ["Col", "InertWriter", "cell", "installed", "json_text", "print_json", "print_table",
           "rewrite_line", "stdout_closed", "styled", "table_width", "to_jsonable", "visible"]

BOLD, PLAIN = "\x1b[1m", "\x1b[0m"
REWRITE = "\r\x1b[2K"  # back to the start of the line and clear it: a progress line rewritten in place
_OWN_CODES = frozenset({BOLD, PLAIN, REWRITE})
NOT_A_TTY_WIDTH = 80
GAP = "  "
# An escape sequence still open at the end of a write waits for the next write (a model streams OSC 52 over
# several tokens), at most this many characters; past that it is dropped like any unterminated sequence.
MAX_CARRY = 4096
_INTRODUCERS = "\x1b\x90\x98\x9b\x9d\x9e\x9f"
_ANY_INTRODUCER = re.compile(f"[{_INTRODUCERS}]")
_OPEN_CSI = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*")
_STRING_STARTS = ("\x1b]", "\x1bP", "\x1bX", "\x1b^", "\x1b_", "\x90", "\x98", "\x9d", "\x9e", "\x9f")
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029]")
_VISIBLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CELL_SPACE = re.compile(r"[\t\n]")  # a cell stays on its line and in its column


# -- the writer ----------------------------------------------------------------------------------------------------

def _open_tail(text: str) -> int:
    """Where an escape sequence that is not finished yet starts at the end of `text`, or -1."""
    start = max(text.rfind(ch, max(0, len(text) - MAX_CARRY)) for ch in _INTRODUCERS)
    if start < 0:
        return -1
    tail = text[start:]
    if tail == "\x1b" or _OPEN_CSI.fullmatch(tail):
        return start
    if tail.startswith(_STRING_STARTS) and not any(t in tail for t in ("\x07", "\x9c")):
        return start  # OSC, DCS, ... with no BEL or ST yet (an ST is ESC \, whose ESC would be the last one)
    return -1


class InertWriter(io.TextIOBase):
    """A text stream that neutralises what is written to it (unless `raw`) and survives its reader leaving."""

    def __init__(self, stream: TextIO, *, raw: bool = False) -> None:
        super().__init__()
        self.stream = stream
        self.raw = raw
        self.broken = False
        self._carry = ""

    def clean(self, text: str) -> str:
        """What this stream lets through of `text`: the one function every printed string goes through.
        Secrets enginedeck has read are redacted even from --raw output (console/secrets.py)."""
        return redact(text) if self.raw else neutralise(text)

    def write(self, text: str) -> int:
        if self.raw:
            self._put(self.clean(text))
            return len(text)
        if not self._carry and not _ANY_INTRODUCER.search(text):  # the common case: nothing can be left open
            self._put(self.clean(text))
            return len(text)
        whole = self._carry + text
        cut = _open_tail(whole)
        self._carry = whole[cut:] if cut >= 0 else ""
        self._put(self.clean(whole[:cut] if cut >= 0 else whole))
        return len(text)

    def own(self, code: str) -> None:
        """One of enginedeck's own codes (bold, plain, rewrite the line); anything else is refused."""
        if code not in _OWN_CODES:
            raise ValueError(f"not one of enginedeck's own codes: {code!r}")
        self._put(code)

    def finish(self) -> None:
        """Write out what is held back (an unfinished sequence is dropped by `clean`) and flush."""
        carry, self._carry = self._carry, ""
        if carry:
            self._put(self.clean(carry))
        self.flush()

    def _put(self, text: str) -> None:
        if self.broken or not text:
            return
        try:
            self.stream.write(text)
        except BrokenPipeError:
            self._broke()

    def flush(self) -> None:
        if self.broken:
            return
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._broke()

    def _broke(self) -> None:
        """The reader went away: drop the rest. The descriptor goes to /dev/null so that the interpreter's own
        flush at exit finds somewhere to write (else Python reports the broken pipe and exits 120)."""
        self.broken = True
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            fd = self.stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def writable(self) -> bool:
        return True

    # TextIOBase declares encoding as a plain attribute; here it is the wrapped stream's, read when asked.
    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")


@dataclass
class _Settings:
    wide: bool = False


_settings = _Settings()


@contextlib.contextmanager
def installed(*, raw: bool = False, wide: bool = False) -> Iterator[None]:
    """stdout and stderr as InertWriters (stdout raw if asked) while a command runs."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = InertWriter(out, raw=raw), InertWriter(err)
    _settings.wide = wide
    try:
        yield
    finally:
        for writer in (sys.stdout, sys.stderr):
            if isinstance(writer, InertWriter):
                writer.finish()
        sys.stdout, sys.stderr = out, err
        _settings.wide = False


def stdout_closed() -> bool:
    """True once the reader of stdout went away (`| head`): a command that follows something may stop."""
    return isinstance(sys.stdout, InertWriter) and sys.stdout.broken


def styled(out: TextIO, code: str) -> None:
    """Write one of our own codes (BOLD, PLAIN, REWRITE) past the inert writer (a plain stream takes it as is)."""
    if isinstance(out, InertWriter):
        out.own(code)
    else:
        out.write(code)


def rewrite_line(out: TextIO, text: str) -> None:
    """Replace the terminal's current line with `text` (progress on a terminal); `text` itself stays inert."""
    styled(out, REWRITE)
    out.write(text)


# -- JSON and exports ----------------------------------------------------------------------------------------------

def to_jsonable(obj: Any) -> Any:
    """Dataclasses, enums, datetimes and paths as plain JSON values, recursively."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, BaseException):
        return str(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):  # NamedTuple records (LogLine) keep their field names
        return {k: to_jsonable(v) for k, v in obj._asdict().items()}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    return obj


def json_text(obj: Any, *, indent: int | None = 2) -> str:
    """JSON that keeps non-ASCII text readable but holds no raw control character.

    `json.dumps` escapes C0 controls itself; DEL, C1 (8-bit CSI, OSC...) and U+2028/9 it leaves raw when
    `ensure_ascii` is off. Outside strings JSON is plain ASCII, so escaping them across the whole text only
    touches string contents, and a JSON reader gets exactly the original text back.
    """
    text = json.dumps(redact_data(to_jsonable(obj)), indent=indent, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def print_json(obj: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    out.write(json_text(obj) + "\n")


def visible(text: str) -> str:
    """Control characters (but newline and tab) written out as `\\xNN`: the text stays, nothing can act on a
    terminal that shows it, and a reader sees where an escape sequence was."""
    return redact(_VISIBLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text))


# -- tables --------------------------------------------------------------------------------------------------------

Fit = Literal["none", "middle", "end", "wrap"]


@dataclass(frozen=True)
class Col:
    """A table column and how it gives way when the table is wider than the terminal.

    `fit`: "middle" elides a long cell in the middle (names), "end" at its end (free text), "wrap" folds it onto
    more lines at spaces (sentences a person must read whole), "none" never cuts it (numbers, states, times).
    `keep`: when eliding is not enough, the columns with the lowest `keep` are left out first (ties: the
    rightmost first). `min`: the narrowest an elided or wrapped column becomes.
    """

    header: str
    fit: Fit = "none"
    keep: int = 5
    min: int = 10
    right: bool = False


def table_width() -> int | None:
    """Columns a table may use: None with --wide; $COLUMNS; the terminal's width; else 80."""
    if _settings.wide:
        return None
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((NOT_A_TTY_WIDTH, 24)).columns
    return NOT_A_TTY_WIDTH


def cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return _CELL_SPACE.sub(" ", neutralise(str(value)))


def _layout(cols: Sequence[Col], natural: Sequence[int], width: int) -> tuple[list[int], list[int]]:
    """(indexes of the columns shown, their widths) so the table fits `width`."""
    shown = list(range(len(cols)))

    def fitted(shown: list[int]) -> list[int] | None:
        widths = [natural[i] for i in shown]
        over = sum(widths) + len(GAP) * (len(shown) - 1) - width
        # Shrinkable columns give way in the order of their `keep`, each down to its minimum.
        for k in sorted((k for k, i in enumerate(shown) if cols[i].fit != "none"), key=lambda k: cols[shown[k]].keep):
            if over <= 0:
                break
            cut = min(over, max(0, widths[k] - cols[shown[k]].min))
            widths[k] -= cut
            over -= cut
        return widths if over <= 0 else None

    while True:
        widths = fitted(shown)
        if widths is not None:
            return shown, widths
        if len(shown) == 1:
            return shown, [width]
        drop = min(reversed(shown), key=lambda i: cols[i].keep)  # lowest keep, rightmost among equals
        shown.remove(drop)


def _cut(text: str, col: Col, width: int) -> list[str]:
    if cell_width(text) <= width:
        return [text]
    if col.fit == "wrap":
        return textwrap.wrap(text, width, break_on_hyphens=False) or [""]
    if col.fit == "middle":
        return [elide_middle(text, width)]
    return [elide_end(text, width)]


def _pad(text: str, width: int, right: bool) -> str:
    space = " " * max(0, width - cell_width(text))
    return space + text if right else text + space


def print_table(columns: Sequence[str | Col], rows: Iterable[Sequence[Any]], out: TextIO | None = None,
                *, width: int | None = None) -> None:
    """Columns separated by two spaces, no box drawing, so it pipes and greps cleanly; fitted to `width` (by
    default `table_width()`), with a note on stderr naming the columns left out."""
    out = out or sys.stdout
    cols = [c if isinstance(c, Col) else Col(c) for c in columns]
    text_rows = [[cell(v) for v in row] for row in rows]
    natural = [cell_width(c.header) for c in cols]
    for row in text_rows:
        natural = [max(w, cell_width(c)) for w, c in zip(natural, row, strict=True)]
    limit = width if width is not None else table_width()
    if limit is None:
        shown, widths = list(range(len(cols))), natural
    else:
        shown, widths = _layout(cols, natural, limit)
    header = [c.header for c in cols]
    for row in [header, *text_rows]:
        pieces = [_cut(row[i], cols[i], w) if row is not header else [elide_end(row[i], w)]
                  for i, w in zip(shown, widths, strict=True)]
        for n in range(max(len(p) for p in pieces)):
            line = GAP.join(_pad(p[n] if n < len(p) else "", w, cols[i].right)
                            for p, i, w in zip(pieces, shown, widths, strict=True))
            out.write(line.rstrip() + "\n")
    left_out = [cols[i].header for i in range(len(cols)) if i not in shown]
    if left_out:
        print(f"({len(left_out)} column{'s' if len(left_out) > 1 else ''} left out to fit {limit} columns: "
              f"{', '.join(left_out)}; --wide shows them)", file=sys.stderr)
