"""The traffic screen: the requests going through a gateway on this box, live (docs/gateway.md, "Live view").

It follows one gateway's live socket (console/gateway/live.py): the requests in flight (client, model, waiting for
the first byte or streaming, elapsed, TTFT, chunks and chunks/s so far), the last finished ones with status, outcome
and figures, and the requests per client in the last minute. `g` moves to the next running gateway, `r` looks for
gateways again. Beside them, the engine's own queue where it exposes one (running/waiting from its /metrics,
llama.cpp's slots, KV cache): the engine behind the gateway's upstream URL (its config when it is configured) is
polled once per poll interval by a worker of its own, never added to the app's registry.

Calm: the gateway sends events only while requests flow (progress at most twice a second), and the screen repaints
at most REPAINT_S after an event, so with nothing flowing it costs nothing. Hidden, it stops following (its worker
is cancelled) and catches up with a fresh snapshot when shown again.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from console.logs.sanitize import one_line
from console.ui.base import DeckScreen
from console.ui.engine_rows import poll_deadline
from console.ui.widgets.bars import KeyBar, TitleBar

if TYPE_CHECKING:
    from console.engines.poll import EngineStatus

REPAINT_S = 0.25
FINISHED_ROWS = 50
RATE_WINDOW_S = 60.0


def _ms(value: object) -> str:
    return "—" if not isinstance(value, int | float) else f"{value:.0f}"


def engine_queue(status: EngineStatus) -> str:
    """One line: the engine's own running/waiting, slots and KV cache (console/engines/pressure.py), or why it
    shows none."""
    from console.engines.pressure import pressure_of

    who = f"engine {status.name} ({status.kind})"
    if status.error and status.info is None:
        return f"{who}: {status.error}"
    p = pressure_of(status)  # the engine's own figures only: the gateway's count is the list below
    shown = [f"{label} {p.value(name):.0f}{unit}" for name, label, unit in
             (("running", "running", ""), ("waiting", "waiting", ""), ("kv_cache_pct", "KV cache", "%"))
             if p.value(name) is not None]
    busy, total = p.value("slots_busy"), p.value("slots_total")
    if busy is not None and total is not None:
        shown.insert(2, f"slots {busy:.0f}/{total:.0f}")
    if not shown:
        return f"{who}: no queue of its own to show ({p.get('running').missing})"
    return f"{who}: " + " · ".join(shown)


def _cell(value: object, limit: int = 40) -> str:
    return one_line("—" if value in (None, "") else str(value), limit)


class TrafficScreen(DeckScreen[None]):
    TITLE = "Traffic"
    AUTO_FOCUS = "#flights"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "next_gateway", "Next gateway", id="traffic-next"),
        Binding("r", "reconnect", "Look again", id="traffic-reconnect",
                tooltip="Look for running gateways again and take a fresh snapshot"),
    ]
    DEFAULT_CSS = """
    TrafficScreen #head { height: 1; background: $panel; color: $text-muted; }
    TrafficScreen #engine-queue { height: 1; color: $text-muted; }
    TrafficScreen #flights { height: 1fr; min-height: 4; }
    TrafficScreen #finished-title { height: 1; color: $text-muted; }
    TrafficScreen #finished { height: 1fr; min-height: 4; }
    TrafficScreen #rates { height: 1; color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.sockets: list[Path] = []
        self.current = 0
        self.flights: dict[str, dict[str, Any]] = {}
        self.finished: deque[dict[str, Any]] = deque(maxlen=FINISHED_ROWS)
        self.arrivals: deque[tuple[float, str]] = deque(maxlen=10_000)
        self.head = ""
        self.repaints = 0
        self._repaint_due = False
        # What the tables show, to repaint only what changed.
        self._shown: tuple[list[tuple[str, ...]] | None, list[tuple[str, ...]] | None] = (None, None)

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Static("", id="head", markup=False)
        yield Static("", id="engine-queue", markup=False)
        yield DataTable(id="flights", cursor_type="row", zebra_stripes=False)
        yield Static("last finished", id="finished-title", markup=False)
        yield DataTable(id="finished", cursor_type="row")
        yield Static("", id="rates", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#flights", DataTable).add_columns("client", "model", "phase", "elapsed s", "ttft ms",
                                                          "chunks", "chunks/s")
        self.query_one("#finished", DataTable).add_columns("time", "client", "model", "status", "outcome",
                                                           "ttft ms", "ms", "tokens")
        self.find_and_follow()

    # -- hidden costs nothing ----------------------------------------------------------------------------------

    def on_screen_suspend(self) -> None:
        self.workers.cancel_group(self, "traffic")
        self.workers.cancel_group(self, "traffic-engine")

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.find_and_follow()

    # -- keys --------------------------------------------------------------------------------------------------

    def action_next_gateway(self) -> None:
        if len(self.sockets) > 1:
            self.current = (self.current + 1) % len(self.sockets)
            self.follow()

    def action_reconnect(self) -> None:
        self.find_and_follow()

    # -- following ---------------------------------------------------------------------------------------------

    def find_and_follow(self) -> None:
        from console.gateway.live import sockets

        config = self.ctx.config
        dirs = [g.log_dir or config.data_dir / "gateway" / g.name for g in config.gateways]
        self.sockets = sockets(dirs, config.data_dir)
        self.current = min(self.current, max(0, len(self.sockets) - 1))
        if not self.sockets:
            self.workers.cancel_group(self, "traffic")
            self.workers.cancel_group(self, "traffic-engine")
            self.query_one("#engine-queue", Static).update("")
            self._set_head("no gateway running on this box: start one with `enginedeck gateway` "
                           "(docs/gateway.md), then press r")
            return
        self.follow()

    def follow(self) -> None:
        self.flights.clear()
        self.finished.clear()
        self._follow(self.sockets[self.current])

    @work(exclusive=True, group="traffic", exit_on_error=False)
    async def _follow(self, path: Path) -> None:
        from console.gateway.live import ask

        try:
            async for event in ask(path, follow=True):
                self._apply(event)
        except (OSError, ValueError) as exc:
            self._set_head(f"lost the gateway at {path}: {exc}; press r to look again")
            return
        self._set_head(f"the gateway at {path} stopped; press r to look again")

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "snapshot":
            self.flights = {f["request_id"]: f for f in event.get("in_flight", [])}
            self.finished.clear()
            self.finished.extend(event.get("finished", []))
            self.arrivals.clear()
            now = time.monotonic()
            for client, n in event.get("requests_last_minute", {}).items():
                self.arrivals.extend([(now, client)] * min(int(n), 1000))
            self.head = f"gateway {event.get('gateway')} → {event.get('upstream')}"
            if isinstance(upstream := event.get("upstream"), str):
                self._watch_engine(upstream)
        elif kind == "start":
            self.flights[event["request_id"]] = event
            self.arrivals.append((time.monotonic(), event.get("client", "")))
        elif kind == "first_byte" and (f := self.flights.get(event["request_id"])):
            f["phase"], f["ttft_ms"] = "streaming", event.get("ttft_ms")
        elif kind == "progress":
            for f in event.get("in_flight", []):
                if f["request_id"] in self.flights:
                    self.flights[f["request_id"]] = f
        elif kind == "end":
            self.flights.pop(event.get("request_id", ""), None)
            self.finished.append(event)
        self._schedule()

    @work(exclusive=True, group="traffic-engine", exit_on_error=False)
    async def _watch_engine(self, url: str) -> None:
        """The engine's own queue: one bounded poll per poll interval, in this worker (never the UI's turn)."""
        import asyncio

        from console.engines.detect import detect
        from console.engines.poll import poll_engine
        from console.engines.registry import build_engine
        from console.errors import EngineDeckError
        from console.gateway_feed import upstream_config

        config = self.ctx.config
        cfg = upstream_config(config, url)
        line = self.query_one("#engine-queue", Static)
        while True:  # until the engine answers detection (an engine that is down now may be up later)
            try:
                kind = cfg.kind if cfg.kind != "auto" else (await detect(cfg.url, cfg=cfg)).kind
                engine = build_engine(cfg, kind, max_connections=2)
                break
            except EngineDeckError as exc:
                line.update(one_line(f"engine at {url}: {exc}", 200))
                await asyncio.sleep(config.ui.poll_interval_s)
        previous = None
        try:
            while True:
                previous = await poll_engine(engine, deadline_s=poll_deadline(config.ui.poll_interval_s),
                                             previous=previous)
                line.update(one_line(engine_queue(previous), 200))
                await asyncio.sleep(config.ui.poll_interval_s)
        finally:
            await engine.aclose()

    def _schedule(self) -> None:
        if not self._repaint_due:
            self._repaint_due = True
            self.set_timer(REPAINT_S, self._repaint)

    def _set_head(self, text: str) -> None:
        self.query_one("#head", Static).update(one_line(text, 200))

    def _repaint(self) -> None:
        self._repaint_due = False
        self.repaints += 1
        where = f" ({self.current + 1} of {len(self.sockets)}; g: next)" if len(self.sockets) > 1 else ""
        self._set_head(f"{self.head}: {len(self.flights)} in flight{where}")
        flights: list[tuple[str, ...]] = [(_cell(f.get("client")), _cell(f.get("model")), f.get("phase", ""),
                    f"{f.get('elapsed_s', 0):.1f}", _ms(f.get("ttft_ms")), str(f.get("chunks", 0)),
                    _ms(f.get("chunks_per_s"))) for f in self.flights.values()]
        finished: list[tuple[str, ...]] = [
            (str(d.get("timestamp", ""))[11:19], _cell(d.get("client")), _cell(d.get("model")),
                     str(d.get("status_code") or "—"), str(d.get("outcome", "")), _ms(d.get("ttft_ms")),
                     _ms(d.get("latency_ms")),
                     "—" if d.get("tokens_out") is None else f"{d.get('tokens_in') or 0}/{d['tokens_out']}")
                    for d in reversed(self.finished)]
        for table_id, rows, shown in (("#flights", flights, self._shown[0]), ("#finished", finished, self._shown[1])):
            if rows != shown:
                table = self.query_one(table_id, DataTable)
                table.clear()
                table.add_rows(rows)
        self._shown = (flights, finished)
        now = time.monotonic()
        rates: dict[str, int] = {}
        for t, client in self.arrivals:
            if now - t <= RATE_WINDOW_S:
                rates[client] = rates.get(client, 0) + 1
        self.query_one("#rates", Static).update(
            one_line("requests in the last minute: " + (", ".join(f"{c} {n}" for c, n in sorted(rates.items()))
                                                         or "none"), 200))
