"""The gateway's own log: one JSON object a line on stderr (journald keeps it under systemd).

Escape-safe: json.dumps escapes every control character (an ESC in a model name or an error body arrives as
`\\u001b`), so no line can move a terminal's cursor or forge a second line; every secret this process has read
is redacted from each text first (console/secrets.py). uvicorn's own messages come through `JsonLines` in the
same shape.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from console.secrets import redact, redact_data


def emit(event: str, *, level: str = "info", stream: TextIO | None = None, **fields: Any) -> None:
    now = datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    line = json.dumps({"ts": now, "level": level, "event": event, **redact_data(fields)}, ensure_ascii=True,
                      default=str)
    out = stream or sys.stderr
    try:
        out.write(line + "\n")
        out.flush()
    except (OSError, ValueError):  # stderr gone (a closed pipe): the signed log still has every request
        pass


class JsonLines(logging.Handler):
    """uvicorn's log records as `emit` lines."""

    def emit(self, record: logging.LogRecord) -> None:
        emit("server", level=record.levelname.lower(), message=redact(record.getMessage()))
