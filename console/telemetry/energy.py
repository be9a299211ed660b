"""Energy per output token, from NVML: what a chat turn or a probe level cost the GPUs, less what they burn idle.

Method (docs/truth.md, "Energy per token"):
1. Idle first: over `IDLE_S` seconds with nothing sent, the GPUs' energy counters (or sampled power) give the idle
   power in watts. It is measured once and reused (`EnergyMeter.idle`, at most IDLE_MAX_AGE_S old), and reported.
2. The window: the total-energy counter of every GPU (nvmlDeviceGetTotalEnergyConsumption, millijoules since the
   driver loaded) is read at the start and at the end; gross = the difference, summed over GPUs. Where a GPU has
   no counter (before Volta, some virtual GPUs), power is sampled every SAMPLE_S in a thread and integrated
   (trapezoids) instead, for every GPU, and the reading says `method = "integrated power samples"`.
3. net = gross - idle watts x window seconds; joules per token = net / output tokens (the server's count where it
   gave one). Every number is kept: gross, idle, net, window, tokens, method.
All GPUs of the box are counted: NVML cannot split one GPU's energy between processes, so a box that runs other
work on its GPUs during the window reads high, and an engine on one GPU of eight reads the idle of the seven
(subtracted, since idle was measured the same way).

Blocking (NVML): call it from a thread (`asyncio.to_thread`), as the chat turn and the probe do.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from console.errors import EngineDeckError

IDLE_S = 2.0
IDLE_MAX_AGE_S = 600.0
SAMPLE_S = 0.05
COUNTER = "nvml energy counter"
SAMPLED = "integrated power samples"


class EnergySource(Protocol):
    """What the meter reads: console.telemetry.gpu.GpuMonitor is one."""

    def energy_mj(self) -> Mapping[int, int | None]: ...  # per GPU index; None: no counter on that GPU

    def power_w(self) -> Mapping[int, float | None]: ...


@dataclass(frozen=True)
class Idle:
    watts: float
    window_s: float
    method: str
    taken_at: float  # epoch seconds


@dataclass(frozen=True)
class EnergyReading:
    method: str  # COUNTER or SAMPLED
    window_s: float
    gross_j: float
    idle_w: float
    idle_method: str
    idle_taken_at: float
    net_j: float
    tokens: int | None
    j_per_token: float | None
    gpus: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EnergyError(RuntimeError):
    """Energy cannot be measured here (no GPU, no NVML): the reason, for a person."""


class _Sampler:
    """Power of every GPU, sampled in a thread and integrated: joules so far."""

    def __init__(self, source: EnergySource, interval_s: float, clock: Callable[[], float]) -> None:
        self._source, self._interval, self._clock = source, interval_s, clock
        self._stop = threading.Event()
        self.joules = 0.0
        self.samples = 0
        self._last: tuple[float, float] | None = None
        self._take()
        self._thread = threading.Thread(target=self._loop, name="energy-sampler", daemon=True)
        self._thread.start()

    def _take(self) -> None:
        watts = sum(w for w in self._source.power_w().values() if w is not None)
        now = self._clock()
        if self._last is not None:
            self.joules += (watts + self._last[1]) / 2 * (now - self._last[0])
        self._last = (now, watts)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._take()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._take()
        return self.joules


class Window:
    """From `EnergyMeter.start()` to `stop()`: the energy the GPUs used meanwhile."""

    def __init__(self, meter: EnergyMeter) -> None:
        self._meter = meter
        self.t0 = meter.clock()
        counters = meter.source.energy_mj()
        self.gpus = len(counters)
        self._start_mj = counters if counters and all(v is not None for v in counters.values()) else None
        self._sampler = None if self._start_mj is not None else _Sampler(meter.source, meter.sample_s, meter.clock)

    @property
    def method(self) -> str:
        return COUNTER if self._start_mj is not None else SAMPLED

    def gross(self) -> tuple[float, float]:
        """(joules, seconds) since the start; ends a sampling window."""
        if self._sampler is not None:
            joules = self._sampler.stop()
        else:
            assert self._start_mj is not None
            end = self._meter.source.energy_mj()
            joules = sum((end.get(i) or 0) - (v or 0) for i, v in self._start_mj.items()) / 1000
        return joules, self._meter.clock() - self.t0

    def stop(self, tokens: int | None, idle: Idle) -> EnergyReading:
        gross, seconds = self.gross()
        net = gross - idle.watts * seconds
        return EnergyReading(
            method=self.method, window_s=round(seconds, 4), gross_j=round(gross, 3), idle_w=round(idle.watts, 3),
            idle_method=idle.method, idle_taken_at=idle.taken_at, net_j=round(net, 3), tokens=tokens,
            j_per_token=round(net / tokens, 5) if tokens else None, gpus=self.gpus)


class EnergyMeter:
    def __init__(self, source: EnergySource, *, sample_s: float = SAMPLE_S, idle_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.source = source
        self.sample_s, self.idle_s = sample_s, IDLE_S if idle_s is None else idle_s
        self.clock, self._sleep = clock, sleep
        self._idle: Idle | None = None

    def check(self) -> None:
        """Raise EnergyError when no GPU can be read."""
        if not self.source.energy_mj() and not self.source.power_w():
            raise EnergyError("no NVIDIA GPU to measure energy on")

    def measure_idle(self) -> Idle:
        """`idle_s` seconds with nothing sent; the caller makes sure nothing is."""
        self.check()
        window = self.start()
        self._sleep(self.idle_s)
        joules, seconds = window.gross()
        self._idle = Idle(joules / seconds if seconds > 0 else 0.0, round(seconds, 4), window.method, time.time())
        return self._idle

    def idle(self) -> Idle:
        """The last idle measurement if recent, else a new one."""
        if self._idle is None or time.time() - self._idle.taken_at > IDLE_MAX_AGE_S:
            return self.measure_idle()
        return self._idle

    def start(self) -> Window:
        return Window(self)


async def box_meter() -> EnergyMeter:
    """A meter over this box's GPUs (NVML) for `--energy`, checked in a thread before anything is sent: no GPU to
    read is one clear error, not a run with no figures."""
    from console.telemetry.gpu import GpuMonitor

    meter = EnergyMeter(GpuMonitor())
    try:
        await asyncio.to_thread(meter.check)
    except EnergyError as exc:
        raise EngineDeckError(f"--energy: {exc}", hint="drop --energy on a box without an NVIDIA GPU") from None
    return meter
