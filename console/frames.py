"""The worker processes enginedeck starts itself (the probe's, the gateway's): how one is started, and the
messages over its link: pickles, each behind its length, over a socket pair. Only ever between two processes of
ours: a pickle from anyone else would be code.

Workers are fresh interpreters (`python -m MODULE FD... LINK_FD`), never forks: the TUI runs the probe from a
thread, the gateway from an event loop, and a fork of either is unsafe. multiprocessing's `spawn` was not used
because it keeps a resource-tracker process alive and re-imports the caller's main module.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

_FRAME = struct.Struct("!I")
ROOT = str(Path(__file__).resolve().parents[1])  # the child imports this very package, wherever it is


def spawn(module: str, *fds: int, stderr: int | None = subprocess.DEVNULL
          ) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """A worker running `python -m MODULE FD... LINK_FD` (each fd passed on), and our end of its link. Popen blocks
    only until the child is exec'd (a few ms); asyncio's own subprocess support makes the same call on the loop.
    Raises OSError when it cannot be started. `stderr` None: the worker writes to ours."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    ours, theirs = socket.socketpair()
    with theirs:
        try:
            proc = subprocess.Popen([sys.executable, "-m", module, *map(str, fds), str(theirs.fileno())],
                                    pass_fds=(*fds, theirs.fileno()), env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=stderr)
        except OSError:
            ours.close()
            raise
    return proc, ours


async def read_frame(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    size = _FRAME.unpack(await reader.readexactly(_FRAME.size))[0]
    msg: tuple[Any, ...] = pickle.loads(await reader.readexactly(size))
    return msg


def write_frame(writer: asyncio.StreamWriter, msg: tuple[Any, ...]) -> None:
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_FRAME.pack(len(data)) + data)
