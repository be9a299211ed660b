"""The screen enginedeck opens on: engines, loaded models, GPU and host, with sparklines.

Each engine is polled by its own worker with a deadline, so a slow or dead engine shows as down after the
deadline and never delays the others. Telemetry is sampled in a thread into frozen snapshots; the screen only
swaps snapshots in, and a table, text or sparkline repaints only when what it shows changed, so an idle
dashboard writes almost nothing to the terminal.

With `[fleet] prometheus_url` the engines and loaded-models tables show the whole fleet instead, a host column
first (console/ui/fleet_rows.py): one worker reads the fleet from Prometheus in a thread at the poll interval
(never more often than every 5 s: Prometheus's figures change only at its scrape), the local engines are not
polled, and a host filter (`h`) cycles through all hosts and each host. The GPU and host panels stay this box's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from console.logs.sanitize import neutralise
from console.present.format import DASH, human_bytes, human_duration, pct
from console.ui.base import DeckScreen
from console.ui.engine_rows import (
    ENGINE_COLUMNS,
    LOADED_COLUMNS,
    engine_row,
    fit_names,
    loaded_rows,
    poll_deadline,
    problem_line,
    table_room,
)
from console.ui.messages import EnginesRefreshed
from console.ui.textual_compat import set_cell_quietly
from console.ui.widgets.bars import KeyBar, TitleBar
from console.ui.widgets.notes import no_engine_message
from console.ui.widgets.spark import SparkBar

if TYPE_CHECKING:
    from textual.widgets import DataTable

    from console.engines.base import Engine
    from console.engines.poll import EngineStatus, FirstPoll
    from console.engines.pressure import InFlight
    from console.fitting import GpuOwners
    from console.telemetry.gpu import GpuSnapshot
    from console.telemetry.host import HostSnapshot
    from console.telemetry.processes import EngineProcess
    from console.watch.fleet import FleetView

# A /proc walk plus the socket table costs ~50 ms here; engines rarely come and go, so rescan only this often
# or when the set of engines changes.
PROCESS_SCAN_EVERY_S = 60.0
# Keyed by Health's values: the engine modules are imported after the first paint, not for it.
HEALTH_STYLES = {"ok": "green", "loading": "yellow", "sleeping": "cyan", "down": "red"}
Cell = str | Text  # what the tables hold


def show(widget: Widget, visible: bool) -> None:
    """Set `display` only when it changes: even an unchanged assignment costs a full layout pass."""
    if widget.display != visible:
        widget.display = visible


def styled_health(row: tuple[str, ...], at: int = 1) -> tuple[str | Text, ...]:
    """The engines table's row with its health in colour (column `at`: 2 in fleet mode, after the host)."""
    return (*row[:at], Text(row[at], style=HEALTH_STYLES.get(row[at], "")), *row[at + 1:])


def set_cell(table: DataTable[Cell], row: int, column: int, value: Cell) -> None:
    """Change one cell and repaint that cell alone. DataTable's own update_cell repaints the whole table, so every
    row of every engine would go to the terminal again for one changed figure (the poll column of ten engines
    changes several times a second). Textual has no public call for this (console/ui/textual_compat.py). A value
    wider than its column goes through update_cell, which widens the column (and so repaints everything)."""
    from rich.cells import cell_len
    from textual.coordinate import Coordinate

    row_key, column_key = table.coordinate_to_cell_key(Coordinate(row, column))
    if cell_len(str(value)) > table.columns[column_key].content_width \
            or not set_cell_quietly(table, row_key, column_key, value):
        table.update_cell(row_key, column_key, value, update_width=True)
        return
    table.refresh_coordinate(Coordinate(row, column))


def gpu_lines(gpu: GpuSnapshot, owners: Mapping[int, str]) -> list[str]:
    if not gpu.available:
        return [gpu.reason or "no NVIDIA GPU / NVML not available"]
    lines = []
    for g in gpu.gpus:
        power = f"{g.power_w:.0f}/{g.power_limit_w:.0f} W" if g.power_w and g.power_limit_w else DASH
        temp = f"{g.temp_c:.0f}°C" if g.temp_c is not None else DASH
        lines.append(f"{g.index} {neutralise(g.name)}  {pct(g.util_pct)}  "
                     f"{human_bytes(g.mem_used)}/{human_bytes(g.mem_total)}  {temp}  {power}")
        for p in g.processes:
            lines.append(f"  pid {p.pid} {human_bytes(p.used_bytes)} → {neutralise(owners.get(p.pid, '?'))}")
    return lines


