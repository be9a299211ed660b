"""The exporter's HTTP side: prometheus_client's own server (a thread) answering each scrape with a fresh
collection made on the event loop, under the collector's deadline.

A scrape waits at most the deadline plus a margin for its collection; a collection still running then is
answered with what the last one found, marked by `enginedeck_scrape_stale 1`: never a hang.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as PromCollector
from prometheus_client.registry import CollectorRegistry

from console.config import split_listen
from console.errors import ConfigError
from console.watch.exposition import families

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from console.watch.collect import Collector, Snapshot

DEFAULT_LISTEN = "127.0.0.1:9464"  # 9464: the port Prometheus's registry of default ports gives enginedeck's kind
MARGIN_S = 1.0  # past the collection's own deadline, before a scrape stops waiting for it


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[v6]:PORT` for IPv6) -> (host, port); a clear error for anything else."""
    where = split_listen(text)
    if where is None or where[1] == 0:
        raise ConfigError(f"--listen {text!r} is not HOST:PORT", hint=f"e.g. --listen {DEFAULT_LISTEN}")
    return where



class ScrapeCollector(PromCollector):
    """A prometheus_client collector whose `collect` (called in the server's thread) asks the event loop for a
    snapshot and waits for it within the deadline."""

    def __init__(self, collector: Collector, loop: asyncio.AbstractEventLoop, *, host: str) -> None:
        self.collector = collector
        self.loop = loop
        self.host = host
        self.folded_total: dict[str, int] = {}
        self._lock = threading.Lock()  # folded_total is summed by one scrape at a time
        self.last: Snapshot | None = None

    def collect(self) -> Iterator[Metric]:
        future = asyncio.run_coroutine_threadsafe(self.collector.collect(), self.loop)
        stale = GaugeMetricFamily("enginedeck_scrape_stale", "1 when this answer repeats the last collection "
                                  "because the new one missed the deadline")
        snap: Snapshot | None
        try:
            snap = future.result(self.collector.deadline_s + MARGIN_S)
            stale.add_metric([], 0)
        except FutureTimeout:
            snap = self.last
            stale.add_metric([], 1)
        if snap is None:
            yield stale
            return
        self.last = snap
        with self._lock:
            yield from families(snap, host=self.host, folded_total=self.folded_total)
        yield stale


def serve(collector: Collector, loop: asyncio.AbstractEventLoop, *, host: str, port: int,
          host_name: str) -> tuple[WSGIServer, threading.Thread]:
    """Start prometheus_client's server on (host, port) in a thread; the caller runs `loop` and shuts it down."""
    from prometheus_client.exposition import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector(collector, loop, host=host_name))
    try:
        return start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                          hint="pick a free port with --listen HOST:PORT") from None
