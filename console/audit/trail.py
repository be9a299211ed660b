"""enginedeck's own operator audit trail: who did what, from where, with what result.

Each event goes to a JSONL file in the data dir (`audit.jsonl`, rotated to `audit-<last seq>.jsonl` past
`audit.max_file_bytes` or once its first record is `MAX_FILE_DAYS` old) and to the `audit_events` table. Appends
from several enginedeck processes are serialised by an exclusive `flock` on `audit.lock` around "read the last
record, append the next one".
`audit.head` (HMAC-signed) remembers the last sequence number and hash, so cutting records off the end of the
trail is detected even without the database, and how far retention has pruned, so a missing old file is told
apart from a deleted one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import getpass
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from console.audit.keys import load_or_create_key
from console.audit.record import GENESIS, AuditEvent, sign, signature_ok, strip_secrets
from console.errors import AuditError
from console.secrets import redact, redact_data

if TYPE_CHECKING:
    from console.config import Config

ACTIVE_NAME = "audit.jsonl"
ROTATED_GLOB = "audit-*.jsonl"
HEAD_NAME = "audit.head"
LOCK_NAME = "audit.lock"
TAIL_READ = 64 * 1024  # the last record is found in this much of the end of the file
# A quiet trail never fills a file, and retention removes whole rotated files: rotating by age as well bounds
# how long a record outlives retention (by this, or by the retention period where that is shorter).
MAX_FILE_DAYS = 30


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    pruned_through: int = 0


def trail_files(directory: Path) -> list[Path]:
    """The trail's files, oldest first: rotated ones by their zero-padded last sequence number, then the active."""
    files = sorted(directory.glob(ROTATED_GLOB))
    active = directory / ACTIVE_NAME
    return [*files, active] if active.exists() else files


def read_head(directory: Path, key: bytes) -> Head | None:
    """The signed head, or None if absent. A head whose HMAC does not verify raises AuditError."""
    path = directory / HEAD_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        head = Head(int(raw["seq"]), str(raw["hash"]), int(raw.get("pruned_through", 0)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AuditError(f"{path} is unreadable ({exc})") from None
    if not signature_ok(key, _head_digest(head), raw.get("hmac")):
        raise AuditError(f"{path} does not carry a valid HMAC: it was edited")
    return head


def _head_digest(head: Head) -> str:
    return f"{head.seq}:{head.hash}:{head.pruned_through}"


def _write_head(directory: Path, key: bytes, head: Head) -> None:
    body = {"seq": head.seq, "hash": head.hash, "pruned_through": head.pruned_through,
            "hmac": sign(key, _head_digest(head))}
    tmp = directory / (HEAD_NAME + ".tmp")
    tmp.write_text(json.dumps(body) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, directory / HEAD_NAME)


def _last_record(path: Path) -> dict[str, Any] | None:
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - TAIL_READ))
        lines = [line for line in f.read().split(b"\n") if line.strip()]
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and isinstance(record.get("seq"), int):
                return record
    return None


def _record_ts(record: Mapping[str, Any] | None) -> float | None:
    try:
        return AuditEvent.from_record(record).ts if record is not None else None
    except (ValueError, KeyError, TypeError):
        return None


