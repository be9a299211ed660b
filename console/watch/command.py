"""An alert rule's command: argv run directly (never through a shell), with the event in its environment, its
run time and its output bounded.

The program gets `ENGINEDECK_ALERT_EVENT` (firing / resolved), `_RULE`, `_METRIC`, `_SUBJECT`, `_VALUE`,
`_THRESHOLD` and `_JSON` (the whole event) in its environment, stdin from /dev/null, and a new session, so that
past its timeout the whole process group is killed. At most `OUTPUT_MAX` bytes of its output (stdout and stderr
together) are kept; the rest is read and dropped, so a chatty program never blocks on a full pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

from console.logs.sanitize import neutralise

OUTPUT_MAX = 8 * 1024
KILL_GRACE_S = 2.0


@dataclass(frozen=True)
class CommandResult:
    argv0: str
    exit_code: int | None  # None: it could not start, or was killed at its timeout
    timed_out: bool
    output: str  # inert text, at most OUTPUT_MAX bytes of what it printed
    truncated: bool
    seconds: float
    error: str = ""  # why it could not start


async def run_command(argv: tuple[str, ...], env: Mapping[str, str], timeout_s: float) -> CommandResult:
    started = time.perf_counter()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True)
    except OSError as exc:
        return CommandResult(argv[0], None, False, "", False, time.perf_counter() - started,
                             error=f"cannot run {argv[0]}: {exc.strerror or exc}")
    kept = bytearray()
    truncated = False

    async def drain() -> None:
        nonlocal truncated
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            room = OUTPUT_MAX - len(kept)
            if len(chunk) > room:
                truncated = True
            kept.extend(chunk[:max(room, 0)])
        await proc.wait()

    timed_out = False
    try:
        await asyncio.wait_for(drain(), timeout_s)
    except TimeoutError:
        timed_out = True
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
        except TimeoutError:
            _kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    finally:
        if proc.returncode is None:  # cancelled: leave nothing behind
            _kill_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()
    text = neutralise(kept.decode("utf-8", "replace"))
    return CommandResult(argv[0], None if timed_out else proc.returncode, timed_out, text, truncated,
                         time.perf_counter() - started)


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
