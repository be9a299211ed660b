"""Host telemetry through psutil: CPU, memory, swap, disks of the model stores, network rates.

`HostMonitor.sample()` blocks briefly (psutil reads /proc); callers run it in a thread. CPU and load are read
on every sample; memory, swap, disks and network change slowly and cost most of a sample (/proc/vmstat alone is
~0.1 ms), so they are read at most every `slow_every_s` and reused in between. Network rates are computed
between two such reads, so the first sample has none.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil

SLOW_EVERY_S = 5.0

# Where engines keep their models by default; only those that exist are measured.
DEFAULT_MODEL_STORES = ("~/.ollama/models", "/usr/share/ollama/.ollama/models", "~/.cache/huggingface",
                        "~/.cache/llama.cpp", "~/.lmstudio/models")


@dataclass(frozen=True)
class DiskUsage:
    path: str
    total: int
    used: int
    free: int


@dataclass(frozen=True)
class HostSnapshot:
    cpu_pct: float
    cpu_count: int
    load_avg: tuple[float, float, float]
    mem_total: int
    mem_used: int
    mem_available: int
    swap_total: int
    swap_used: int
    disks: tuple[DiskUsage, ...]
    net_rx_bps: float | None  # bytes per second since the previous sample, loopback left out
    net_tx_bps: float | None
    taken_at: float = field(default_factory=time.time)


def _external_traffic() -> tuple[int, int]:
    """Bytes received and sent on every interface but loopback: the console's own polling of local engines
    is not network traffic a person wants to see."""
    rx = tx = 0
    for nic, c in (psutil.net_io_counters(pernic=True) or {}).items():
        if nic == "lo" or nic.startswith("lo:"):
            continue
        rx += c.bytes_recv
        tx += c.bytes_sent
    return rx, tx


class HostMonitor:
    def __init__(self, model_stores: Iterable[str] = DEFAULT_MODEL_STORES, *,
                 slow_every_s: float = SLOW_EVERY_S) -> None:
        self.model_stores = tuple(model_stores)
        self.slow_every_s = slow_every_s
        self._last_net: tuple[float, int, int] | None = None
        self._slow: HostSnapshot | None = None  # the last full read; its cpu and load are not reused
        self._slow_at = float("-inf")
        self._cpu_count = psutil.cpu_count() or 1
        psutil.cpu_percent(None)  # prime: the first call always answers 0.0

    def _disks(self) -> tuple[DiskUsage, ...]:
        seen: set[int] = set()
        disks = []
        for raw in self.model_stores:
            path = Path(os.path.expanduser(raw))
            if not path.exists():
                continue
            try:
                dev = path.stat().st_dev
                if dev in seen:
                    continue
                seen.add(dev)
                u = psutil.disk_usage(str(path))
            except OSError:
                continue
            disks.append(DiskUsage(str(path), u.total, u.used, u.free))
        if not disks:
            u = psutil.disk_usage(os.path.expanduser("~"))
            disks.append(DiskUsage(os.path.expanduser("~"), u.total, u.used, u.free))
        return tuple(disks)

    @property
    def slow_due(self) -> bool:
        """The next sample reads memory, swap, disks and network: a caller on an event loop runs that one in a
        thread (statvfs on a network mount can block), and may run the others, CPU and load only, inline."""
        return self._slow is None or time.monotonic() - self._slow_at >= self.slow_every_s

    def _read_slow(self, now: float) -> HostSnapshot:
        vm = psutil.virtual_memory()
        sw = psutil.swap_memory()
        rx, tx = _external_traffic()
        rx_bps = tx_bps = None
        if self._last_net is not None:
            t0, rx0, tx0 = self._last_net
            dt = max(now - t0, 1e-6)
            rx_bps, tx_bps = max(0, rx - rx0) / dt, max(0, tx - tx0) / dt
        self._last_net = (now, rx, tx)
        return HostSnapshot(
            cpu_pct=0.0, cpu_count=self._cpu_count, load_avg=(0.0, 0.0, 0.0),
            mem_total=vm.total, mem_used=vm.total - vm.available, mem_available=vm.available,
            swap_total=sw.total, swap_used=sw.used, disks=self._disks(), net_rx_bps=rx_bps, net_tx_bps=tx_bps,
        )

    def sample(self) -> HostSnapshot:
        if self._slow is None or self.slow_due:
            now = time.monotonic()
            self._slow, self._slow_at = self._read_slow(now), now
        return replace(self._slow, cpu_pct=psutil.cpu_percent(None), taken_at=time.time(),
                       load_avg=os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0))
