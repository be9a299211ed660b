"""The dashboard's fleet mode (`[fleet] prometheus_url`): the fleet read (console/watch/fleet.py) as the rows of the
engines and loaded-models tables, each with its host first, and the host filter's choices.

Nothing here imports textual or rich. Every name in a row came back from Prometheus, so it is untrusted text and
goes through `neutralise` like the local engines' names.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import TYPE_CHECKING

from console.logs.sanitize import neutralise, one_line
from console.present.format import DASH, human_bytes, latency, pct
from console.ui.engine_rows import ENGINE_COLUMNS, LOADED_COLUMNS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from console.config import Config
    from console.watch.fleet import FleetEngine, FleetHost, FleetView

FLEET_ENGINE_COLUMNS = ("host", *ENGINE_COLUMNS)
FLEET_LOADED_COLUMNS = ("host", *LOADED_COLUMNS)
# Prometheus's figures are only as fresh as its last scrape (15 s by default), and each read is five queries over
# the whole fleet: reading more often than this would show the same figures at a cost to Prometheus.
FLEET_MIN_INTERVAL_S = 5.0
# A large fleet's refresh is costly for the console itself (100 hosts: ~80 ms of CPU on the 2-core box, mostly the
# JSON and the parse of ~7 800 series; bench/fleet_idle.py): refreshes are spaced so that they take at most this
# share of one core on average (0.1 %: the dashboard's idle budget is 0.5 %, and it uses ~0.4 % without a fleet),
# but never more than FLEET_MAX_INTERVAL_S apart.
FLEET_CPU_SHARE = 0.001
FLEET_MAX_INTERVAL_S = 60.0
ALL_HOSTS = None  # the host filter's first choice


def fleet_interval(poll_interval_s: float, refresh_cpu_s: float = 0.0) -> float:
    """The wait before the next read: the dashboard's poll interval, never less than FLEET_MIN_INTERVAL_S, and for a
    fleet whose last refresh (the read and the rows built from it) took `refresh_cpu_s` of CPU, long enough to keep
    refreshes within FLEET_CPU_SHARE of a core, up to FLEET_MAX_INTERVAL_S."""
    paced = min(refresh_cpu_s / FLEET_CPU_SHARE, FLEET_MAX_INTERVAL_S)
    return max(poll_interval_s, FLEET_MIN_INTERVAL_S, paced)


def read_fleet(config: Config) -> FleetView:
    """One fleet read, start to end, in the calling thread's own event loop (the dashboard runs it in a worker
    thread, so neither the queries nor the parse of a large fleet's answers run on the UI loop). Every query is
    bounded by the fleet's deadline; the client is closed before returning."""
    from console.engines.prometheus import PrometheusClient
    from console.watch.fleet import prometheus_view

    url = config.fleet.prometheus_url
    if url is None:
        raise ValueError("fleet mode needs [fleet] prometheus_url")

    async def read() -> FleetView:
        client = PrometheusClient(url, timeouts=config.timeouts, limits=config.limits,
                                  max_series=config.fleet.max_series)
        try:
            return await prometheus_view(client)
        finally:
            await client.aclose()

    return asyncio.run(read())


