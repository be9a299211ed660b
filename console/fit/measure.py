"""What an engine's processes hold now: NVML's per-process GPU memory, or the resident set on a CPU-only engine.

An engine is this host's only when its URL is on loopback: NVML and /proc see this host, and a remote engine on the
same port as a local process must not be given that process's memory. Blocking (NVML, /proc): run in a thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil

from console.config import is_loopback
from console.telemetry.gpu import GpuSnapshot
from console.telemetry.processes import EngineProcess, owner_of


@dataclass(frozen=True)
class Measured:
    """Bytes an engine's processes hold, where (`memory`: "gpu" or "host"), and which processes said so."""

    bytes: int
    memory: str
    pids: tuple[int, ...]

    @property
    def source(self) -> str:
        """The figure's source as a person reads it: `nvml:pid 1234` or `rss:pid 1234+1240`."""
        kind = "nvml" if self.memory == "gpu" else "rss"
        return f"{kind}:pid {'+'.join(str(p) for p in self.pids)}"


def local_url(url: str) -> bool:
    """Whether `url` points at this host (loopback or localhost)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return is_loopback(host)


def gpu_use(engine: str, gpu: GpuSnapshot, processes: Sequence[EngineProcess]) -> dict[int, int]:
    """{pid: bytes} of the GPU processes that belong to `engine` (the process itself or one of its children),
    summed over GPUs; a process whose memory NVML cannot see is left out."""
    found: dict[int, int] = {}
    for g in gpu.gpus if gpu.available else ():
        for p in g.processes:
            if p.used_bytes is None:
                continue
            owner = owner_of(p.pid, processes)
            if owner is not None and owner.engine == engine:
                found[p.pid] = found.get(p.pid, 0) + p.used_bytes
    return found


def _tree(pids: Iterable[int]) -> list[int]:
    out: list[int] = []
    for pid in pids:
        out.append(pid)
        try:
            out.extend(c.pid for c in psutil.Process(pid).children(recursive=True))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sorted(set(out))


def rss_of(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def measure_engine(engine: str, gpu: GpuSnapshot, processes: Sequence[EngineProcess]) -> Measured | None:
    """The engine's GPU memory when NVML shows any of its processes, else the resident set of its process tree;
    None when no process of this host serves it."""
    on_gpu = gpu_use(engine, gpu, processes)
    if on_gpu:
        return Measured(sum(on_gpu.values()), "gpu", tuple(sorted(on_gpu)))
    roots = [p.pid for p in processes if p.engine == engine]
    if not roots:
        return None
    pids = _tree(roots)
    return Measured(rss_of(pids), "host", tuple(pids))
