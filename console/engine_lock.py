"""One model action per engine at a time, across every enginedeck process on the box.

Each engine has a lock file in the data dir (`locks/<hash of the engine's URL>.lock`). An action holds an
exclusive `flock` on it from its first request until its outcome is recorded; a second action is refused at once
and told who holds the engine. Why a lock file and `flock`:
- flock belongs to the open file, so a second action in the same process (two TUI workers) is refused exactly
  like one from another process (a CLI beside the TUI, two scripts);
- the kernel drops the lock when its holder dies, `kill -9` included, so there is never a stale lock to clean;
- refusing rather than queueing: a queued action would run against whatever the first one left, which the
  operator has not seen yet.
The key is the engine's URL (in `url_key` form), so a configured name and a URL for the same server meet on the
same file. Two different spellings of one server (its LAN address and 127.0.0.1) do not.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from console.errors import EngineDeckError

LOCKS_DIR = "locks"
HOLDER_MAX_BYTES = 4096


@dataclass(frozen=True)
class Holder:
    """What an action holding an engine is doing, written into its lock file for whoever is refused."""

    action: str
    model: str | None
    engine: str
    pid: int
    started: float  # time.time()

    def describe(self, now: float | None = None) -> str:
        running = max(0.0, (time.time() if now is None else now) - self.started)
        what = f"{self.action} of {self.model}" if self.model else self.action
        return f"{what} (pid {self.pid}, running for {running:.0f} s)"


class ActionInProgressError(EngineDeckError):
    """Another model action holds this engine (in this process or another one)."""

    def __init__(self, engine: str, holder: Holder | None) -> None:
        doing = holder.describe() if holder else "another enginedeck action"
        super().__init__(f"{engine} is busy with {doing}",
                         hint="wait for it to finish, or cancel it where it runs (c on the Models screen, ctrl+c "
                              "in a terminal); one model action per engine at a time")
        self.holder = holder


def lock_path(lock_dir: Path, engine_url: str) -> Path:
    from console.engines.detect import url_key

    digest = hashlib.sha256(url_key(engine_url).encode()).hexdigest()[:24]
    return lock_dir / f"{digest}.lock"


class EngineLock:
    """A held engine lock; `release()` (or leaving the `with`) lets the next action in."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, lock_dir: Path, engine_url: str, holder: Holder) -> EngineLock:
        """Take the engine's lock without waiting; `ActionInProgressError` names the holder if it is taken."""
        fd = _open(lock_dir, engine_url)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read_holder(fd)
            os.close(fd)
            raise ActionInProgressError(holder.engine, other) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(asdict(holder)).encode(), 0)
        except OSError:
            pass  # the lock holds without its description; a refusal then says "another enginedeck action"
        return cls(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # still under the lock: nobody reads a finished action as the holder
        os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> EngineLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _open(lock_dir: Path, engine_url: str) -> int:
    try:
        lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return os.open(lock_path(lock_dir, engine_url), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise EngineDeckError(f"cannot open the engine lock in {lock_dir}: {exc.strerror or exc}",
                              hint="check that the data dir is writable by this user") from None


def _read_holder(fd: int) -> Holder | None:
    try:
        raw = json.loads(os.pread(fd, HOLDER_MAX_BYTES, 0) or b"null")
        return Holder(action=str(raw["action"]), model=None if raw.get("model") is None else str(raw["model"]),
                      engine=str(raw["engine"]), pid=int(raw["pid"]), started=float(raw["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # being written this instant, or not ours: the refusal still stands
