"""Where a probe ran: engine version, GPU (when NVML answers), host CPU and memory. Stored with every run, so two
runs can be compared knowing whether the box changed between them."""

from __future__ import annotations

import asyncio
import platform
import socket
from typing import Any

import psutil

from console import __version__
from console.engines.base import Engine
from console.errors import EngineError


async def engine_version(engine: Engine) -> str | None:
    try:
        return (await engine.info()).version
    except EngineError:
        return None


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