async def read_in_thread(config: Config) -> tuple[FleetView, float]:
    """`read_fleet` in a daemon thread of its own, awaited: the view and the CPU seconds the read took. Not
    asyncio.to_thread: the loop's default executor is joined when the console quits, so a read waiting on a hung
    Prometheus would hold the quit for up to its deadline; a daemon thread is left behind instead (its read is
    bounded, and its answer goes nowhere)."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[tuple[FleetView, float]] = loop.create_future()

    def settle(outcome: tuple[FleetView, float] | Exception) -> None:
        if answer.done():  # the awaiting worker was cancelled (the dashboard went away)
            return
        if isinstance(outcome, Exception):
            answer.set_exception(outcome)
        else:
            answer.set_result(outcome)

    def run() -> None:
        outcome: tuple[FleetView, float] | Exception
        started = time.thread_time()
        try:
            outcome = read_fleet(config), time.thread_time() - started
        except Exception as exc:  # handed to the awaiting worker, which says what failed
            outcome = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name="fleet-read", daemon=True).start()
    return await answer


def host_names(view: FleetView) -> list[str]:
    return sorted(h.name for h in view.hosts)


def next_host(current: str | None, hosts: Sequence[str]) -> str | None:
    """The filter's next choice: all hosts, then each host in turn, then all again. A host that left the fleet
    goes back to all."""
    if current is None or current not in hosts:
        return hosts[0] if hosts and current is None else ALL_HOSTS
    i = hosts.index(current)
    return hosts[i + 1] if i + 1 < len(hosts) else ALL_HOSTS


def fleet_host_lines(view: FleetView, host: str | None = ALL_HOSTS) -> list[str]:
    """Each shown host's memory and load (node_exporter) and its GPUs (the exporter's or dcgm-exporter's), a line
    for the host and one per GPU under it."""
    lines: list[str] = []
    for h in view.hosts:
        if host is not None and h.name != host:
            continue
        parts = [neutralise(h.name)]
        if h.reachable is False:
            parts.append("unreachable")
        if h.load1 is not None:
            parts.append(f"load {h.load1:.1f}")
        if h.mem_available_bytes is not None and h.mem_total_bytes:
            parts.append(f"ram {human_bytes(int(h.mem_available_bytes))} free of {human_bytes(int(h.mem_total_bytes))}")
        lines.append("  ".join(parts))
        for _, g in sorted(h.gpus.items()):
            used, total = g.mem_used_bytes, g.mem_total_bytes
            mem = f"{human_bytes(int(used))}/{human_bytes(int(total))}" if used is not None and total else DASH
            util = pct(g.utilization, ratio=True)
            temp = f"{g.temperature_c:.0f}°C" if g.temperature_c is not None else DASH
            power = f"{g.power_w:.0f} W" if g.power_w is not None else DASH
            lines.append(f"  GPU {neutralise(g.index)} {neutralise(g.name or g.uuid or DASH)}  {util}  {mem}  "
                         f"{temp}  {power}")
    return lines


def _engine_row(host: FleetHost, e: FleetEngine) -> tuple[str, ...]:
    health = e.health or ("ok" if e.up else "down")
    if not e.up:
        health = "down"
    run_wait = DASH if e.running is None else f"{e.running:.0f}/{(e.waiting or 0):.0f}"
    return (neutralise(host.name), neutralise(e.name), health, neutralise(e.kind or DASH),
            neutralise(e.version or DASH), latency(e.latency_s) if e.latency_s is not None else DASH, run_wait,
            pct(e.kv_cache_usage, ratio=True))


def fleet_rows(view: FleetView, host: str | None = ALL_HOSTS
               ) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]], list[str]]:
    """The engines table's rows, the loaded-models table's rows and the problem lines (hosts Prometheus cannot
    scrape, findings, firing alerts) of the hosts the filter shows."""
    engines: list[tuple[str, ...]] = []
    loaded: list[tuple[str, ...]] = []
    problems: list[str] = []
    for h in view.hosts:
        if host is not None and h.name != host:
            continue
        name = neutralise(h.name)
        if h.reachable is False:
            problems.append(f"{name}: Prometheus cannot scrape it ({', '.join(map(neutralise, h.instances))})")
        for _, e in sorted(h.engines.items()):
            engines.append(_engine_row(h, e))
            for m in e.models:
                size = human_bytes(int(m.size_bytes)) if m.size_bytes is not None else DASH
                where = f"GPU {human_bytes(int(m.vram_bytes))}" if m.vram_bytes else DASH
                model = neutralise(m.name) if m.count == 1 else f"{neutralise(m.name)} ({m.count:.0f})"
                loaded.append((name, neutralise(e.name), model, where, size, DASH,
                               f"{m.context:.0f}" if m.context else DASH))
        for f in h.findings:
            problems.append(f"{name}: {neutralise(str(f.get('engine') or ''))} "
                            f"{neutralise(str(f.get('kind', '')))} ×{float(str(f.get('count', 0))):.0f}")
        for a in h.alerts:
            problems.append(f"{name}: alert {neutralise(a.get('alertname', '?'))} firing")
    if host is None:
        problems += [f"alert {neutralise(a.get('alertname', '?'))} firing" for a in view.alerts]
    return engines, loaded, [one_line(p, 160) for p in problems]