def _first_record(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as f:
            record = json.loads(f.readline())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"uid:{os.getuid()}"


def _ssh_origin() -> str | None:
    parts = os.environ.get("SSH_CONNECTION", "").split()
    return f"{parts[0]}:{parts[1]}" if len(parts) >= 2 else None


class AuditCopy(Protocol):
    """Where the trail keeps its database copy: the store's audit repository (console/store/audit.py), passed in
    by whoever built both (console/services.py), so the trail does not depend on the store."""

    async def insert(self, event: AuditEvent) -> None: ...

    async def delete_through(self, seq: int) -> int: ...


class AuditTrail:
    def __init__(self, directory: Path, *, key_file: Path, db_copy: AuditCopy | None = None,
                 retention_days: int = 365, max_file_bytes: int = 10 * 1024 * 1024) -> None:
        self.directory = directory
        self.key_file = key_file
        self.db_copy = db_copy
        self.retention_days = retention_days
        self.max_file_bytes = max_file_bytes
        self._key: bytes | None = None

    @classmethod
    def for_config(cls, config: Config, db_copy: AuditCopy | None) -> AuditTrail:
        return cls(config.data_dir, key_file=config.audit.key_file or config.data_dir / "audit.key", db_copy=db_copy,
                   retention_days=config.audit.retention_days, max_file_bytes=config.audit.max_file_bytes)

    @property
    def path(self) -> Path:
        return self.directory / ACTIVE_NAME

    def key(self) -> bytes:
        if self._key is None:
            self._key = load_or_create_key(self.key_file)
        return self._key

    async def record(self, action: str, *, engine: str | None, target: str | None, params: Mapping[str, Any],
                     result: str, duration_s: float | None) -> AuditEvent:
        """Append one event to the JSONL trail (under the lock) and then to the database.

        Secrets go before the record is hashed: named ones (`strip_secrets`) and every key this process has read,
        wherever it appears (an engine's error echoed into `result`; console/secrets.py). A secret that reached a
        sealed record could not be removed without breaking the chain."""
        draft = AuditEvent(seq=0, ts=round(time.time(), 6), os_user=_os_user(), ssh_origin=_ssh_origin(),
                           host=socket.gethostname(), action=redact(action), engine=engine and redact(engine),
                           target=target and redact(target), params=redact_data(strip_secrets(dict(params))),
                           result=redact(result),
                           duration_s=None if duration_s is None else round(float(duration_s), 6))
        event, pruned_through = await asyncio.to_thread(self._append, draft)
        if self.db_copy is not None:
            await self.db_copy.insert(event)
            if pruned_through:
                await self.db_copy.delete_through(pruned_through)
        return event

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open the audit trail in {self.directory}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _append(self, draft: AuditEvent) -> tuple[AuditEvent, int]:
        from dataclasses import replace

        key = self.key()
        with self._locked():
            try:
                head = read_head(self.directory, key)
            except AuditError:
                head = None  # an edited head is reported by verify; the files still say where the chain is
            last = next((r for p in reversed(trail_files(self.directory)) if (r := _last_record(p))), None)
            seq, prev = (int(last["seq"]) + 1, str(last.get("hash", ""))) if last else (1, GENESIS)
            event = replace(draft, seq=seq, prev_hash=prev).sealed(key)
            line = (event.to_json() + "\n").encode("utf-8")
            if last is not None and self._full(len(line), event.ts):
                os.rename(self.path, self.directory / f"audit-{int(last['seq']):012d}.jsonl")
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise AuditError(f"cannot write the audit trail {self.path}: {exc.strerror}") from None
            pruned_through = self._prune(head.pruned_through if head else 0)
            _write_head(self.directory, key, Head(seq, event.hash, pruned_through))
        return event, (pruned_through if pruned_through != (head.pruned_through if head else 0) else 0)

    def _full(self, adding: int, now: float) -> bool:
        """Whether the active file is rotated before `adding` more bytes go in: past `max_file_bytes`, or once
        its first record is older than `MAX_FILE_DAYS` (the retention period if shorter)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return False
        started = _record_ts(_first_record(self.path))
        max_age = min(self.retention_days, MAX_FILE_DAYS) * 86400
        return size > 0 and (size + adding > self.max_file_bytes or (started is not None and now - started > max_age))

    def _prune(self, pruned_through: int) -> int:
        """Remove rotated files whose every record is older than the retention period (whole files, so the
        chain stays verifiable from the first record kept). Returns the last sequence number removed.
        Age is the last record's own timestamp, not the file's mtime, which a copy or restore can change."""
        cutoff = time.time() - self.retention_days * 86400
        for path in sorted(self.directory.glob(ROTATED_GLOB)):
            newest = _record_ts(_last_record(path))
            if newest is None or newest >= cutoff:
                break
            try:
                last_seq = int(path.stem.split("-", 1)[1])
            except ValueError:
                break
            path.unlink()
            pruned_through = max(pruned_through, last_seq)
        return pruned_through