def host_lines(host: HostSnapshot, processes: list[EngineProcess]) -> list[str]:
    # The CPU figure lives on its sparkline; everything here changes slowly, so the text rarely repaints.
    disk = "  ".join(f"{neutralise(d.path)} {human_bytes(d.free)} free" for d in host.disks)
    net = (f"net ↓{human_bytes(host.net_rx_bps)}/s ↑{human_bytes(host.net_tx_bps)}/s"
           if host.net_rx_bps is not None else "net —")
    lines = [
        f"ram {human_bytes(host.mem_used)}/{human_bytes(host.mem_total)}  "
        f"swap {human_bytes(host.swap_used)}/{human_bytes(host.swap_total)}  load {host.load_avg[0]:.1f}",
        f"disk {disk}", net,
    ]
    for p in processes:
        ports = ",".join(str(e.port) for e in p.listening) or DASH
        lines.append(f"{p.pid} {neutralise(p.engine or p.kind or p.name)} rss {human_bytes(p.rss)} "
                     f"up {human_duration(p.uptime_s)} :{ports}")
    return lines


class DashboardScreen(DeckScreen[None]):
    TITLE = "Dashboard"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "refresh", "Refresh", id="dashboard-refresh", tooltip="Rediscover and poll engines now"),
        Binding("e", "focus_table('engines')", "Engines", id="dashboard-engines", show=False),
        Binding("o", "focus_table('loaded')", "Loaded", id="dashboard-loaded", show=False),
        # Live (and in the key bar) only in fleet mode: check_action.
        Binding("h", "fleet_host", "Host", id="dashboard-host", tooltip="Show all hosts, then each host in turn"),
    ]
    DEFAULT_CSS = """
    DashboardScreen #body { height: 1fr; }
    DashboardScreen DataTable { height: auto; max-height: 12; }
    DashboardScreen #columns { height: auto; }
    DashboardScreen #columns > Vertical { height: auto; width: 1fr; }
    DashboardScreen #status-line { color: $warning; }
    DashboardScreen #engine-problems { color: $warning; height: auto; }
    DashboardScreen #findings-line { color: $warning; height: auto; }
    DashboardScreen #fleet-line, DashboardScreen #fleet-hosts { height: auto; }
    DashboardScreen #fleet-line.-stale { color: $warning; }
    DashboardScreen.-narrow #columns { layout: vertical; }
    DashboardScreen #gpu-text, DashboardScreen #host-text { height: auto; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._drawn: dict[str, object] = {}  # what each table/text shows now, to skip unchanged repaints
        self._order: list[str] = []  # engine names in registry order
        self._statuses: dict[str, EngineStatus] = {}
        # Per engine, what its answer puts on screen: its row, its loaded models' rows, its problem line. An answer
        # that changes none of them costs nothing more.
        self._rows: dict[str, tuple[tuple[str, ...], list[tuple[str, ...]], str | None]] = {}
        self._show_pending = False  # a repaint of the engines is queued: answers that arrive meanwhile join it
        self._listed = False  # the registry's list has been shown (before: "Looking for engines…")
        self._first_polled = False  # the engines were polled before the app started (console/ui/start.py)
        self._listed_again = False  # that first refresh's EnginesRefreshed has come
        self._polls: dict[str, asyncio.Task[None]] = {}  # engine name -> its poll in flight (or done)
        self._wake = asyncio.Event()
        self._samples = 0
        self._processes: list[EngineProcess] = []
        self._processes_key: frozenset[tuple[str, str]] | None = None
        self._processes_at = float("-inf")
        self._tokens_seen: dict[str, tuple[float, float]] = {}  # engine -> (polled_at, generation tokens total)
        self._tok_rates: dict[str, float] = {}
        self._tables: asyncio.Future[None] | None = None  # mounting the tables, then mounted
        self._gpu_seen = False  # the last sample found a GPU: sample in a thread
        self._vram: GpuOwners | None = None  # the GPU memory of each engine's processes (console/fitting.py)
        self._room = 0  # the width the tables' names were fitted to
        self._shown = asyncio.Event()  # clear while another screen is shown: no polls, no samples
        self._shown.set()  # a screen is built when it is first shown
        self._back = False  # shown again after a pause: poll and sample now
        from console.truth.watch import TruthWatch

        self._truth = TruthWatch()  # findings: loads seen between polls, `since` kept across ticks
        self._telemetry: tuple[GpuSnapshot, Mapping[int, str], list[EngineProcess]] | None = None  # the last
        # Fleet mode ([fleet] prometheus_url): the last good read, when it came, the filter, the last read's error.
        self._fleet_view: FleetView | None = None
        self._fleet_at = 0.0
        self._fleet_host: str | None = None  # None: all hosts
        self._fleet_error: str | None = None  # the last read's, failed (stale) or in part (some queries)
        self._fleet_stale = False
        self._fleet_every = 0.0  # the pace of the reads (console/ui/fleet_rows.py's fleet_interval)
        self._fleet_wake = asyncio.Event()

    @property
    def fleet_mode(self) -> bool:
        return self.ctx.config.fleet.prometheus_url is not None

    def compose(self) -> ComposeResult:
        # Engines that answered before the app started (console/ui/start.py) are in its first frame: the tables
        # come with the screen. Otherwise they join it with the first engine to show (_mount_tables).
        first = self.deck.first_poll if self.deck.engines_ready else None
        fleet = self.fleet_mode  # the fleet's tables are there from the start: no local engine is polled
        tables = self._tables_widgets(fleet=fleet) if fleet or (first is not None and first.answered()) else None
        yield TitleBar()
        with VerticalScroll(id="body"):
            engines = Vertical(classes="panel", id="engines-panel")
            engines.border_title = "Engines"
            with engines:
                if fleet:
                    yield Static("Reading the fleet from Prometheus…", id="fleet-line")
                yield Static("Looking for engines…", id="status-line")
                if tables is not None:
                    yield tables[0]
                yield Static("", id="engine-problems")
                yield Static("", id="findings-line")  # what engines do not say (console/truth)
            if tables is not None:
                yield tables[1]
                self._tables = asyncio.get_running_loop().create_future()
                self._tables.set_result(None)
            if fleet:  # every host's memory, load and GPUs; the GPU and Host panels below stay this box's
                hosts = Vertical(Static("", id="fleet-hosts"), classes="panel", id="fleet-hosts-panel")
                hosts.border_title = "Fleet hosts"
                yield hosts
            with Horizontal(id="columns"):
                gpu = Vertical(classes="panel", id="gpu-panel")
                gpu.border_title = "GPU"
                with gpu:
                    yield Static("Reading NVML…", id="gpu-text")
                host = Vertical(classes="panel", id="host-panel")
                host.border_title = "Host"
                with host:
                    yield Static("Reading host…", id="host-text")
        yield SparkBar([("cpu", "cpu", 100.0), ("gpu", "gpu", 100.0), ("vram", "vram", None), ("toks", "tok/s", None)],
                       id="sparks")
        yield KeyBar()

    async def on_mount(self) -> None:
        self.query_one("#engine-problems").display = False
        self.query_one("#findings-line").display = False
        ui = self.ctx.config.ui
        self._interval, self._telemetry_interval = ui.poll_interval_s, ui.telemetry_interval_s
        if self.fleet_mode:
            self.query_one("#status-line").display = False
            self._fleet_loop()
        elif self.deck.first_poll is not None and self.deck.engines_ready:
            await self._take_first_poll(self.deck.first_poll)
        # After the first paint: importing psutil/pynvml and starting NVML must not delay it.
        self.call_after_refresh(self._tick_loop)

    async def _take_first_poll(self, first: FirstPoll) -> None:
        """The polls started before the app: answers so far are drawn now (before the first frame), the others
        are awaited like the dashboard's own polls, and the next poll is one interval later."""
        self._order, self._listed = [e.name for e in first.refresh.result()], True
        self._show_pending = True  # drawn below, not through the queue
        answered = first.answered()
        for name, task in first.polls.items():
            if name in answered:
                self._take(answered[name])
            else:
                self._polls[name] = asyncio.create_task(self._await_poll(task), name=f"poll {name}")
        self._first_polled = True
        await self._show_engines()

    async def _await_poll(self, poll: asyncio.Task[EngineStatus]) -> None:
        self._take(await poll)

    @property
    def quiet(self) -> bool:
        """Nothing in flight: every engine has answered (or timed out) and telemetry has been shown once."""
        return (self.deck.engines_ready and self._samples > 0
                and all(t.done() for t in self._polls.values()) and set(self._order) <= set(self._statuses))

    # -- engines -------------------------------------------------------------------------------------
    def on_engines_refreshed(self, message: EnginesRefreshed) -> None:
        if self._first_polled and not self._listed_again:  # the refresh the first poll came from: polled already
            self._listed_again = True
            return
        self.poll_engines()

    def action_refresh(self) -> None:
        self._fleet_wake.set()
        self.deck.refresh_engines()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.fleet_mode if action == "fleet_host" else True

    # Nothing on the dashboard is seen by another screen (they get engines from the registry), so while it is
    # hidden it polls nothing and samples nothing; shown again, it polls and samples at once.
    def on_screen_suspend(self) -> None:
        self._shown.clear()

    def on_screen_resume(self) -> None:
        if not self._shown.is_set():
            self._back = True
            self._shown.set()
            self._wake.set()
            self._fleet_wake.set()

    def action_focus_table(self, table_id: str) -> None:
        if self._tables is not None and self._tables.done():
            self.query_one(f"#{table_id}").focus()

    def poll_engines(self) -> None:
        """Poll now rather than at the next tick."""
        self._wake.set()

    # One long-lived worker ticks for every engine and for the telemetry: at equal intervals (the usual case) one
    # wake-up serves both, and each wake-up costs Textual and asyncio work of its own. Each engine's poll is its
    # own task with a deadline, and a poll still in flight is not started again, so a dead engine never delays
    # the others; a telemetry sample that has to run in a thread does not hold the tick either.
    @work(exclusive=True, group="dashboard-tick", name="dashboard-tick-loop", exit_on_error=False)
    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_sample = loop.time()
        next_poll = next_sample + (self._interval if self._first_polled else 0)
        telemetry: asyncio.Task[None] | None = None
        try:
            while True:
                await self._shown.wait()
                if self._back:  # fresh figures for the person who came back
                    self._back = False
                    next_poll = next_sample = loop.time()
                now = loop.time()
                if self._wake.is_set() or now >= next_poll:
                    self._wake.clear()
                    if self.deck.engines_ready and not self.fleet_mode:
                        await self._start_polls()
                    next_poll = now + self._interval
                if now >= next_sample:
                    # A sample that may block (NVML, the slow host figures, the process scan) runs in a thread,
                    # as a task the tick does not wait for. The usual one, CPU and load on a box without a GPU,
                    # takes tens of microseconds and runs inline: a thread hop would cost more than the sample.
                    urls = frozenset((s.name, s.url) for s in self._statuses.values())
                    if telemetry is not None and not telemetry.done():
                        pass  # the last threaded sample is still running: skip this one
                    elif self._sample_may_block(urls):
                        telemetry = asyncio.create_task(self._take_sample(urls, in_thread=True))
                    else:
                        await self._take_sample(urls, in_thread=False)
                    next_sample = now + self._telemetry_interval
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(next_poll, next_sample) - loop.time()):
                        await self._wake.wait()
                    if not self._shown.is_set():
                        continue
        finally:
            for task in (*self._polls.values(), *([telemetry] if telemetry else [])):
                task.cancel()

    async def _start_polls(self) -> None:
        entries = list(self.ctx.registry().entries)
        order = [e.name for e in entries]
        if order != self._order or not self._listed:
            self._order, self._listed = order, True
            self._statuses = {n: s for n, s in self._statuses.items() if n in order}
            self._rows = {n: r for n, r in self._rows.items() if n in order}
            self._schedule_show()
        for entry in entries:
            if entry.engine is None:  # it could not even be built: show it with its error
                from console.engines.poll import EngineStatus

                self._take(EngineStatus(name=entry.name, url=entry.url, kind=entry.kind or "?",
                                        error=entry.error or "could not be set up"))
            elif (task := self._polls.get(entry.name)) is None or task.done():
                self._polls[entry.name] = asyncio.create_task(self._poll_one(entry.engine),
                                                              name=f"poll {entry.name}")

    async def _poll_one(self, engine: Engine) -> None:
        from console.engines.poll import poll_engine

        status = await poll_engine(engine, deadline_s=poll_deadline(self._interval),
                                   previous=self._statuses.get(engine.name))
        in_flight = None
        if self.ctx.config.gateways:  # running/waiting of an engine that counts none, from a gateway in front
            from console.gateway_feed import in_flight_of, read_gateways

            states = await read_gateways(self.ctx.config, engine=engine.name)
            in_flight = in_flight_of(states).get(engine.name)
        self._take(status, in_flight)

    def _take(self, status: EngineStatus, in_flight: InFlight | None = None) -> None:
        """An engine's answer: kept, and shown if it changes what its rows say (each engine's rows go on screen
        as it answers, never waiting for the others)."""
        if status.name not in self._order:
            return
        self._statuses[status.name] = status
        self._note_tokens(status)
        self._truth.observe(status)
        loaded = None
        if self._vram is not None and self._vram.by_engine.get(status.name):
            from console.fitting import attributed

            loaded = attributed(status.name, list(status.loaded), self._vram)
        rows = (engine_row(status, in_flight), loaded_rows(status, loaded), problem_line(status))
        if self._rows.get(status.name) != rows:
            self._rows[status.name] = rows
            self._schedule_show()

    def _schedule_show(self) -> None:
        if not self._show_pending:
            self._show_pending = True
            self.call_later(self._show_engines)

    def _note_tokens(self, s: EngineStatus) -> None:
        total = s.metrics.generation_tokens_total if s.metrics else None
        if total is None:
            self._tok_rates.pop(s.name, None)
            return
        prev = self._tokens_seen.get(s.name)
        self._tokens_seen[s.name] = (s.polled_at, total)
        if prev is not None and s.polled_at > prev[0]:
            self._tok_rates[s.name] = max(0.0, (total - prev[1]) / (s.polled_at - prev[0]))

    async def _show_engines(self) -> None:
        self._show_pending = False
        statuses = [self._rows[n] for n in self._order if n in self._rows]
        status_line = self.query_one("#status-line", Static)
        if not self.deck.engines_ready:
            self._set_text(status_line, "Looking for engines…")
        elif not self._order:
            config = self.ctx.config
            refresh = f"press {self.key_of('dashboard-refresh')} to refresh"
            self._set_text(status_line, no_engine_message(config, refresh=refresh))
        elif not statuses:
            self._set_text(status_line, f"Polling {len(self._order)} engine(s)…")
        show(status_line, not statuses)
        if statuses and self._tables is None:
            self._tables = asyncio.create_task(self._mount_tables())
        if self._tables is not None:
            await self._tables
            for widget_id in ("#engines", "#loaded-panel"):
                show(self.query_one(widget_id), bool(statuses))
            room = self._room = self._table_room()
            engines = fit_names([row for row, _, _ in statuses], ENGINE_COLUMNS, (0, 3), room)
            self._update_table("engines", [styled_health(row) for row in engines])
            self._update_table("loaded", fit_names([row for _, loaded, _ in statuses for row in loaded],
                                                   LOADED_COLUMNS, (0, 1), room, keep=5))  # ctx may go past the edge
        problems = [line for _, _, line in statuses if line]
        problems_widget = self.query_one("#engine-problems", Static)
        show(problems_widget, bool(problems))
        self._set_text(problems_widget, "\n".join(problems))
        # New answers: the findings may have changed (before any telemetry, those the polls alone show).
        self._show_findings(*(self._telemetry or (None, {}, [])))

    def _table_room(self) -> int:
        return table_room(self.app.size.width)

    async def _refit(self) -> None:
        if self._table_room() != self._room:
            if self.fleet_mode:
                self._show_fleet()
            else:
                await self._show_engines()

    def on_resize(self) -> None:
        """The names were fitted to the old width: fit them again (a repaint only where a row changed)."""
        if self._tables is not None and self._tables.done():
            self.call_after_refresh(self._refit)

    async def _mount_tables(self) -> None:
        """The engines and loaded-models tables join the screen with the first engine to show: hidden, they
        would still be styled for a first paint that has no engine to show."""
        engines, loaded_panel = self._tables_widgets()
        await self.query_one("#engines-panel").mount(engines, after="#status-line")
        await self.query_one("#body").mount(loaded_panel, after="#engines-panel")

    @staticmethod
    def _tables_widgets(*, fleet: bool = False) -> tuple[DataTable[Cell], Vertical]:
        from textual.widgets import DataTable

        from console.ui.fleet_rows import FLEET_ENGINE_COLUMNS, FLEET_LOADED_COLUMNS

        engines: DataTable[Cell] = DataTable(id="engines", cursor_type="row", zebra_stripes=False)
        engines.add_columns(*(FLEET_ENGINE_COLUMNS if fleet else ENGINE_COLUMNS))
        loaded: DataTable[Cell] = DataTable(id="loaded", cursor_type="row", zebra_stripes=False)
        loaded.add_columns(*(FLEET_LOADED_COLUMNS if fleet else LOADED_COLUMNS))
        loaded_panel = Vertical(loaded, classes="panel", id="loaded-panel")
        loaded_panel.border_title = "Loaded models"
        return engines, loaded_panel

    def _update_table(self, table_id: str, rows: Sequence[Sequence[Cell]]) -> None:
        """Repaint only what changed: an unchanged table costs nothing, a changed figure repaints its cell, and
        only a table whose number of rows changed is filled again."""
        key = tuple(tuple(str(c) for c in r) for r in rows)
        before = self._drawn.get(table_id)
        if before == key:
            return
        self._drawn[table_id] = key
        from textual.widgets import DataTable  # imported with the tables already (not for the first frame)

        table: DataTable[Cell] = self.query_one(f"#{table_id}", DataTable)
        if isinstance(before, tuple) and len(before) == len(key):
            for y, (old, new) in enumerate(zip(before, key, strict=True)):
                for x, (was, cell) in enumerate(zip(old, new, strict=True)):
                    if was != cell:
                        set_cell(table, y, x, rows[y][x])
            return
        cursor = table.cursor_row
        with self.app.batch_update():
            table.clear()
            table.add_rows(rows)
            if rows:
                table.move_cursor(row=min(cursor, len(rows) - 1))

    def _set_text(self, widget: Static, text: str) -> None:
        """Update a text only when it changed, and ask for a layout pass (~13 ms here) only when its height
        changed: the host panel's lines wrap at 80 columns, and a figure in them changes every few seconds."""
        key = widget.id or ""
        if self._drawn.get(key) == text:
            return
        self._drawn[key] = text
        widget.update(Text(text), layout=False)
        width = widget.content_size.width
        if not width or widget.get_content_height(self.size, self.app.size, width) != widget.content_size.height:
            widget.refresh(layout=True)

    # -- the fleet ([fleet] prometheus_url) --------------------------------------------------------------------
    # The read runs in a daemon thread with its own event loop (console/ui/fleet_rows.py's read_in_thread): the
    # five queries and the parse of a large fleet's answers never run on the UI loop. Reads never overlap (one
    # loop, awaited), and none starts while the dashboard is hidden.
    @work(exclusive=True, group="dashboard-fleet", name="dashboard-fleet-loop", exit_on_error=False)
    async def _fleet_loop(self) -> None:
        from console.errors import EngineDeckError
        from console.ui import fleet_rows

        while True:
            await self._shown.wait()
            self._fleet_wake.clear()
            cpu = 0.0  # the refresh's CPU seconds: the read's (in its thread) and the rows' (here), for its pace
            try:
                view, cpu = await fleet_rows.read_in_thread(self.ctx.config)
            except (EngineDeckError, OSError) as exc:
                self._take_fleet(None, str(exc))
            except Exception as exc:  # unforeseen: said on the fleet line, the loop goes on (rows kept, stale)
                self._take_fleet(None, f"{type(exc).__name__}: {exc}")
            else:
                started = time.thread_time()
                # Every query failed (Prometheus down or refusing): nothing was read, so nothing is replaced.
                failed = bool(view.errors) and not view.hosts
                self._take_fleet(None if failed else view, "; ".join(view.errors) or None)
                cpu += time.thread_time() - started
            interval = fleet_rows.fleet_interval(self._interval, cpu)
            if interval != self._fleet_every:  # the line says how often a large fleet is read
                self._fleet_every = interval
                self._show_fleet_line()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._fleet_wake.wait()

    def _take_fleet(self, view: FleetView | None, error: str | None) -> None:
        if view is not None:
            self._fleet_view, self._fleet_at = view, time.time()
        self._fleet_error = error
        self._fleet_stale = view is None  # this read failed: the rows shown are the last good read's
        self._show_fleet()

    def action_fleet_host(self) -> None:
        from console.ui.fleet_rows import host_names, next_host

        if self._fleet_view is not None:
            self._fleet_host = next_host(self._fleet_host, host_names(self._fleet_view))
            self._show_fleet()

    def _show_fleet_line(self) -> None:
        from console.logs.sanitize import one_line
        from console.ui.fleet_rows import FLEET_MIN_INTERVAL_S

        view, error = self._fleet_view, self._fleet_error  # Prometheus's words: one_line below neutralises them
        line = self.query_one("#fleet-line", Static)
        if view is None:
            text = f"fleet read failed: {error}" if error else "Reading the fleet from Prometheus…"
        else:
            shown = "all hosts" if self._fleet_host is None else neutralise(self._fleet_host)
            when = time.strftime("%H:%M:%S", time.localtime(self._fleet_at))
            every = self._fleet_every
            paced = f" (every {every:.0f} s)" if every > max(self._interval, FLEET_MIN_INTERVAL_S) else ""
            text = (f"{len(view.hosts)} host(s) from {neutralise(view.source)} at {when}{paced} · "
                    f"{self.key_of('dashboard-host')}: {shown}")
            if self._fleet_stale:
                text = f"fleet read failed: {error} · stale: {text}"
            elif error:
                text = f"{text} · missing: {error}"
        line.set_class(error is not None, "-stale")
        self._set_text(line, one_line(text, self._table_room()))

    def _show_fleet(self) -> None:
        from console.present.format import elide_end
        from console.ui.fleet_rows import FLEET_ENGINE_COLUMNS, FLEET_LOADED_COLUMNS, fleet_host_lines, fleet_rows

        view = self._fleet_view
        self._show_fleet_line()
        stale = view is not None and self._fleet_stale
        panel = self.query_one("#engines-panel")
        title = "Engines (stale)" if stale else "Engines"
        if panel.border_title != title:
            panel.border_title = title
        engines, loaded, problems = fleet_rows(view, self._fleet_host) if view is not None else ([], [], [])
        room = self._room = self._table_room()
        engines = fit_names(engines, FLEET_ENGINE_COLUMNS, (0, 1, 4), room)
        self._update_table("engines", [styled_health(row, at=2) for row in engines])
        self._update_table("loaded", fit_names(loaded, FLEET_LOADED_COLUMNS, (0, 1, 2), room, keep=6))
        widget = self.query_one("#engine-problems", Static)
        show(widget, bool(problems))
        self._set_text(widget, "\n".join(problems))
        hosts = fleet_host_lines(view, self._fleet_host) if view is not None else []
        show(self.query_one("#fleet-hosts-panel"), bool(hosts))
        self._set_text(self.query_one("#fleet-hosts", Static), "\n".join(elide_end(h, room) for h in hosts))

    # -- telemetry -----------------------------------------------------------------------------------
    async def _take_sample(self, urls: frozenset[tuple[str, str]], *, in_thread: bool) -> None:
        try:
            sample = await asyncio.to_thread(self._sample, urls) if in_thread else self._sample(urls)
        except OSError as exc:  # /proc vanished under psutil, a disk went away: say so, try again next tick
            self._set_text(self.query_one("#host-text", Static), f"host telemetry failed: {exc}")
        else:
            self._show_telemetry(*sample)
        self._samples += 1

    def _sample_may_block(self, urls: frozenset[tuple[str, str]]) -> bool:
        import time

        if self._samples == 0 or self._gpu_seen:
            return True  # the first sample imports psutil and pynvml and starts NVML; NVML calls can block
        scan_due = urls != self._processes_key or time.monotonic() - self._processes_at > PROCESS_SCAN_EVERY_S
        return scan_due or self.deck.host_monitor.slow_due

    def _sample(self, urls: frozenset[tuple[str, str]]
                ) -> tuple[GpuSnapshot, HostSnapshot, dict[int, str], list[EngineProcess], GpuOwners | None]:
        import time

        from console.telemetry.processes import owner_of, ports_by_engine

        app = self.deck
        gpu = app.gpu_monitor.sample()
        self._gpu_seen = gpu.available
        host = app.host_monitor.sample()
        now = time.monotonic()
        if urls != self._processes_key or now - self._processes_at > PROCESS_SCAN_EVERY_S:
            self._processes = app.scan_processes(ports_by_engine(dict(urls)))
            self._processes_key, self._processes_at = urls, now
        owners = {}
        for g in gpu.gpus:  # parents() reads /proc: done here, off the UI thread
            for p in g.processes:
                owner = owner_of(p.pid, self._processes)
                owners[p.pid] = (owner.engine or owner.kind or owner.name) if owner else "?"
        vram = None
        if gpu.available:  # whose VRAM each engine process holds, for the models the engines do not report
            from console.fitting import gpu_owners

            vram = gpu_owners(dict(urls), gpu, self._processes)
        return gpu, host, owners, list(self._processes), vram

    def _show_telemetry(self, gpu: GpuSnapshot, host: HostSnapshot, owners: Mapping[int, str],
                        processes: list[EngineProcess], vram: GpuOwners | None = None) -> None:
        if vram != self._vram:  # the loaded models' VRAM changed hands: their rows are derived again
            self._vram = vram
            for status in list(self._statuses.values()):
                self._take(status)
        self._set_text(self.query_one("#gpu-text", Static), "\n".join(gpu_lines(gpu, owners)))
        sparks = self.query_one("#sparks", SparkBar)
        if gpu.available:
            util = [g.util_pct for g in gpu.gpus if g.util_pct is not None]
            mean = sum(util) / len(util) if util else None
            used = sum(g.mem_used or 0 for g in gpu.gpus)
            sparks.push("gpu", mean, pct(mean))
            sparks.push("vram", float(used), human_bytes(used))
        else:
            sparks.set_shown("gpu", False)
            sparks.set_shown("vram", False)
        sparks.push("cpu", host.cpu_pct, f"{host.cpu_pct:.0f}% of {host.cpu_count}")
        if self._tok_rates:  # here, once a tick: not once per engine that answers
            rate = sum(self._tok_rates.values())
            sparks.push("toks", rate, f"{rate:.0f}")
        self._set_text(self.query_one("#host-text", Static), "\n".join(host_lines(host, processes)))
        self._telemetry = (gpu, owners, processes)
        self._show_findings(gpu, owners, processes)

    def on_unmount(self) -> None:
        self._truth.close()

    # -- findings (console/truth): each telemetry tick, from what the dashboard already holds ---------------
    def _show_findings(self, gpu: GpuSnapshot | None, owners: Mapping[int, str],
                       processes: list[EngineProcess]) -> None:
        from console.present.findings import LIST_FROM_ROWS, findings_lines

        found = self._truth.check(list(self._statuses.values()), self.ctx.config, gpu, owners, processes,
                                  self.deck.store)
        # At 80x24 one line (the count and the first); a taller terminal lists them. Elided, never wrapped: the first
        # frame (console/ui/start.py) draws the same lines in the same place.
        lines = findings_lines(found, collapsed=self.app.size.height < LIST_FROM_ROWS, width=self._table_room())
        widget = self.query_one("#findings-line", Static)
        show(widget, bool(lines))
        self._set_text(widget, "\n".join(lines))
