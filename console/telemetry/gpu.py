"""GPU telemetry through NVML (nvidia-ml-py). Sampling blocks, so callers run it in a thread.

A box without an NVIDIA GPU or without the NVML library gets a snapshot with `available=False` and the reason
in words; nothing raises. A reading a GPU does not support (power on some boards, processes in containers)
is None, never a guess.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
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
    # What the GPU does not volunteer (console/truth/findings.py reads these; None: NVML cannot say on this GPU):
    clock_events: int | None = None  # NVML clock event (throttle) reason bits now, see CLOCK_EVENTS
    ecc_corrected: int | None = None  # volatile ECC error counts since the driver loaded
    ecc_uncorrected: int | None = None
    energy_mj: int | None = None  # total energy since the driver loaded, millijoules (Volta and later)
    xids: tuple[tuple[float, int], ...] = ()  # (time seen, XID) of critical errors while this monitor ran

    @property
    def throttled_by(self) -> tuple[str, ...]:
        """The clock event reasons that slow the GPU down against its will (heat, power), in words."""
        if not self.clock_events:
            return ()
        return tuple(words for bit, words in CLOCK_EVENTS.items() if self.clock_events & bit)

    @property
    def mem_free(self) -> int | None:
        if self.mem_used is None or self.mem_total is None:
            return None
        return self.mem_total - self.mem_used


# NVML's clock event reasons that mean "slower than asked" (nvml.h nvmlClocksEventReason*); idle, application
# clocks, sync boost and display settings are not a degradation and are left out.
CLOCK_EVENTS = {
    0x04: "power cap (software)",
    0x08: "hardware slowdown (heat or power brake)",
    0x20: "thermal (software)",
    0x40: "thermal (hardware)",
    0x80: "power brake (hardware)",
}
XID_EVENT = 0x8  # nvmlEventTypeXidCriticalError
XID_KEEP = 64  # critical errors kept per GPU (the newest)


@dataclass(frozen=True)
class GpuSnapshot:
    available: bool
    reason: str = ""  # why not available, for a person
    xid_readable: str | None = None  # why XID errors cannot be read (None: they are watched)
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
        self._events: Any = None  # NVML event set for XID errors, once registered
        self._xid_failure: str | None = None
        self._xids: dict[int, deque[tuple[float, int]]] = {}

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
                self._drain_xids(nvml, count)
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
                xid_readable=self._xid_failure,
            )

    def energy_mj(self) -> dict[int, int | None]:
        """Each GPU's total-energy counter (millijoules since the driver loaded); None where it has none. Empty
        without NVML. For console/telemetry/energy.py: two calls, no full sample."""
        return self._per_gpu("nvmlDeviceGetTotalEnergyConsumption", int)

    def power_w(self) -> dict[int, float | None]:
        """Each GPU's power draw now, in watts (NVML answers milliwatts)."""
        return {i: None if mw is None else mw / 1000
                for i, mw in self._per_gpu("nvmlDeviceGetPowerUsage", float).items()}

    def _per_gpu(self, name: str, kind: Callable[[Any], T]) -> dict[int, T | None]:
        with self._lock:
            nvml = self._init()
            if nvml is None:
                return {}
            try:
                count = nvml.nvmlDeviceGetCount()
                handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            except nvml.NVMLError:
                return {}
            out: dict[int, T | None] = {}
            for i, h in enumerate(handles):
                value = self._named(nvml, name, h)
                out[i] = None if value is None else kind(value)
            return out

    def _drain_xids(self, nvml: Any, count: int) -> None:
        """Register for XID critical errors once, then take what has come since the last sample (no waiting).
        An XID that happened before this monitor started is not seen: NVML reports events, not history."""
        if self._xid_failure is not None:
            return
        if self._events is None:
            try:
                events = nvml.nvmlEventSetCreate()
                for i in range(count):
                    nvml.nvmlDeviceRegisterEvents(nvml.nvmlDeviceGetHandleByIndex(i), XID_EVENT, events)
            except (nvml.NVMLError, AttributeError) as exc:
                self._xid_failure = f"XID errors cannot be watched here ({_text(exc)})"
                return
            self._events = events
        for _ in range(XID_KEEP):  # bounded: an event storm is read over several samples
            try:
                data = nvml.nvmlEventSetWait_v2(self._events, 0)
            except nvml.NVMLError:
                return  # a timeout: nothing more has come
            index = self._named(nvml, "nvmlDeviceGetIndex", data.device)
            if index is not None and data.eventType & XID_EVENT:
                self._xids.setdefault(int(index), deque(maxlen=XID_KEEP)).append((time.time(), int(data.eventData)))

    @staticmethod
    def _optional(nvml: Any, fn: Callable[..., T], *args: Any) -> T | None:
        """What fn(*args) answers; None when NVML cannot say (a reading this GPU or driver does not have)."""
        try:
            return fn(*args)
        except nvml.NVMLError:
            return None

    @classmethod
    def _named(cls, nvml: Any, name: str, *args: Any) -> Any:
        fn = getattr(nvml, name, None)
        return None if fn is None else cls._optional(nvml, fn, *args)

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
        # Newer readings through _named: a binding older than the call has no such function (None, as unsupported).
        events = (self._named(nvml, "nvmlDeviceGetCurrentClocksEventReasons", h)  # renamed in NVML 12.2
                  if hasattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons")
                  else self._named(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", h))
        ecc = [self._named(nvml, "nvmlDeviceGetTotalEccErrors", h, kind, 0) for kind in (0, 1)]  # volatile
        energy = self._named(nvml, "nvmlDeviceGetTotalEnergyConsumption", h)
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
            clock_events=int(events) if events is not None else None,
            ecc_corrected=int(ecc[0]) if ecc[0] is not None else None,
            ecc_uncorrected=int(ecc[1]) if ecc[1] is not None else None,
            energy_mj=int(energy) if energy is not None else None,
            xids=tuple(self._xids.get(index, ())),
        )

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None:
                if self._events is not None:
                    with contextlib.suppress(self._nvml.NVMLError):
                        self._nvml.nvmlEventSetFree(self._events)
                    self._events = None
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
