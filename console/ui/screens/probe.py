"""The probe screen: pick engine, model, levels and SLO (and on `o` the open loop, bisection, the noise guard, the
verdict mode and energy); run the ladder or the rates with a live progress bar and a table that fills in level by
level; then plots of aggregate tok/s (or achieved rate and goodput) and TTFT p50/p90 with its interval, the max
usable level marked; the history of runs, and two runs compared with deltas (by rate for open loops).

The probe runs on its own event loop in a worker thread, so repainting this screen never delays a timestamp
(the probe still measures and reports its own lag). Progress comes back with `call_soon_threadsafe` (never
blocking the probe); each completed level is saved on the app's loop, where the store lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, ProgressBar, Select, Static, TabbedContent, TabPane

from console.config import EngineConfig
from console.errors import EngineDeckError, ProbeError
from console.logs.sanitize import neutralise, one_line
from console.present.format import elide_middle
from console.present.probe import (
    LEVEL_HEADERS,
    change,
    level_row,
    number,
    or_dash,
    steps,
    usable,
    verdict_lines,
)
from console.ui.calm import QuietWhenHidden
from console.ui.messages import EnginesRefreshed
from console.ui.screens.probe_options import ProbeOptions, ProbeOptionsDialog
from console.ui.widgets.bars import KeyBar, TitleBar

if TYPE_CHECKING:
    from console.engines.base import Engine
    from console.probe.figures import LevelFigures
    from console.probe.ladder import LevelProgress, Probe, ProbeResult
    from console.probe.params import ProbeParams
    from console.probe.report import RunView
    from console.telemetry.energy import EnergyMeter

HISTORY_LIMIT = 200
READ_ONLY = "read-only mode (--read-only): no probes (a probe loads the model and puts load on the engine)"
# The verdict first: at 80 columns the figures that answer "how many users" are in view, the detail is to the
# right (the table scrolls). (CLI header, TUI header); a header the CLI adds later goes at the end.
LEVEL_COLUMNS = (("C", "C"), ("SLO", "SLO"), ("SLO MET", "SLO MET 95%"), ("TOK/S", "TOK/S"), ("REQ/S", "REQ/S"),
                 ("ACHIEVED", "ACHIEVED"), ("GOODPUT", "GOODPUT"), ("p90", "TTFT p90"),
                 ("p90 95% CI", "p90 95% CI"), ("DECODE p10", "DECODE p10"), ("p10 95% CI", "p10 95% CI"),
                 ("ERR", "ERR"), ("OK", "OK"),
                 ("TTFT p50", "TTFT p50"), ("p99", "TTFT p99"), ("TPOT p50", "TPOT p50"), ("ITL p50", "ITL p50"),
                 ("ITL p99", "ITL p99"))
# The open loop answers "how many requests per second": the rate, what was offered, achieved (REQ/S) and met
# every SLO (GOODPUT) come first; ACHIEVED of the closed loop (requests in flight) is renamed, to the right.
OPEN_COLUMNS = (("C", "RATE"), ("SLO", "SLO"), ("SLO MET", "SLO MET 95%"), ("OFFERED", "OFFERED"),
                ("REQ/S", "ACHIEVED"), ("GOODPUT", "GOODPUT"), ("p90", "TTFT p90"), ("p90 95% CI", "p90 95% CI"),
                ("DECODE p10", "DECODE p10"), ("p10 95% CI", "p10 95% CI"), ("ERR", "ERR"), ("OK", "OK"),
                ("SEND LAG max", "SEND LAG max"), ("TOK/S", "TOK/S"), ("ACHIEVED", "IN FLIGHT"))
# The tab's widget that takes focus when escape leaves a form field.
TAB_FOCUS = {"tab-levels": "#levels-table", "tab-history": "#history", "tab-compare": "#compare"}
NAME_WIDTH = 24  # engine and model names in the history table, elided in the middle beyond this


def columns(open_loop: bool) -> tuple[tuple[str, str], ...]:
    return OPEN_COLUMNS if open_loop else LEVEL_COLUMNS


def level_order(open_loop: bool = False) -> list[int]:
    """Where each TUI column comes from in `level_row`."""
    known = [cli for cli, _ in columns(open_loop) if cli in LEVEL_HEADERS]
    return [LEVEL_HEADERS.index(h) for h in known] + [
        i for i, h in enumerate(LEVEL_HEADERS) if h not in known]


def level_headers(open_loop: bool = False) -> list[str]:
    labels = dict(columns(open_loop))
    return [labels.get(LEVEL_HEADERS[i], LEVEL_HEADERS[i]) for i in level_order(open_loop)]


def tui_level_row(fig: LevelFigures, passed: bool | None, open_loop: bool = False) -> list[str]:
    row = level_row(fig, passed)
    return [row[i] for i in level_order(open_loop)]


class ProbeScreen(QuietWhenHidden):
    TITLE = "Probe"
    AUTO_FOCUS = "#levels-table"  # not a form field: a digit typed on arrival switches screens
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run", "Run probe", id="probe-run"),
        Binding("c", "cancel", "Cancel", id="probe-cancel"),
        Binding("f", "form", "Form", id="probe-form", tooltip="Edit the model, levels and SLO (esc leaves)"),
        Binding("o", "options", "Options", id="probe-options",
                tooltip="Open loop and rates, bisection, noise guard, verdict mode, energy"),
        Binding("h", "history", "History", id="probe-history"),
        Binding("m", "mark", "Mark for compare", id="probe-mark"),
    ]
    DEFAULT_CSS = """
    ProbeScreen #labels, ProbeScreen #form { height: 1; }
    ProbeScreen #labels Static { color: $text-muted; }
    ProbeScreen .f-engine { width: 18; }
    ProbeScreen .f-model { width: 1fr; }
    ProbeScreen .f-levels { width: 14; }
    ProbeScreen .f-requests, ProbeScreen .f-max-tokens { width: 6; }
    ProbeScreen .f-slo { width: 1fr; }
    ProbeScreen #options { height: 1; color: $text-muted; padding: 0 1; }
    ProbeScreen #progress-row { height: 1; }
    ProbeScreen #bar { width: 32; }
    ProbeScreen #status { width: 1fr; padding: 0 1; }
    ProbeScreen #verdict { height: auto; max-height: 10; padding: 0 1; }
    ProbeScreen #plots { height: 1fr; }
    ProbeScreen #plots PlotextPlot { width: 1fr; }
    ProbeScreen #compare-head { height: auto; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.running = False
        self._probe_loop: asyncio.AbstractEventLoop | None = None
        self._probe_task: asyncio.Task[ProbeResult] | None = None
        self._view: RunView | None = None
        self._marked: int | None = None
        self._history_ids: list[int] = []
        self._probe_result: ProbeResult | None = None  # the live result of the probe running now, partial or not
        self._options = ProbeOptions()
        self._running_params: ProbeParams | None = None  # what the run in progress was asked (its table's judge)
        self._open_columns: bool | None = None  # which kind of run the levels table has columns for

    # -- layout -------------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        slo = self.ctx.config.slo
        yield TitleBar()
        with Horizontal(id="labels"):
            for name, label in (("engine", "engine"), ("model", "model"), ("levels", "levels"),
                                ("requests", "reqs"), ("max-tokens", "max tok"), ("slo", "SLO")):
                yield Static(label, classes=f"f-{name}")
        with Horizontal(id="form"):
            yield Select[str]([], prompt="engine", id="engine", compact=True, classes="f-engine")
            yield Input(placeholder="model name", id="model", compact=True, classes="f-model")
            yield Input("1,2,4,8,16,32", id="levels", compact=True, classes="f-levels")
            yield Input("20", id="requests", type="integer", compact=True, classes="f-requests",
                        tooltip="measured requests per level")
            yield Input("128", id="max-tokens", type="integer", compact=True, classes="f-max-tokens",
                        tooltip="max output tokens per request")
            yield Input(f"ttft_p90={slo.ttft_p90_s:g}s,decode_p10={slo.decode_p10_tok_s:g},"
                        f"errors={slo.max_error_rate:.0%}", id="slo", compact=True, classes="f-slo")
        yield Static(self._options_line(), id="options")
        with Horizontal(id="progress-row"):
            yield ProgressBar(total=1, show_eta=False, id="bar")
            yield Static(f"{self.key_of('probe-run')}: run · pick an engine and a model", id="status")
        with TabbedContent(initial="tab-levels", id="tabs"):
            with TabPane("Levels", id="tab-levels"):
                yield DataTable(id="levels-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="verdict")
            with TabPane("Plots", id="tab-plots"), Horizontal(id="plots"):
                from textual_plotext import PlotextPlot

                yield PlotextPlot(id="plot-tok")
                yield PlotextPlot(id="plot-ttft")
            with TabPane("History", id="tab-history"):
                yield DataTable(id="history", cursor_type="row", zebra_stripes=True)
            with TabPane("Compare", id="tab-compare"):
                yield Static("m on a run in History marks it; m on a second one compares them", id="compare-head")
                yield DataTable(id="compare", cursor_type="row", zebra_stripes=True)
        yield KeyBar()

    def on_mount(self) -> None:
        self._set_columns(open_loop=False)
        self.query_one("#history", DataTable).add_columns(
            "id", "started", "engine", "model", "status", "levels", "usable", "knee")
        self._compare_columns("concurrency")
        self._fill_engines()
        self.load_history()
        if self.deck.read_only:
            self._status("read-only mode (--read-only): probes are off")  # r says why

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return None if self.why_refused(action) else True

    def why_refused(self, action: str) -> str | None:
        """Why a key is greyed out; the app says it when the key is pressed anyway."""
        if action == "run" and self.deck.read_only:
            return READ_ONLY
        if action == "run" and self.running:
            return "a probe is running: c cancels it"
        if action == "cancel" and not self.running:
            return "no probe is running"
        return None

    # -- engines --------------------------------------------------------------------------------------------

    def _fill_engines(self) -> None:
        registry = self.ctx.registry()
        names = [e.name for e in registry.entries if e.engine is not None]
        select = self.query_one("#engine", Select)
        current = select.value
        select.set_options([(elide_middle(neutralise(n), 14), n) for n in names])  # the field is 18 wide
        if current in names:
            select.value = current
        elif names:
            select.value = names[0]

    def on_engines_refreshed(self, _message: EnginesRefreshed) -> None:
        self._fill_engines()

    @on(Select.Changed, "#engine")
    def _engine_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.suggest_model(event.value)

    @work(exclusive=True, group="probe-models", exit_on_error=False)
    async def suggest_model(self, name: str) -> None:
        await self._suggest(name)

    async def _suggest(self, name: str) -> None:
        """Fill the model field with the engine's first loaded (else listed) model, unless one is typed."""
        field = self.query_one("#model", Input)
        if field.value:
            return
        try:
            engine = await self.ctx.engine(name)
            models = [m.name for m in await engine.loaded_models()] or [m.name for m in await engine.list_models()]
        except EngineDeckError:
            return
        if models and not field.value:
            field.value = models[0]

    # Not in the probe-models group: the suggestion that a new screen starts for its engine would cancel it.
    @work(exclusive=True, group="probe-suggest-run", exit_on_error=False)
    async def _suggest_then_run(self, name: str) -> None:
        """r before the engine's model was suggested (the palette's "Run probe" on a screen opened just now)."""
        self._status("asking the engine for its models…")
        await self._suggest(name)
        self._run_from_form()

    # -- running --------------------------------------------------------------------------------------------

    def _status(self, text: str) -> None:
        self.query_one("#status", Static).update(Text(text))

    def _options_line(self) -> Text:
        return Text(f"{self._options.summary()} · {self.key_of('probe-options')}: options")

    def _params(self) -> tuple[str, str, ProbeParams, Any]:
        """The form and the options, read by the CLI's own parser (console/probe/params.py, probe/slo.py)."""
        from console.probe.slo import parse_slo

        engine = self.query_one("#engine", Select).value
        model = self.query_one("#model", Input).value.strip()
        if not isinstance(engine, str) or not model:
            raise EngineDeckError("pick an engine and type a model name first")
        params = self._options.params(levels=self.query_one("#levels", Input).value.strip() or None,
                                      requests=self.query_one("#requests", Input).value or "20",
                                      max_tokens=self.query_one("#max-tokens", Input).value or "128")
        slo = parse_slo(self.query_one("#slo", Input).value, self.ctx.config.slo)
        return engine, model, params, slo

    def action_options(self) -> None:
        self.app.push_screen(ProbeOptionsDialog(self._options), self._options_chosen)

    def _options_chosen(self, options: ProbeOptions | None) -> None:
        if options is not None:
            self._options = options
            self.query_one("#options", Static).update(self._options_line())
            # An open loop runs the options' rates: the levels field is greyed out (and tab passes it by).
            self.query_one("#levels", Input).disabled = options.loop == "open"

    def action_run(self) -> None:
        engine = self.query_one("#engine", Select).value
        if isinstance(engine, str) and not self.query_one("#model", Input).value.strip():
            self._suggest_then_run(engine)
        else:
            self._run_from_form()

    def _run_from_form(self) -> None:
        try:
            engine, model, params, slo = self._params()
        except EngineDeckError as exc:
            self._status(one_line(str(exc)))
            return
        self.run_probe(engine, model, params, slo, energy=self._options.energy)

    @work(exclusive=True, group="probe", exit_on_error=False)
    async def run_probe(self, engine_name: str, model: str, params: ProbeParams, slo: Any, *,
                        energy: bool = False) -> None:
        from console.probe.environment import engine_version, environment
        from console.probe.report import RunView
        from console.telemetry.energy import box_meter

        ctx = self.ctx
        try:
            meter = await box_meter() if energy else None  # no GPU to read: one line, nothing sent
            resolved = await ctx.engine(engine_name)
        except EngineDeckError as exc:
            self._status(one_line(str(exc)))
            return
        cfg = ctx.config.engine(resolved.name) or EngineConfig(
            name=resolved.name, url=resolved.base_url, kind=resolved.kind, timeouts=ctx.config.timeouts,
            limits=ctx.config.limits)
        store = self.deck.store
        self.running = True
        self._running_params = params
        self.refresh_bindings()
        self._reset_table(params.open_loop)
        self._status(f"starting {_name(model)} on {_name(resolved.name)}…")
        started = time.perf_counter()
        run_id: int | None = None
        version = None
        env: dict[str, Any] = {}
        status = "error"
        result: ProbeResult | None = None
        try:
            try:
                version, down = await engine_version(resolved), None
            except ProbeError as exc:  # down or silent: kept as an error run, as the CLI keeps it
                down = exc
            env = await environment(resolved, version)
            if store is not None:
                run_id = await store.probes.start(
                    engine=resolved.name, engine_kind=resolved.kind, engine_version=version, model=model,
                    params=params.to_dict(), slo=asdict(slo), environment=env)
            if down is not None:
                raise down
            result = await self._in_thread(cfg, resolved.kind, model, params, slo, run_id, meter)
            status = result.status
        except EngineDeckError as exc:
            self._status(one_line(str(exc)))
        finally:
            if result is None and self._probe_result is not None:
                result = self._probe_result
                status = result.status if result.status != "running" else "error"
            if store is not None and run_id is not None:
                with contextlib.suppress(EngineDeckError):
                    await store.probes.finish(run_id, status if status != "running" else "error",
                                              result.verdict.to_dict() if result and result.verdict else None)
            await self._audit(resolved.name, model, params, slo, status, time.perf_counter() - started)
            self.running = False
            self.refresh_bindings()
        if result is not None:
            self.show_view(RunView.from_result(result, run_id=run_id, engine_version=version, environment=env))
            self._status(f"{status}: {len(result.levels)} level(s)" + ("" if store is not None else
                         " (history is off: not saved)"))
        self.load_history()

    async def _audit(self, engine: str, model: str, params: ProbeParams, slo: Any, result: str,
                     duration_s: float) -> None:
        try:
            actions = await self.ctx.actions()
            if actions.audit is not None:
                await actions.audit.record("probe start", engine=engine, target=model,
                                           params={**params.to_dict(), "slo": asdict(slo)}, result=result,
                                           duration_s=duration_s)
        except EngineDeckError as exc:
            self.app.notify(f"audit trail not written: {one_line(str(exc))}", severity="warning", markup=False)

    def _partial_result(self) -> ProbeResult | None:
        """The live result, read through a call: the probe's thread sets it, which the type checker cannot see."""
        return self._probe_result

    async def _in_thread(self, cfg: EngineConfig, kind: str, model: str, params: ProbeParams, slo: Any,
                         run_id: int | None, meter: EnergyMeter | None = None) -> ProbeResult:
        """Run the probe on a fresh event loop in a worker thread; progress and saves come back to this loop."""
        from console.engines.registry import build_engine
        from console.probe.ladder import Probe
        from console.probe.workers import EngineSource

        ui_loop = asyncio.get_running_loop()
        store = self.deck.store
        self._probe_result = None

        def on_progress(p: LevelProgress) -> None:
            ui_loop.call_soon_threadsafe(self._on_progress, p)

        async def on_level(fig: LevelFigures) -> None:
            ui_loop.call_soon_threadsafe(self._add_level, fig)
            if store is not None and run_id is not None:
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
                    store.probes.save_level(run_id, fig.concurrency, fig.to_dict()), ui_loop))

        async def main() -> ProbeResult:
            engine: Engine = build_engine(cfg, kind, max_connections=params.connections)
            probe: Probe = Probe(engine, model, params, slo, source=EngineSource(cfg, kind), on_progress=on_progress,
                                 on_level=on_level, energy=meter)
            self._probe_result = probe.result
            self._probe_task = asyncio.current_task()
            self._probe_loop = asyncio.get_running_loop()
            try:
                return await probe.run()
            finally:
                await engine.aclose()

        def in_thread() -> ProbeResult | None:
            with contextlib.suppress(asyncio.CancelledError):
                return asyncio.run(main())
            return None

        try:
            outcome = await asyncio.to_thread(in_thread)
        finally:
            self._probe_loop = self._probe_task = None
        if outcome is None and (partial := self._partial_result()) is not None:
            return partial  # cancelled: the completed levels are kept
        if outcome is None:
            raise EngineDeckError("the probe was cancelled before it started")
        return outcome

    def action_cancel(self) -> None:
        loop, task = self._probe_loop, self._probe_task
        if loop is not None and task is not None:
            loop.call_soon_threadsafe(task.cancel)
            self._status("cancelling… (completed levels are kept)")

    def _on_progress(self, p: LevelProgress) -> None:
        bar = self.query_one("#bar", ProgressBar)
        bar.update(total=max(p.total, 1), progress=p.done)
        self._status(f"{p.label} {p.phase} {p.done}/{p.total} · errors {p.errors}")

    # -- showing runs -----------------------------------------------------------------------------------------

    def _set_columns(self, *, open_loop: bool) -> None:
        """The levels table's columns for a closed-loop run or an open-loop one (rate, offered, achieved first)."""
        table = self.query_one("#levels-table", DataTable)
        if self._open_columns != open_loop:
            table.clear(columns=True)
            table.add_columns(*level_headers(open_loop))
            self._open_columns = open_loop
        table.clear()

    def _reset_table(self, open_loop: bool = False) -> None:
        self._set_columns(open_loop=open_loop)
        self.query_one("#verdict", Static).update("")
        self.query_one("#bar", ProgressBar).update(total=1, progress=0)

    def _add_level(self, fig: LevelFigures) -> None:
        """A level as it completes, judged as the run will judge it (its SLO and verdict mode)."""
        from console.config import SLO
        from console.probe.slo import judge, parse_slo

        try:
            slo = parse_slo(self.query_one("#slo", Input).value, self.ctx.config.slo)
        except EngineDeckError:
            slo = SLO()
        mode = self._running_params.verdict if self._running_params else "pessimistic"
        self.query_one("#levels-table", DataTable).add_row(
            *tui_level_row(fig, judge(fig, slo, mode).passed, bool(self._open_columns)))

    def show_view(self, view: RunView) -> None:
        self._view = view
        self._set_columns(open_loop=view.open_loop)
        table = self.query_one("#levels-table", DataTable)
        for fig in view.levels:
            table.add_row(*tui_level_row(fig, view.passed(fig), view.open_loop))
        lines = [f"run {view.run_id if view.run_id is not None else '—'} · {_name(view.engine)} · "
                 f"{_name(view.model)} · {view.status}", *verdict_lines(view)]
        lines.extend(f"warning: {one_line(w)}" for w in view.warnings[:3])
        self.query_one("#verdict", Static).update(Text("\n".join(lines)))
        self._plot(view)

    def _plot(self, view: RunView) -> None:
        """Concurrency on a log2 axis (the ladder doubles; bisection levels fall between), or the open loop's rate;
        the max usable level is a vertical line; TTFT p90's 95% interval is drawn as its two ends."""
        from textual_plotext import PlotextPlot

        open_loop = any(f.phase == "open" for f in view.levels)
        levels = [f for f in view.levels if f.phase in (("open",) if open_loop else ("ladder", "bisection"))]
        xs = [(f.rate or 0.0) if open_loop else math.log2(f.concurrency) for f in levels]
        usable = view.verdict.max_rate if open_loop else view.verdict.max_usable_concurrency
        mark = f" · | max {'rate' if open_loop else 'usable'} {usable:g}" if usable is not None else ""
        tok = self.query_one("#plot-tok", PlotextPlot)
        ttft = self.query_one("#plot-ttft", PlotextPlot)
        for widget, title in ((tok, "req/s achieved / goodput" if open_loop else "aggregate tok/s"),
                              (ttft, "TTFT ms p50 / p90 (95% CI)")):
            widget.plt.clear_data()
            widget.plt.clear_figure()
            widget.plt.title(title + mark)
            widget.plt.xlabel("offered req/s" if open_loop else "concurrency")
            if xs:
                widget.plt.xticks(xs, [f.label for f in levels])
        if xs:
            if open_loop:
                tok.plt.plot(xs, [f.req_s or 0.0 for f in levels], marker="braille", label="achieved")
                tok.plt.plot(xs, [f.goodput or 0.0 for f in levels], marker="braille", label="goodput")
            else:
                tok.plt.plot(xs, [f.agg_tok_s or 0.0 for f in levels], marker="braille")
            ttft.plt.plot(xs, [(f.ttft_s.p50 if f.ttft_s else 0.0) * 1000 for f in levels], label="p50")
            ttft.plt.plot(xs, [(f.ttft_s.p90 if f.ttft_s else 0.0) * 1000 for f in levels], label="p90")
            for end, name in ((0, "p90 low"), (1, "p90 high")):
                ttft.plt.plot(xs, [(iv[end] if (iv := f.interval("ttft_s", "p90")) else 0.0) * 1000 for f in levels],
                              label=name, marker="dot")
            if usable is not None:
                for widget in (tok, ttft):
                    widget.plt.vline(usable if open_loop else math.log2(usable))
        tok.refresh()
        ttft.refresh()

    # -- history and compare ----------------------------------------------------------------------------------

    @work(exclusive=True, group="probe-history", exit_on_error=False)
    async def load_history(self) -> None:
        store = self.deck.store
        table = self.query_one("#history", DataTable)
        if store is None:
            return
        try:
            runs = await store.probes.recent(limit=HISTORY_LIMIT)
        except EngineDeckError as exc:
            self.app.notify(one_line(str(exc)), title="History", severity="error", markup=False)
            return
        table.clear()
        self._history_ids = [r.id for r in runs]
        for r in runs:
            verdict = r.verdict or {}
            table.add_row(str(r.id), time.strftime("%m-%d %H:%M", time.localtime(r.started_at)),
                          _name(r.engine), _name(r.model), r.status, steps(r.params or {}), usable(verdict),
                          or_dash(verdict.get("knee")))

    def action_history(self) -> None:
        self.query_one("#tabs", TabbedContent).active = "tab-history"
        self.query_one("#history", DataTable).focus()
        self.load_history()

    def _selected_run(self) -> int | None:
        table = self.query_one("#history", DataTable)
        if not self._history_ids or table.cursor_row < 0 or table.cursor_row >= len(self._history_ids):
            return None
        return self._history_ids[table.cursor_row]

    @on(DataTable.RowSelected, "#history")
    def _open_selected(self) -> None:
        if (rid := self._selected_run()) is not None:
            self._with_runs([rid], lambda views: self._open(views[0]))

    def _open(self, view: RunView) -> None:
        self.show_view(view)
        self.query_one("#tabs", TabbedContent).active = "tab-levels"

    def action_mark(self) -> None:
        rid = self._selected_run()
        if rid is None or self.query_one("#tabs", TabbedContent).active != "tab-history":
            self._status("m works on a run in the History tab (h)")
            return
        if self._marked is None or self._marked == rid:
            self._marked = rid
            self._status(f"run {rid} marked: m on another run compares them")
            return
        first, self._marked = self._marked, None
        self._with_runs([first, rid], self._compare)

    def _with_runs(self, ids: list[int], then: Callable[[list[RunView]], None]) -> None:
        self.run_worker(self._load_runs(ids, then), name="probe-load-runs", group="probe-load", exclusive=True,
                        exit_on_error=False)

    async def _load_runs(self, ids: list[int], then: Callable[[list[RunView]], None]) -> None:
        from console.probe.report import RunView

        store = self.deck.store
        if store is None:
            return
        views = []
        for rid in ids:
            run = await store.probes.get(rid)
            if run is None:
                self._status(f"run {rid} is gone")
                return
            views.append(RunView.from_stored(run))
        then(views)

    def _compare_columns(self, by: str) -> None:
        table = self.query_one("#compare", DataTable)
        table.clear(columns=True)
        if by == "rate":
            table.add_columns("rate", "TTFT p90 A", "B", "Δ", "achieved A", "B", "Δ", "goodput A", "B", "Δ",
                              "offered A", "B")
        else:
            table.add_columns("C", "TTFT p90 A", "B", "Δ", "tok/s A", "B", "Δ", "decode p10 A", "B", "Δ")

    def _compare(self, views: list[RunView]) -> None:
        """Two runs level by level: by concurrency, or by rate when both are open loops; one of each is a line."""
        from console.probe.report import compare_key, compare_rows

        a, b = views
        head = self.query_one("#compare-head", Static)
        self.query_one("#tabs", TabbedContent).active = "tab-compare"
        try:
            by = compare_key(a, b)
        except EngineDeckError as exc:
            self.query_one("#compare", DataTable).clear()
            head.update(Text(one_line(str(exc))))
            self._status(one_line(str(exc)))
            return
        head.update(Text(f"A = run {a.run_id}: {_name(a.engine)} · {_name(a.model)} · {_answer(a)}\n"
                         f"B = run {b.run_id}: {_name(b.engine)} · {_name(b.model)} · {_answer(b)}"))
        self._compare_columns(by)
        table = self.query_one("#compare", DataTable)
        for r in compare_rows(a, b):
            t = r["ttft_p90_s"]
            if by == "rate":
                k, d, o = r["req_s"], r["goodput"], r["offered_rate"]
                table.add_row(f"{r['rate']:g}/s", _ms(t["a"]), _ms(t["b"]), change(t["delta_pct"]),
                              number(k["a"], 2), number(k["b"], 2), change(k["delta_pct"]),
                              number(d["a"], 2), number(d["b"], 2), change(d["delta_pct"]),
                              number(o["a"], 2), number(o["b"], 2))
            else:
                k, d = r["agg_tok_s"], r["decode_p10_tok_s"]
                table.add_row(str(r["concurrency"]), _ms(t["a"]), _ms(t["b"]), change(t["delta_pct"]),
                              number(k["a"]), number(k["b"]), change(k["delta_pct"]),
                              number(d["a"]), number(d["b"]), change(d["delta_pct"]))

    def leave_field(self) -> None:
        """Escape in a form field: to the table of the tab shown (the tab strip on the plots)."""
        active = self.query_one("#tabs", TabbedContent).active
        selector = TAB_FOCUS.get(active, "#tabs Tabs")
        self.query_one(selector).focus()

    def action_form(self) -> None:
        self.query_one("#model", Input).focus()

    async def on_unmount(self) -> None:
        self.action_cancel()


def _name(name: str) -> str:
    """An engine or model name, neutralised and elided in the middle beyond NAME_WIDTH."""
    return elide_middle(neutralise(name), NAME_WIDTH)


def _answer(view: RunView) -> str:
    """A run's answer in the compare head: max usable concurrency, or max sustainable rate."""
    if view.open_loop:
        return f"max rate {usable(view.verdict.to_dict())}"
    return f"usable {or_dash(view.verdict.max_usable_concurrency)}"


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.0f} ms"
