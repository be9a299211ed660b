"""Verify enginedeck's own trail: every record's hash and HMAC, the order and continuity of sequence numbers,
the links between records, the signed head (cut-off tail) and the database copy.

Each problem is an `Issue` saying WHICH kind (edited, deleted, reordered, truncated, broken link, database
mismatch, head) and where (file and line, or sequence numbers).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from console.audit.mark import Mark
from console.audit.record import GENESIS, HASHED_FIELDS, AuditEvent, record_hash, signature_ok
from console.audit.trail import read_head, trail_files
from console.errors import AuditError


class IssueKind(enum.Enum):
    EDITED = "edited"
    DELETED = "deleted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    BROKEN_LINK = "broken-link"
    DATABASE = "database-mismatch"
    HEAD = "head"


@dataclass(frozen=True)
class Issue:
    kind: IssueKind
    message: str
    file: str | None = None
    line: int | None = None
    seqs: tuple[int, ...] = ()


@dataclass(frozen=True)
class TrailReport:
    files: tuple[str, ...]
    records: int
    first_seq: int | None
    last_seq: int | None
    issues: tuple[Issue, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.issues


@dataclass
class _Rec:
    file: str
    line: int
    seq: int
    data: dict[str, Any]


def _runs(numbers: Iterable[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def _span(a: int, b: int) -> str:
    return f"#{a}" if a == b else f"#{a}–#{b}"


def verify_trail(directory: Path, key: bytes, db_events: Sequence[AuditEvent] | None = None) -> TrailReport:
    issues: list[Issue] = []
    recs: list[_Rec] = []
    files = trail_files(directory)
    for fi, path in enumerate(files):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise AuditError(f"cannot read {path}: {exc.strerror}") from None
        lines = data.split(b"\n")
        partial = lines.pop()  # b"" when the file ends with a newline
        for lineno, raw in enumerate(lines, 1):
            if raw.strip():
                rec = _check_line(path.name, lineno, raw, key, issues)
                if rec is not None:
                    recs.append(rec)
        if partial.strip():
            last_line = len(lines) + 1
            if fi == len(files) - 1:
                issues.append(Issue(IssueKind.TRUNCATED, f"{path.name}:{last_line}: the last line is cut off",
                                    path.name, last_line))
            else:
                issues.append(Issue(IssueKind.EDITED, f"{path.name}:{last_line}: unterminated line", path.name,
                                    last_line))

    try:
        head = read_head(directory, key)
    except AuditError as exc:
        issues.append(Issue(IssueKind.HEAD, str(exc)))
        head = None
    pruned = head.pruned_through if head else 0

    # Order: a record whose seq is not above every seq before it was moved.
    highest = 0
    for rec in recs:
        if rec.seq <= highest:
            issues.append(Issue(IssueKind.REORDERED, f"{rec.file}:{rec.line}: record #{rec.seq} comes after "
                                f"record #{highest}", rec.file, rec.line, (rec.seq,)))
        highest = max(highest, rec.seq)

    by_seq = {rec.seq: rec for rec in recs}
    first = pruned + 1
    last = max(by_seq, default=0)
    # Deleted: gaps among the numbers that should be there.
    for a, b in _runs(set(range(first, last + 1)) - by_seq.keys()):
        nxt = by_seq.get(b + 1)
        where = f"before {nxt.file}:{nxt.line}" if nxt else "at the end"
        issues.append(Issue(IssueKind.DELETED, f"record {_span(a, b)} missing {where} (deleted)",
                            nxt.file if nxt else None, nxt.line if nxt else None, tuple(range(a, b + 1))))
    # Truncated tail: the head remembers a later record than the files hold.
    if head is not None and head.seq > last:
        issues.append(Issue(IssueKind.TRUNCATED, f"record {_span(last + 1, head.seq)} missing at the end "
                            "(the trail was truncated)", seqs=tuple(range(last + 1, head.seq + 1))))
    elif head is not None and head.seq < last:
        issues.append(Issue(IssueKind.HEAD, f"the head names record #{head.seq} as the last, the files go on to "
                            f"#{last} (an older head was restored)"))
    elif head is None and recs:
        issues.append(Issue(IssueKind.HEAD, "audit.head is missing: a cut-off tail cannot be ruled out"))
    # Links: each record names the hash of the one before it.
    for seq, rec in by_seq.items():
        expected = by_seq[seq - 1].data.get("hash") if seq - 1 in by_seq else (GENESIS if seq == 1 else None)
        if expected is not None and rec.data.get("prev_hash") != expected:
            issues.append(Issue(IssueKind.BROKEN_LINK, f"{rec.file}:{rec.line}: record #{seq} does not link to "
                                f"record #{seq - 1}", rec.file, rec.line, (seq,)))
    if db_events is not None:
        issues.extend(_cross_check(by_seq, db_events, pruned))
    return TrailReport(tuple(p.name for p in files), len(recs), min(by_seq, default=None),
                       max(by_seq, default=None), tuple(issues))


def _check_line(name: str, lineno: int, raw: bytes, key: bytes, issues: list[Issue]) -> _Rec | None:
    where = f"{name}:{lineno}"
    try:
        data = json.loads(raw)
    except ValueError:
        issues.append(Issue(IssueKind.EDITED, f"{where}: not valid JSON", name, lineno))
        return None
    if not isinstance(data, dict) or not isinstance(data.get("seq"), int) or not set(HASHED_FIELDS) <= data.keys():
        issues.append(Issue(IssueKind.EDITED, f"{where}: not an audit record", name, lineno))
        return None
    seq = data["seq"]
    if record_hash(data) != data.get("hash"):
        issues.append(Issue(IssueKind.EDITED, f"{where}: record #{seq} was edited (its content does not match "
                            "its hash)", name, lineno, (seq,)))
    elif not signature_ok(key, data["hash"], data.get("hmac")):
        issues.append(Issue(IssueKind.EDITED, f"{where}: record #{seq} was rewritten (its HMAC is not valid for "
                            "this key)", name, lineno, (seq,)))
    return _Rec(name, lineno, seq, data)


def _cross_check(by_seq: dict[int, _Rec], db_events: Sequence[AuditEvent], pruned: int) -> list[Issue]:
    issues: list[Issue] = []
    in_db = {e.seq: e for e in db_events}
    for seq, event in in_db.items():
        if record_hash(event.body()) != event.hash:
            issues.append(Issue(IssueKind.DATABASE, f"database row #{seq} was edited (its content does not match "
                                "its hash)", seqs=(seq,)))
        rec = by_seq.get(seq)
        if rec is None:
            if seq > pruned:
                issues.append(Issue(IssueKind.DATABASE, f"record #{seq} is in the database but not in the files",
                                    seqs=(seq,)))
        elif record_hash(rec.data) != event.hash or rec.data.get("hash") != event.hash:
            body = event.body()
            fields = ", ".join(k for k in HASHED_FIELDS if rec.data.get(k) != body.get(k)) or "hash"
            issues.append(Issue(IssueKind.DATABASE, f"{rec.file}:{rec.line}: record #{seq} differs from the "
                                f"database copy ({fields})", rec.file, rec.line, (seq,)))
    missing = [seq for seq in by_seq if seq not in in_db]
    for a, b in _runs(missing):
        issues.append(Issue(IssueKind.DATABASE, f"record {_span(a, b)} is in the files but not in the database",
                            seqs=tuple(range(a, b + 1))))
    return issues


class TrailMarker:
    """Marks each line of enginedeck's own trail valid (hash and HMAC hold) or invalid, for the audit pane.
    Order and continuity need the whole trail: `verify_trail`."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, raw: str) -> Mark:
        issues: list[Issue] = []
        rec = _check_line("", 0, raw.encode("utf-8"), self._key, issues)
        return Mark.INVALID if issues or rec is None else Mark.VALID
