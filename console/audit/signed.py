"""Signed JSONL written by proxies: each line a JSON object whose `signature` is HMAC-SHA256 (hex) over the
other fields serialised with sorted keys. enginedeck's own gateway writes it too (`sign_line`).

The exact serialisation of the signer is not known to us, so the common ones are tried and the one that
matched is reported: compact separators (`","`, `":"`) or json.dumps' defaults (`", "`, `": "`), each with
non-ASCII escaped (`ensure_ascii=True`, json.dumps' default) or kept as UTF-8.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from console.audit.mark import Mark
from console.errors import AuditError

SIGNATURE_FIELD = "signature"
# (name, separators, ensure_ascii), most likely first.
SERIALISATIONS: tuple[tuple[str, tuple[str, str], bool], ...] = (
    ("compact", (",", ":"), True),
    ("default", (", ", ": "), True),
    ("compact-utf8", (",", ":"), False),
    ("default-utf8", (", ", ": "), False),
)


@dataclass(frozen=True)
class LineVerdict:
    lineno: int
    mark: Mark
    serialisation: str | None = None  # which one matched, for valid lines
    reason: str | None = None  # why a line is invalid


def sign_line(entry: Mapping[str, Any], key: bytes) -> str:
    """One line (without its newline): `entry`'s fields and `signature`, the HMAC-SHA256 over
    `json.dumps(entry, sort_keys=True)` (the "default" serialisation `verify_line` tries)."""
    body = json.dumps(entry, sort_keys=True).encode("utf-8")
    signature = hmac.new(key, body, hashlib.sha256).hexdigest()
    return json.dumps({**entry, SIGNATURE_FIELD: signature}, sort_keys=True)


def verify_line(raw: str | bytes, key: bytes, lineno: int = 0) -> LineVerdict:
    try:
        obj = json.loads(raw)
    except ValueError:
        return LineVerdict(lineno, Mark.INVALID, reason="not valid JSON")
    if not isinstance(obj, dict):
        return LineVerdict(lineno, Mark.INVALID, reason="not a JSON object")
    if SIGNATURE_FIELD not in obj:
        return LineVerdict(lineno, Mark.UNSIGNED)
    signature = obj.pop(SIGNATURE_FIELD)
    if not isinstance(signature, str):
        return LineVerdict(lineno, Mark.INVALID, reason="signature is not a string")
    signature = signature.strip().lower()
    for name, separators, ensure_ascii in SERIALISATIONS:
        body = json.dumps(obj, sort_keys=True, separators=separators, ensure_ascii=ensure_ascii).encode("utf-8")
        if hmac.compare_digest(hmac.new(key, body, hashlib.sha256).hexdigest(), signature):
            return LineVerdict(lineno, Mark.VALID, serialisation=name)
    return LineVerdict(lineno, Mark.INVALID, reason="signature does not match")


def verify_file(path: Path, key: bytes) -> Iterator[LineVerdict]:
    """A verdict per non-blank line, numbered from 1 as an editor would."""
    try:
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                if raw.strip():
                    yield verify_line(raw, key, lineno)
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror}") from None


class SignedMarker:
    """The `marker` a LineParser takes to mark each line of a signed file valid / invalid / unsigned."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, raw: str) -> Mark:
        return verify_line(raw, self._key).mark
