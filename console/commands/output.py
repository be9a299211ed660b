"""How headless commands print: one JSON document with --json, aligned plain text otherwise.

Untrusted strings (model names, engine messages) are neutralised before they reach a terminal.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from console.logs.sanitize import neutralise
from console.secrets import redact_data
from console.ui.format import human_bytes

__all__ = ["cell", "human_bytes", "print_json", "print_table", "to_jsonable"]


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


def print_json(obj: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    json.dump(redact_data(to_jsonable(obj)), out, indent=2, ensure_ascii=False)
    out.write("\n")


def cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return neutralise(str(value)).replace("\n", " ")


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO | None = None) -> None:
    """Left-aligned columns separated by two spaces; no box drawing, so it pipes and greps cleanly."""
    out = out or sys.stdout
    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    for row in [list(headers), *text_rows]:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
