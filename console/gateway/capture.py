"""Opt-in capture: the request bodies (and, if asked, the replies) that passed through a gateway, in a bounded ring
of JSONL on disk, for replay (`enginedeck probe ENGINE MODEL --workload FILE`) and for debugging. Off unless the
gateway's `capture_bytes` is set (`--capture SIZE`).

What is never kept: the `Authorization`, `Proxy-Authorization`, `Cookie` and `Set-Cookie` headers (nor any header
named in `capture_redact`), and the value of every JSON field named in `capture_redact` wherever it sits in the body
(`"[redacted]"` instead); every secret this process has read is redacted from every string (console/secrets.py).

The ring: `capture.jsonl` takes lines until it holds half of `capture_bytes`, then becomes `capture.1.jsonl`
(replacing the one before) and a new `capture.jsonl` starts, so the two hold at most `capture_bytes` and the newest
requests are always there. Files are 0600 in a 0700 directory. A reply is kept up to REPLY_MAX bytes
(`reply_truncated` says when it was cut).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from console.gateway.record import RequestRecord
from console.secrets import redact, redact_data

CURRENT, PREVIOUS = "capture.jsonl", "capture.1.jsonl"
REDACTED = "[redacted]"
ALWAYS_REDACTED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
REPLY_MAX = 1 << 20
BODY_TEXT_MAX = 1 << 20  # a body that is not JSON is kept as text up to this


def _scrub(value: Any, fields: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and k.lower() in fields else _scrub(v, fields)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, fields) for v in value]
    return value


def capture_files(directory: Path) -> list[Path]:
    """Oldest first."""
    return [p for p in (directory / PREVIOUS, directory / CURRENT) if p.exists()]


class Capture:
    def __init__(self, directory: Path, max_bytes: int, *, replies: bool = False,
                 redact_fields: Iterable[str] = ()) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.replies = replies
        self.fields = frozenset(f.strip().lower() for f in redact_fields if f.strip())
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd = -1
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.directory / CURRENT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size

    def entry(self, rec: RequestRecord, headers: Sequence[tuple[bytes, bytes]], body: bytes,
              reply: bytes | None, reply_truncated: bool) -> dict[str, Any]:
        kept_headers = {}
        for name, value in headers:
            key = name.decode("latin-1").lower()
            redacted = key in ALWAYS_REDACTED_HEADERS or key in self.fields
            kept_headers[key] = REDACTED if redacted else redact(value.decode("latin-1"))
        out: dict[str, Any] = {
            "timestamp": rec.entry()["timestamp"], "t": rec.started, "request_id": rec.request_id,
            "method": rec.method, "path": rec.path, "client": rec.client, "model": rec.model, "stream": rec.stream,
            "status_code": rec.status_code, "outcome": rec.outcome.value, "tokens_in": rec.tokens_in,
            "tokens_out": rec.tokens_out, "ttft_ms": rec.ttft_ms, "latency_ms": rec.latency_ms,
            "headers": kept_headers,
        }
        try:
            out["body"] = redact_data(_scrub(json.loads(body), self.fields)) if body else None
        except (ValueError, RecursionError):
            out["body_text"] = redact(body[:BODY_TEXT_MAX].decode("utf-8", "replace"))
        if reply is not None:
            out["reply"] = redact(reply.decode("utf-8", "replace"))
            out["reply_truncated"] = reply_truncated
        return out

    def write(self, entry: dict[str, Any]) -> None:
        data = (json.dumps(entry, ensure_ascii=True) + "\n").encode("ascii")
        if self._size and self._size + len(data) > self.max_bytes // 2:
            os.close(self._fd)
            os.replace(self.directory / CURRENT, self.directory / PREVIOUS)
            self._open()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._size += len(data)

    def close(self) -> None:
        if self._fd != -1:
            os.close(self._fd)
            self._fd = -1
