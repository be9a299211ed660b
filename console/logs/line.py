"""One log line as every view sees it: where it came from, the raw bytes decoded, inert text, level, time."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import NamedTuple

from console.audit.mark import Mark


class Level(enum.IntEnum):
    """Severity, ordered so that `--level warn` means `level >= Level.WARN`."""

    TRACE = 5
    DEBUG = 10
    INFO = 20
    WARN = 30
    ERROR = 40
    FATAL = 50

    @classmethod
    def parse(cls, name: str) -> Level | None:
        """A level name as engines write it (`WARNING`, `warn`, `E`, `err`, `critical`), or None."""
        return _NAMES.get(name.strip().lower())

    @property
    def label(self) -> str:
        return self.name.lower()


_NAMES: dict[str, Level] = {
    "trace": Level.TRACE, "t": Level.TRACE,
    "debug": Level.DEBUG, "dbg": Level.DEBUG, "d": Level.DEBUG, "verbose": Level.DEBUG,
    "info": Level.INFO, "information": Level.INFO, "notice": Level.INFO, "i": Level.INFO,
    "warn": Level.WARN, "warning": Level.WARN, "w": Level.WARN,
    "error": Level.ERROR, "err": Level.ERROR, "e": Level.ERROR,
    "fatal": Level.FATAL, "critical": Level.FATAL, "crit": Level.FATAL, "panic": Level.FATAL,
    "emerg": Level.FATAL, "alert": Level.FATAL, "f": Level.FATAL,
}


class LogLine(NamedTuple):
    """`raw` is the line as read (untrusted, never shown as is); `text` is neutralised and readable.

    `lineno` is 1-based within the source when known (files, signed JSONL); `offset` is the byte offset of
    the line in a file, so a view can re-read it. `fields` holds the structured fields of a JSON or
    key=value line as (name, value) pairs, values neutralised.

    A NamedTuple rather than a frozen dataclass: one is made per line read, and a frozen dataclass's
    `__init__` (ten `object.__setattr__` calls) cost 1.7 µs of the ~8 µs a line had (immutable either way;
    change one with `line._replace(...)`).
    """

    source: str
    raw: str
    text: str
    level: Level | None = None
    ts: datetime | None = None
    lineno: int | None = None
    offset: int | None = None
    fields: tuple[tuple[str, str], ...] = ()
    mark: Mark | None = None
    fmt: str = "plain"
