"""Which lines a view shows: a minimum level and a regular expression, both optional."""

from __future__ import annotations

import re
from dataclasses import dataclass

from console.errors import LogSourceError
from console.logs.line import Level, LogLine


@dataclass(frozen=True, slots=True)
class LogFilter:
    """`min_level` hides lines below it and lines whose level is unknown; `pattern` is searched in the text."""

    min_level: Level | None = None
    pattern: re.Pattern[str] | None = None

    @classmethod
    def build(cls, level: str | None = None, regex: str | None = None, *, ignore_case: bool = False) -> LogFilter:
        min_level = None
        if level:
            min_level = Level.parse(level)
            if min_level is None:
                names = ", ".join(lv.label for lv in Level)
                raise LogSourceError(f"unknown level {level!r}", hint=f"use one of {names}")
        return cls(min_level, compile_pattern(regex, ignore_case=ignore_case) if regex else None)

    @property
    def active(self) -> bool:
        return self.min_level is not None or self.pattern is not None

    def matches(self, line: LogLine) -> bool:
        if self.min_level is not None and (line.level is None or line.level < self.min_level):
            return False
        return self.pattern is None or self.pattern.search(line.text) is not None


def compile_pattern(regex: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    try:
        return re.compile(regex, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise LogSourceError(f"invalid regular expression {regex!r}: {exc}") from None
