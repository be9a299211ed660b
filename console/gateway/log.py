"""The signed request log: one HMAC-signed JSONL line per request, in the format `enginedeck audit verify FILE`
reads (console/audit/signed.py writes and checks it), rotated by size and age.

The current file is `requests.jsonl` in the gateway's log directory (0700; files 0600); a rotated one is renamed
`requests-YYYYMMDDTHHMMSS.ffffffZ.jsonl` (the moment of rotation). Each line goes to the kernel in one `write()` on a
file opened for appending, so a process killed with SIGKILL leaves whole lines. What a power cut can leave (a
line cut short at the end of the current file) is removed when the gateway next opens the file, and said on
stderr with its size: the line was never whole, so no record is lost that had been written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from console.audit.signed import sign_line
from console.errors import AuditError

CURRENT = "requests.jsonl"
TAIL_SCAN = 1 << 20  # how far back a cut-short last line is looked for


def log_files(directory: Path) -> list[Path]:
    """Every file of a request log, oldest first (the rotated ones by name, then the current one)."""
    rotated = sorted(directory.glob("requests-*.jsonl"))
    current = directory / CURRENT
    return rotated + ([current] if current.exists() else [])


def _first_timestamp(path: Path) -> float | None:
    try:
        with path.open("rb") as f:
            first = f.readline(TAIL_SCAN)
        stamp = json.loads(first)["timestamp"]
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except (OSError, ValueError, KeyError, TypeError):
        return None


class RequestLog:
    def __init__(self, directory: Path, key: bytes, *, max_bytes: int, max_age_s: float) -> None:
        self.directory = directory
        self._key = key
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.repaired = 0  # bytes of a cut-short line removed at open
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditError(f"cannot create the request log directory {directory}: {exc.strerror}") from None
        self._fd = -1
        self._open()

    @property
    def path(self) -> Path:
        return self.directory / CURRENT

    def _open(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open the request log {self.path}: {exc.strerror}") from None
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            start = max(0, size - TAIL_SCAN)
            tail = os.pread(fd, size - start, start)
            nl = tail.rfind(b"\n")
            keep = start + nl + 1 if nl != -1 else start
            os.ftruncate(fd, keep)
            self.repaired = size - keep
            size = keep
        self._fd, self._size = fd, size
        self._born = (_first_timestamp(self.path) if size else None) or time.time()

    def write(self, entry: Mapping[str, Any]) -> None:
        data = (sign_line(entry, self._key) + "\n").encode("utf-8")
        if self._size and (self._size + len(data) > self.max_bytes or time.time() - self._born >= self.max_age_s):
            self.rotate()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)

    def rotate(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        target = self.directory / f"requests-{stamp}.jsonl"
        n = 1
        while target.exists():
            n += 1
            target = self.directory / f"requests-{stamp}-{n}.jsonl"
        os.close(self._fd)
        os.rename(self.path, target)
        self._open()
        return target

    def close(self) -> None:
        if self._fd != -1:
            os.close(self._fd)
            self._fd = -1
