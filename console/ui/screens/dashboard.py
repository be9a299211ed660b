"""The screen enginedeck opens on: engines, loaded models, GPU and host, with sparklines.

Polling runs in workers (async for engines, a thread for NVML/psutil) into frozen snapshots; the screen only
swaps snapshots in and repaints a table when its rows actually changed, so an idle dashboard costs little.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from console.engines.base import Health
from console.logs.sanitize import neutralise
from console.ui.app import EnginesRefreshed
from console.ui.format import DASH, expires_in, human_bytes, human_duration, ms, pct, vram_split
from console.ui.widgets.spark import Spark

if TYPE_CHECKING:
    from console.engines.poll import EngineStatus
    from console.telemetry.gpu import GpuMonitor, GpuSnapshot
    from console.telemetry.host import HostMonitor, HostSnapshot
    from console.telemetry.processes import EngineProcess

PROCESS_SCAN_EVERY_S = 5.0  # /proc walks cost more than a telemetry sample; engines rarely come and go


def no_engine_message(ports: str, config_path: str) -> str:
    return (
        "No engine found.\n"
        f"Scanned 127.0.0.1 on the default ports ({ports}).\n"
        "Point enginedeck at one:  enginedeck --engine http://HOST:PORT\n"
        f"or add an [[engines]] entry (name, url) to {config_path}\n"
        "then press r to refresh."
    )


def health_text(status: EngineStatus) -> Text:
    styles = {Health.OK: "green", Health.LOADING: "yellow", Health.SLEEPING: "cyan", Health.DOWN: "red"}
    label = status.health.value
    return Text(label, style=styles.get(status.health, ""))


class DashboardScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "refresh", "Refresh", id="dashboard-refresh", tooltip="Rediscover and poll engines now"),
        Binding("e", "focus_table('engines')", "Engines", id="dashboard-engines", show=False),
        Binding("o", "focus_table('loaded')", "Loaded", id="dashboard-loaded", show=False),
    ]
    DEFAULT_CSS = """
    DashboardScreen #body { height: 1fr; }
    DashboardScreen DataTable { height: auto; max-height: 12; }
    DashboardScreen #columns { height: auto; }
    DashboardScreen #columns > Vertical { height: auto; }
    DashboardScreen #no-engine { color: $warning; }
    DashboardScreen.-narrow #columns { layout: vertical; }
    DashboardScreen #gpu-text, DashboardScreen #host-text { height: auto; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._rows: dict[str, tuple] = {}
        self._statuses: list[EngineStatus] = []
        self._gpu: GpuMonitor | None = None
        self._host: HostMonitor | None = None
        self._processes: list[EngineProcess] = []
        self._processes_at = 0.0
        self._tokens_seen: dict[str, tuple[float, float]] = {}  # engine -> (time, generation_tokens_total)

    def compose(self) -> ComposeResult:
        yield Header(icon="*" if self.app.has_class("-ascii") else "⭘")
        with VerticalScroll(id="body"):
            engines = Vertical(classes="panel", id="engines-panel")
            engines.border_title = "Engines"
            with engines:
                yield Static("Looking for engines…", id="no-engine")
                yield DataTable(id="engines", cursor_type="row", zebra_stripes=False)
            loaded = Vertical(classes="panel", id="loaded-panel")
            loaded.border_title = "Loaded models"
            with loaded:
                yield DataTable(id="loaded", cursor_type="row", zebra_stripes=False)
            with Horizontal(id="columns"):
                gpu = Vertical(classes="panel", id="gpu-panel")
                gpu.border_title = "GPU"
                with gpu:
                    yield Static("Reading NVML…", id="gpu-text")
                    yield Spark("util", top=100.0, id="spark-gpu")
                    yield Spark("vram", id="spark-vram")
                    yield Spark("tok/s", id="spark-toks")
                host = Vertical(classes="panel", id="host-panel")
                host.border_title = "Host"
                with host:
                    yield Static("Reading host…", id="host-text")
                    yield Spark("cpu", top=100.0, id="spark-cpu")
        yield Footer()

    def on_mount(self) -> None:
        engines = self.query_one("#engines", DataTable)
        engines.add_columns("engine", "kind", "version", "health", "poll", "run/wait", "KV")
        loaded = self.query_one("#loaded", DataTable)
        loaded.add_columns("engine", "model", "size", "where", "ctx", "expires/status")
        ui = self.app.ctx.config.ui  # type: ignore[attr-defined]
        self.set_interval(ui.poll_interval_s, self.poll_engines, name="poll-engines")
        self.set_interval(ui.telemetry_interval_s, self.poll_telemetry, name="poll-telemetry")
        self.poll_telemetry()

    # -- engines -------------------------------------------------------------------------------------
    def on_engines_refreshed(self, message: EnginesRefreshed) -> None:
        self.poll_engines()

    def action_refresh(self) -> None:
        self.app.refresh_engines()  # type: ignore[attr-defined]

    def action_focus_table(self, table_id: str) -> None:
        self.query_one(f"#{table_id}", DataTable).focus()

    @work(exclusive=True, group="dashboard-engines", exit_on_error=False)
    async def poll_engines(self) -> None:
        from console.engines.poll import poll_all

        registry = self.app.ctx.registry()  # type: ignore[attr-defined]
        entries = list(registry.entries)
        engines = [e.engine for e in entries if e.engine is not None]
        statuses = await poll_all(engines)
        by_name = {s.name: s for s in statuses}
        from console.engines.poll import EngineStatus

        for entry in entries:  # entries that could not even be built still show, with their error
            if entry.engine is None:
                by_name[entry.name] = EngineStatus(name=entry.name, url=entry.url, kind=entry.kind or "?",
                                                   error=entry.error)
        self._show_engines([by_name[e.name] for e in entries if e.name in by_name])

    def _show_engines(self, statuses: list[EngineStatus]) -> None:
        self._statuses = statuses
        no_engine = self.query_one("#no-engine", Static)
        if not statuses:
            from console.config import default_config_path
            from console.engines.detect import DEFAULT_PORTS

            cfg = self.app.ctx.config  # type: ignore[attr-defined]
            ports = ", ".join(str(p) for p in DEFAULT_PORTS) if cfg.discover else "discovery off"
            no_engine.update(Text(no_engine_message(ports, str(cfg.path or default_config_path()))))
            no_engine.display = True
        else:
            no_engine.display = False
        self.query_one("#engines", DataTable).display = bool(statuses)
        self.query_one("#loaded-panel").display = bool(statuses)
        now = time.time()
        engine_rows = []
        loaded_rows = []
        tok_rate = 0.0
        have_rate = False
        for s in statuses:
            m = s.metrics
            run_wait = DASH if m is None or m.running is None else f"{m.running:.0f}/{(m.waiting or 0):.0f}"
            info = s.info
            engine_rows.append((
                neutralise(s.name), s.kind, neutralise(info.version or DASH) if info else DASH,
                health_text(s) if s.error is None or info else Text("down", style="red"),
                ms(info.latency_ms / 1000) if info and info.latency_ms is not None else DASH,
                run_wait, pct(m.kv_cache_usage, ratio=True) if m else DASH,
            ))
            for lm in s.loaded:
                status = lm.status or expires_in(lm.expires_at)
                loaded_rows.append((neutralise(s.name), neutralise(lm.name), human_bytes(lm.size),
                                    vram_split(lm.size, lm.size_vram),
                                    str(lm.context_length) if lm.context_length else DASH, neutralise(status)))
            if m is not None and m.generation_tokens_total is not None:
                prev = self._tokens_seen.get(s.name)
                self._tokens_seen[s.name] = (now, m.generation_tokens_total)
                if prev is not None and now > prev[0]:
                    tok_rate += max(0.0, (m.generation_tokens_total - prev[1]) / (now - prev[0]))
                    have_rate = True
        self._update_table("engines", engine_rows)
        self._update_table("loaded", loaded_rows)
        self.query_one("#spark-toks", Spark).push(tok_rate if have_rate else None,
                                                  f"{tok_rate:.0f}" if have_rate else DASH)

    def _update_table(self, table_id: str, rows: list[tuple]) -> None:
        """Replace rows only when something changed: an unchanged table costs no repaint."""
        key = tuple(tuple(str(c) for c in r) for r in rows)
        if self._rows.get(table_id) == key:
            return
        self._rows[table_id] = key
        table = self.query_one(f"#{table_id}", DataTable)
        cursor = table.cursor_row
        with self.app.batch_update():
            table.clear()
            table.add_rows(rows)
            if rows:
                table.move_cursor(row=min(cursor, len(rows) - 1))

    # -- telemetry -----------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="dashboard-telemetry", exit_on_error=False)
    def poll_telemetry(self) -> None:
        from console.telemetry.gpu import GpuMonitor
        from console.telemetry.host import HostMonitor
        from console.telemetry.processes import engine_processes, ports_by_engine

        if self._gpu is None:
            self._gpu, self._host = GpuMonitor(), HostMonitor()
        gpu = self._gpu.sample()
        host = self._host.sample() if self._host else None
        if time.monotonic() - self._processes_at > PROCESS_SCAN_EVERY_S:
            self._processes = engine_processes(ports_by_engine({s.name: s.url for s in self._statuses}))
            self._processes_at = time.monotonic()
        self.app.call_from_thread(self._show_telemetry, gpu, host)

    def _show_telemetry(self, gpu: GpuSnapshot, host: HostSnapshot | None) -> None:
        from console.telemetry.processes import owner_of

        lines = []
        if not gpu.available:
            lines.append(gpu.reason or "no NVIDIA GPU / NVML not available")
            self.query_one("#spark-gpu", Spark).push(None, DASH)
            self.query_one("#spark-vram", Spark).push(None, DASH)
        else:
            for g in gpu.gpus:
                power = f"{g.power_w:.0f}/{g.power_limit_w:.0f} W" if g.power_w and g.power_limit_w else DASH
                temp = f"{g.temp_c:.0f}°C" if g.temp_c is not None else DASH
                lines.append(f"{g.index} {neutralise(g.name)}  {pct(g.util_pct)}  "
                             f"{human_bytes(g.mem_used)}/{human_bytes(g.mem_total)}  {temp}  {power}")
                for p in g.processes:
                    owner = owner_of(p.pid, self._processes)
                    who = f"{owner.engine or owner.kind or owner.name}" if owner else "?"
                    lines.append(f"   pid {p.pid} {human_bytes(p.used_bytes)} → {neutralise(who)}")
            util = [g.util_pct for g in gpu.gpus if g.util_pct is not None]
            used = sum(g.mem_used or 0 for g in gpu.gpus)
            self.query_one("#spark-gpu", Spark).push(sum(util) / len(util) if util else None,
                                                     pct(sum(util) / len(util)) if util else DASH)
            self.query_one("#spark-vram", Spark).push(float(used), human_bytes(used))
        self._set_text("#gpu-text", "\n".join(lines))
        if host is not None:
            disk = "  ".join(f"{neutralise(d.path)} {human_bytes(d.free)} free" for d in host.disks)
            net = (f"net ↓{human_bytes(host.net_rx_bps)}/s ↑{human_bytes(host.net_tx_bps)}/s"
                   if host.net_rx_bps is not None else "net —")
            host_lines = [
                f"cpu {host.cpu_pct:.0f}% of {host.cpu_count}  load {host.load_avg[0]:.2f}",
                f"ram {human_bytes(host.mem_used)}/{human_bytes(host.mem_total)}  "
                f"swap {human_bytes(host.swap_used)}/{human_bytes(host.swap_total)}",
                f"disk {disk}", net,
            ]
            for p in self._processes:
                ports = ",".join(str(e.port) for e in p.listening) or DASH
                host_lines.append(f"{p.pid} {neutralise(p.engine or p.kind or p.name)} "
                                  f"rss {human_bytes(p.rss)} up {human_duration(p.uptime_s)} :{ports}")
            self._set_text("#host-text", "\n".join(host_lines))
            self.query_one("#spark-cpu", Spark).push(host.cpu_pct, f"{host.cpu_pct:.0f}%")

    def _set_text(self, selector: str, text: str) -> None:
        widget = self.query_one(selector, Static)
        if getattr(widget, "_last_text", None) != text:
            widget._last_text = text  # type: ignore[attr-defined]
            widget.update(Text(text))

    def on_unmount(self) -> None:
        if self._gpu is not None:
            self._gpu.close()

