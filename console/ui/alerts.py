"""The alert rules of `[alerts] rules_file`, judged while the TUI runs; the firing ones go to the title bar.

One loop for the app (a worker named `alerts-loop`): every `interval` of the rules file it collects what the
exporter would serve (console/watch/collect.py, with the app's own GPU monitor) and judges the rules
(console/watch/alerts.py); the app publishes the firing alerts on `app.alerts_changed` when they change. A rules
file that cannot be read is one notice, and the loop stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from console.engines.registry import Registry
    from console.telemetry.gpu import GpuMonitor


async def watch_alerts(rules_file: Path, registry: Registry, gpu: Callable[[], GpuMonitor], *,
                       notify: Callable[[str], object], changed: Callable[[tuple[str, ...]], object]) -> None:
    """`gpu()` gives the app's GPU monitor (built in a thread: it may import NVML's bindings); `notify(text)` says
    the rules cannot be read; `changed(firing)` gets the firing rules' names each time they change (the app
    publishes them to the title bars)."""
    from console.errors import ConfigError
    from console.watch.alerts import Alerts
    from console.watch.collect import Collector
    from console.watch.rules import load_rules

    try:
        rules = await asyncio.to_thread(load_rules, rules_file)
    except ConfigError as exc:
        notify(f"Alerts are off: {exc}")
        return
    alerts = Alerts(rules)
    collector = Collector(registry, gpu=await asyncio.to_thread(gpu))
    shown: tuple[str, ...] = ()
    try:
        while True:
            alerts.judge(await collector.collect())
            firing = tuple(sorted({rule for rule, _subject in alerts.firing()}))
            if firing != shown:
                shown = firing
                changed(firing)
            await asyncio.sleep(rules.interval_s)
    finally:
        collector.close()
