"""GPU telemetry through NVML (nvidia-ml-py). Sampling blocks, so callers run it in a thread.

A box without an NVIDIA GPU or without the NVML library gets a snapshot with `available=False` and the reason
in words; nothing raises. A reading a GPU does not support (power on some boards, processes in containers)
is None, never a guess.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_bytes: int | None  # None: NVML cannot see it (another PID namespace, or not supported)
    kind: str  # "compute" or "graphics"


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    uuid: str
    util_pct: float | None
    mem_util_pct: float | None
    mem_used: int | None
    mem_total: int | None
    temp_c: float | None
    power_w: float | None
    power_limit_w: float | None
    processes: tuple[GpuProcess, ...] = ()

    @property
    def mem_free(self) -> int | None:
        if self.mem_used is None or self.mem_total is None:
            return None
        return self.mem_total - self.mem_used


@dataclass(frozen=True)
class GpuSnapshot:
    available: bool
    reason: str = ""  # why not available, for a person
    driver: str | None = None
    nvml_version: str | None = None
    gpus: tuple[GpuSample, ...] = ()
    taken_at: float = field(default_factory=time.time)

    @property
    def free_vram(self) -> int | None:
        """Free memory summed over GPUs, for fit estimates; None when unknown."""
        frees = [g.mem_free for g in self.gpus]
        if not frees or any(f is None for f in frees):
            return None
        return sum(f for f in frees if f is not None)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class GpuMonitor:
    """Owns the NVML session. `sample()` is thread-safe and cheap enough for 1 Hz."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nvml: Any = None
        self._failure: str | None = None

    def _init(self) -> Any:
        if self._nvml is not None or self._failure is not None:
            return self._nvml
        try:
            import pynvml
        except ImportError:
            self._failure = "NVML not available: the nvidia-ml-py package is not installed"
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            self._failure = f"no NVIDIA GPU / NVML not available ({_text(exc)})"
            return None
        self._nvml = pynvml
        return pynvml

    def sample(self) -> GpuSnapshot:
        with self._lock:
            nvml = self._init()
            if nvml is None:
                return GpuSnapshot(available=False, reason=self._failure or "NVML not available")
            try:
                count = nvml.nvmlDeviceGetCount()
                gpus = tuple(self._sample_one(nvml, i) for i in range(count))
            except nvml.NVMLError as exc:
                return GpuSnapshot(available=False, reason=f"NVML failed: {_text(exc)}")
            if not gpus:
                return GpuSnapshot(available=False, reason="NVML found no NVIDIA GPU")
            return GpuSnapshot(
                available=True,
                driver=self._optional_text(nvml, nvml.nvmlSystemGetDriverVersion),
                nvml_version=self._optional_text(nvml, nvml.nvmlSystemGetNVMLVersion),
                gpus=gpus,
            )

    @staticmethod
    def _optional(nvml: Any, fn: Callable[..., T], *args: Any) -> T | None:
        """What fn(*args) answers; None when NVML cannot say (a reading this GPU or driver does not have)."""
        try:
            return fn(*args)
        except nvml.NVMLError:
            return None

    @classmethod
    def _optional_text(cls, nvml: Any, fn: Callable[[], object]) -> str | None:
        """The same, as text: older bindings answer bytes."""
        value = cls._optional(nvml, fn)
        return None if value is None else _text(value)

    def _sample_one(self, nvml: Any, index: int) -> GpuSample:
        h = nvml.nvmlDeviceGetHandleByIndex(index)
        opt = self._optional
        util = opt(nvml, nvml.nvmlDeviceGetUtilizationRates, h)
        mem = opt(nvml, nvml.nvmlDeviceGetMemoryInfo, h)
        power_mw = opt(nvml, nvml.nvmlDeviceGetPowerUsage, h)
        limit_mw = opt(nvml, nvml.nvmlDeviceGetEnforcedPowerLimit, h)
        processes: list[GpuProcess] = []
        for kind, fn in (("compute", nvml.nvmlDeviceGetComputeRunningProcesses),
                         ("graphics", nvml.nvmlDeviceGetGraphicsRunningProcesses)):
            for p in opt(nvml, fn, h) or ():
                used = getattr(p, "usedGpuMemory", None)
                processes.append(GpuProcess(pid=int(p.pid), used_bytes=int(used) if used else None, kind=kind))
        return GpuSample(
            index=index,
            name=_text(nvml.nvmlDeviceGetName(h)),
            uuid=_text(opt(nvml, nvml.nvmlDeviceGetUUID, h) or ""),
            util_pct=float(util.gpu) if util is not None else None,
            mem_util_pct=float(util.memory) if util is not None else None,
            mem_used=int(mem.used) if mem is not None else None,
            mem_total=int(mem.total) if mem is not None else None,
            temp_c=opt(nvml, nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU),
            power_w=power_mw / 1000 if power_mw is not None else None,
            power_limit_w=limit_mw / 1000 if limit_mw is not None else None,
            processes=tuple(processes),
        )

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None:
                with contextlib.suppress(self._nvml.NVMLError):
                    self._nvml.nvmlShutdown()
                self._nvml = None


def main() -> int:
    """`python -m console.telemetry.gpu`: one snapshot as JSON, each GPU process with its owner's command line.

    This is the probe run on a real GPU machine (docs/telemetry.md); it needs nothing but nvidia-ml-py and psutil.
    """
    import dataclasses
    import json

    import psutil

    monitor = GpuMonitor()
    try:
        snap = monitor.sample()
    finally:
        monitor.close()
    out = dataclasses.asdict(snap)
    for gpu in out["gpus"]:
        for proc in gpu["processes"]:
            try:
                p = psutil.Process(proc["pid"])
                proc["owner"] = {"name": p.name(), "cmdline": " ".join(p.cmdline())[:200]}
            except (psutil.NoSuchProcess, psutil.AccessDenied) as exc:
                proc["owner"] = {"error": type(exc).__name__}
    print(json.dumps(out, indent=2))
    return 0 if snap.available else 1


if __name__ == "__main__":
    raise SystemExit(main())
