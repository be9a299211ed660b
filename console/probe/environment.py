"""Where a probe ran: engine version, GPU (when NVML answers), host CPU and memory. Stored with every run, so two
runs can be compared knowing whether the box changed between them."""

from __future__ import annotations

import asyncio
import platform
import socket
from typing import Any

import psutil

from console import __version__
from console.engines.base import Engine, Health
from console.errors import EngineError, EngineTimeoutError, LimitError, ProbeError, UnreachableError


async def engine_version(engine: Engine) -> str | None:
    """The engine's version, asked before a run. An engine that is down, or does not answer in time, stops the
    probe here with the reason (ProbeError), instead of after its first request has waited just as long."""
    try:
        info = await engine.info()
    except (UnreachableError, EngineTimeoutError, LimitError) as exc:
        raise ProbeError(f"probe not started: {exc}") from None
    except EngineError:
        return None  # up, but its health answer is odd: the preflight request will say what is wrong
    if info.health is Health.DOWN:
        raise ProbeError(f"probe not started: {engine.name} is down ({info.reason or 'no reason given'})")
    return info.version


def _gpus() -> list[str] | str:
    """GPU names, or why there are none. Telemetry is optional here: its absence never stops a probe."""
    try:
        from console.telemetry.gpu import GpuMonitor
    except ImportError:
        return "GPU telemetry not installed"
    monitor = GpuMonitor()
    try:
        snap = monitor.sample()
    finally:
        monitor.close()
    return [g.name for g in snap.gpus] if snap.available else snap.reason


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


async def environment(engine: Engine, version: str | None) -> dict[str, Any]:
    gpus = await asyncio.to_thread(_gpus)
    return {
        "engine_version": version,
        "engine_url": engine.base_url,
        "gpus": gpus if isinstance(gpus, list) else [],
        "gpu_note": gpus if isinstance(gpus, str) else None,
        "host": socket.gethostname(),
        "cpu": _cpu_model(),
        "cpu_count": psutil.cpu_count(),
        "mem_total": psutil.virtual_memory().total,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "enginedeck": __version__,
    }
