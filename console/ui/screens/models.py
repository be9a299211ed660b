"""Model management: every model of every engine, filtered by typing, with load / unload / swap / pull /
delete / details on keys.

Mutating actions go through `Actions` (timed, recorded, audited, refused under --read-only, read back from the
engine when they fail). An action the engine cannot do, that read-only mode forbids, or that would start while
another action runs on the same engine, stays in the footer greyed out and the status line says why. Actions on
different engines run side by side. `c` cancels the action running on the selected model's engine, after a
confirmation; the notification then says what the engine holds, read back from it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, ProgressBar, Static

from console.actions import ActionCancelledError
from console.engine_lock import ActionInProgressError
from console.engines.base import Engine, ModelInfo, Op
from console.errors import EngineDeckError
from console.logs.sanitize import neutralise, one_line
from console.present.format import DASH, elide_middle, human_bytes, ms
from console.ui.base import DeckScreen
from console.ui.messages import EnginesRefreshed
from console.ui.widgets.bars import KeyBar, TitleBar
from console.ui.widgets.dialogs import AskDialog, ChoiceDialog, ConfirmDialog, TextDialog

if TYPE_CHECKING:
    from console.actions import Actions
    from console.engines.base import PullProgress

KEEP_ALIVE_CHOICES = [("", "engine default"), ("5m", "5 minutes"), ("30m", "30 minutes"), ("1h", "1 hour"),
                      ("24h", "24 hours"), ("-1", "forever (until unloaded)")]
SORTS = ("name", "size", "modified")
MUTATING = {"load": Op.LOAD, "unload": Op.UNLOAD, "swap": Op.SWAP, "pull": Op.PULL, "delete": Op.DELETE}
LIST_DEADLINE_S = 10.0  # each engine's settle, list and loaded list: one that hangs costs this, then says so
T = TypeVar("T")
ENGINE_WIDTH, MODEL_WIDTH = 16, 32  # longer names are elided in the middle: the state column stays in view


@dataclass(frozen=True)
class Row:
    engine: Engine
    model: ModelInfo
    loaded: bool

    @property
    def key(self) -> str:
        return f"{self.engine.name}\x00{self.model.name}"


@dataclass(frozen=True)
class Running:
    """The action this screen runs on one engine, and the `Actions` that can cancel it."""

    verb: str
    model: str
    actions: Actions


class PullScreen(ModalScreen[None]):
    """Pull progress with bytes and rate. Escape asks before cancelling (y cancels, n goes on); a cancelled pull
    is read back from the engine and the notification says whether the model is there."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel pull", id="pull-cancel"),
        Binding("y", "confirm(True)", "Yes, cancel", id="pull-cancel-yes"),
        Binding("n", "confirm(False)", "No, go on", id="pull-cancel-no"),
    ]
    DEFAULT_CSS = """
    PullScreen { align: center middle; }
    PullScreen > Vertical { width: 72; max-width: 100%; height: auto; border: round $primary;
                            background: $surface; padding: 0 1; }
    .-ascii PullScreen > Vertical { border: ascii $primary; }
    """
    HINT = "esc: cancel the pull"
    ASK = "Cancel this pull?  y: yes, cancel it    n: no, go on"

    def __init__(self, actions: Actions, engine: Engine, model: str) -> None:
        super().__init__()
        self.actions, self.engine, self.model = actions, engine, model
        self._asking = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(f"Pulling {neutralise(self.model)} on {neutralise(self.engine.name)}"))
            yield ProgressBar(total=None, show_eta=False, id="pull-bar")
            yield Static("starting…", id="pull-status")
            yield Static(self.HINT, classes="muted", id="pull-hint")

    def on_mount(self) -> None:
        self.run_pull()

    @work(group="pull", exit_on_error=False)
    async def run_pull(self) -> None:
        started = time.monotonic()
        status = self.query_one("#pull-status", Static)
        bar = self.query_one("#pull-bar", ProgressBar)
        try:
            async for p in self.actions.pull(self.engine, self.model):
                self._show(p, bar, status, started)
        except ActionCancelledError as exc:
            self.app.notify(one_line(str(exc)), title="Pull cancelled", severity="warning", markup=False)
        except EngineDeckError as exc:
            self.app.notify(one_line(str(exc)), title="Pull failed", severity="error", markup=False)
        else:
            self.app.notify(f"pulled {neutralise(self.model)}", title="Pull", markup=False)
        self.dismiss(None)

    @staticmethod
    def _show(p: PullProgress, bar: ProgressBar, status: Static, started: float) -> None:
        text = neutralise(p.status)
        if p.total:
            bar.update(total=p.total, progress=p.completed or 0)
            rate = (p.completed or 0) / max(time.monotonic() - started, 1e-3)
            text += f"  {human_bytes(p.completed)} / {human_bytes(p.total)}  {human_bytes(rate)}/s"
        status.update(Text(text))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "confirm":
            return self._asking
        return True

    def action_cancel(self) -> None:
        self._ask(True)

    def action_confirm(self, yes: bool) -> None:
        self._ask(False)
        if yes and not self.actions.cancel(self.engine):
            self.app.notify("nothing to cancel: the pull has ended", markup=False)

    def _ask(self, asking: bool) -> None:
        self._asking = asking
        self.query_one("#pull-hint", Static).update(self.ASK if asking else self.HINT)
        self.refresh_bindings()


class ModelsScreen(DeckScreen[None]):
    TITLE = "Models"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", key_display="/", id="models-filter"),
        Binding("enter,i", "details", "Details", id="models-details"),
        Binding("l", "load", "Load", id="models-load"),
        Binding("u", "unload", "Unload", id="models-unload"),
        Binding("s", "swap", "Swap", id="models-swap"),
        Binding("g", "pull", "Pull", id="models-pull", tooltip="Download a model (Ollama)"),
        Binding("x", "delete", "Delete", id="models-delete"),
        Binding("c", "cancel_action", "Cancel action", id="models-cancel",
                tooltip="Cancel the action running on this engine (asks first)"),
        Binding("o", "sort", "Sort", id="models-sort"),
        Binding("r", "reload", "Refresh", id="models-refresh"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="models-clear"),
    ]
    DEFAULT_CSS = """
    ModelsScreen #filter { height: 3; }
    ModelsScreen #models { height: 1fr; }
    ModelsScreen #why { height: auto; color: $text-muted; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[Row] = []
        self._shown: list[Row] = []
        self._sort = 0
        self._busy_engines: dict[str, Running] = {}  # engine name -> the action running on it

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Input(placeholder="type to filter models (/)", id="filter")
        yield DataTable(id="models", cursor_type="row")
        yield Static("", id="why")
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one("#models", DataTable)
        table.add_columns("engine", "model", "state", "size", "quant", "ctx", "modified")  # state in view at 80
        table.focus()
        self.reload()

    # -- data ----------------------------------------------------------------------------------------
    def on_engines_refreshed(self, message: EnginesRefreshed) -> None:
        self.reload()

    def action_reload(self) -> None:
        self.deck.refresh_engines()

    @work(exclusive=True, group="models-load", exit_on_error=False)
    async def reload(self) -> None:
        import asyncio

        registry = self.ctx.registry()
        engines = [e.engine for e in registry.entries if e.engine is not None]

        async def one(engine: Engine) -> tuple[list[Row], str | None]:
            try:
                # Settled first, so the keys greyed out for this engine say what the server really allows.
                await asyncio.wait_for(engine.settle_capabilities(), timeout=LIST_DEADLINE_S)
                models = await asyncio.wait_for(engine.list_models(), timeout=LIST_DEADLINE_S)
                try:
                    loaded = {m.name for m in await asyncio.wait_for(engine.loaded_models(), timeout=LIST_DEADLINE_S)}
                except (EngineDeckError, TimeoutError):
                    loaded = set()
            except (EngineDeckError, TimeoutError) as exc:
                return [], f"{engine.name}: {str(exc) or 'timed out'}"  # asyncio's TimeoutError says nothing
            return [Row(engine, m, m.name in loaded or m.status == "loaded") for m in models], None

        results = await asyncio.gather(*(one(e) for e in engines))
        self._rows = [row for rows, _ in results for row in rows]
        problems = [p for _, p in results if p]
        if problems:
            self.notify(one_line("; ".join(problems)), title="Some engines did not answer", severity="warning",
                        markup=False)
        self._render_rows()

    def _render_rows(self) -> None:
        needle = self.query_one("#filter", Input).value.strip().lower()
        rows = [r for r in self._rows if needle in f"{r.engine.name} {r.model.name}".lower()]
        by = SORTS[self._sort]
        if by == "size":
            rows.sort(key=lambda r: r.model.size or 0, reverse=True)
        elif by == "modified":
            rows.sort(key=lambda r: r.model.modified_at.timestamp() if r.model.modified_at else 0, reverse=True)
        else:
            rows.sort(key=lambda r: (r.model.name.lower(), r.engine.name))
        self._shown = rows
        table = self.query_one("#models", DataTable)
        selected = self.selected
        with self.app.batch_update():
            table.clear()
            for r in rows:
                m = r.model
                state = "loaded" if r.loaded else (m.status or "")
                table.add_row(
                    elide_middle(neutralise(r.engine.name), ENGINE_WIDTH),
                    elide_middle(neutralise(m.name), MODEL_WIDTH), neutralise(state), human_bytes(m.size),
                    neutralise(m.quantization or DASH),
                    str(m.context_length or DASH), m.modified_at.strftime("%Y-%m-%d") if m.modified_at else DASH,
                    key=r.key)
            if selected is not None and selected in rows:
                table.move_cursor(row=rows.index(selected))
        table.border_subtitle = f"{len(rows)} of {len(self._rows)} · sorted by {by}"
        self._explain()

    @property
    def selected(self) -> Row | None:
        table = self.query_one("#models", DataTable)
        if not self._shown or table.cursor_row < 0 or table.cursor_row >= len(self._shown):
            return None
        return self._shown[table.cursor_row]

    # -- why an action is greyed out -----------------------------------------------------------------
    def _reason(self, action: str) -> str | None:
        if action not in MUTATING and action != "details":
            return None
        if action in MUTATING and self.deck.read_only:
            return "read-only mode (--read-only): no load, unload, swap, pull or delete"
        row = self.selected
        if row is None:
            return "no model selected"
        if action in MUTATING and (running := self._busy_engines.get(row.engine.name)) is not None:
            return (f"{running.verb} of {running.model} is running on {row.engine.name}: one action per engine "
                    "at a time (c: cancel it)")
        op = MUTATING.get(action, Op.SHOW)
        return row.engine.capabilities.reason(op)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_action":  # greyed out while there is nothing to cancel on this engine
            row = self.selected
            return True if row is not None and row.engine.name in self._busy_engines else None
        return None if self._reason(action) else True

    def _explain(self) -> None:
        reasons = {a: self._reason(a) for a in (*MUTATING, "details")}
        lines = sorted({r for r in reasons.values() if r})
        self.query_one("#why", Static).update(Text("\n".join(f"unavailable: {neutralise(r)}" for r in lines)))
        self.refresh_bindings()

    @on(DataTable.RowHighlighted)
    def _on_row(self) -> None:
        self._explain()

    @on(Input.Changed, "#filter")
    def _on_filter(self) -> None:
        self._render_rows()

    @on(Input.Submitted, "#filter")
    def _on_filter_done(self) -> None:
        self.query_one("#models", DataTable).focus()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#filter", Input).value = ""
        self.query_one("#models", DataTable).focus()

    def action_sort(self) -> None:
        self._sort = (self._sort + 1) % len(SORTS)
        self._render_rows()

    # -- actions -------------------------------------------------------------------------------------
    def action_details(self) -> None:
        if (row := self.selected) is not None:
            self._details(row)

    @work(group="models-details", exclusive=True, exit_on_error=False)  # a read: the newer one replaces
    async def _details(self, row: Row) -> None:
        try:
            d = await row.engine.show(row.model.name)
        except EngineDeckError as exc:
            self.notify(one_line(str(exc)), title="Details", severity="error", markup=False)
            return
        info = "\n".join(f"  {k}: {v}" for k, v in list(d.model_info.items())[:40])
        body = "\n".join([
            f"digest: {d.digest or DASH}", f"family: {d.family or DASH}", f"quantization: {d.quantization or DASH}",
            f"context length: {d.context_length or DASH}", f"capabilities: {', '.join(d.capabilities) or DASH}",
            "", "parameters:", d.parameters or DASH, "", "template:", d.template or DASH,
            "", "license:", (d.license or DASH)[:2000], "", "model info:", info or DASH,
        ])
        await self.app.push_screen_wait(TextDialog(f"{row.model.name} on {row.engine.name}", body))

    def action_load(self) -> None:
        if (row := self.selected) is not None:
            self._load(row)

    @work(group="models-action", exit_on_error=False)
    async def _load(self, row: Row) -> None:
        import asyncio

        from console.telemetry.gpu import estimate_fit

        gpu = await asyncio.to_thread(self.deck.gpu_monitor.sample)
        fit = estimate_fit(row.model.size, gpu)
        keep_alive: str | None = ""
        if row.engine.kind == "ollama":
            keep_alive = await self.app.push_screen_wait(ChoiceDialog(
                f"Load {row.model.name}: keep it loaded for", KEEP_ALIVE_CHOICES,
                hint=fit.text if fit.fits is not True else ""))
            if keep_alive is None:
                return
        elif fit.fits is False and not await self.app.push_screen_wait(
                ConfirmDialog(f"Load {row.model.name}?", "The VRAM estimate says it may not fit.", warning=fit.text)):
            return
        await self._run("load", row.engine, row.model.name,
                        lambda a: a.load(row.engine, row.model.name, keep_alive or None))

    def action_unload(self) -> None:
        if (row := self.selected) is not None:
            self._unload(row)

    @work(group="models-action", exit_on_error=False)
    async def _unload(self, row: Row) -> None:
        if await self.app.push_screen_wait(ConfirmDialog(
                f"Unload {row.model.name}?", f"Requests to it on {row.engine.name} will have to load it again.")):
            await self._run("unload", row.engine, row.model.name, lambda a: a.unload(row.engine, row.model.name))

    def action_swap(self) -> None:
        if (row := self.selected) is not None:
            self._swap(row)

    @work(group="models-action", exit_on_error=False)
    async def _swap(self, row: Row) -> None:
        loaded = [r for r in self._rows if r.engine is row.engine and r.loaded]
        old = loaded[0].model.name if loaded else None
        choices = [(r.model.name, r.model.name) for r in self._rows
                   if r.engine is row.engine and r.model.name != old]
        new = await self.app.push_screen_wait(ChoiceDialog(
            f"Swap {old or '(nothing loaded)'} for…", choices,
            hint="unload, load and first-token times are measured; the old model comes back if the new fails"))
        if new is None:
            return
        result = await self._run("swap", row.engine, new, lambda a: a.swap(row.engine, old, new))
        if result is None:
            return
        if result.ok:
            self.notify(f"unload {ms(result.unload_s)} · load {ms(result.load_s)} · first token "
                        f"{ms(result.first_token_s)}", title=f"Swapped to {neutralise(new)}", markup=False)
        else:
            back = (f"{neutralise(old)} is back" if old and result.loaded_now and old in result.loaded_now
                    else "the old model is not loaded")
            self.notify(f"{one_line(result.error or '')}; {back} (verified: {one_line(result.outcome or '?')})",
                        title="Swap failed", severity="error", timeout=15, markup=False)

    def action_pull(self) -> None:
        if (row := self.selected) is not None:
            self._pull(row)

    @work(group="models-action", exit_on_error=False)
    async def _pull(self, row: Row) -> None:
        name = await self.app.push_screen_wait(AskDialog(
            f"Pull a model onto {row.engine.name}", value=row.model.name,
            hint="a name from the engine's library, e.g. llama3.2:1b    enter: pull    esc: cancel"))
        if not name:
            return
        actions = await self.ctx.actions()
        with self._holding(row.engine, "pull", name, actions):
            await self.app.push_screen_wait(PullScreen(actions, row.engine, name))
        self.reload()

    def action_delete(self) -> None:
        if (row := self.selected) is not None:
            self._delete(row)

    @work(group="models-action", exit_on_error=False)
    async def _delete(self, row: Row) -> None:
        if await self.app.push_screen_wait(ConfirmDialog(
                f"Delete {row.model.name} from {row.engine.name}?", "The files are removed from disk.",
                warning="This cannot be undone.")):
            await self._run("delete", row.engine, row.model.name, lambda a: a.delete(row.engine, row.model.name))

    def action_cancel_action(self) -> None:
        if (row := self.selected) is not None and (running := self._busy_engines.get(row.engine.name)) is not None:
            self._cancel(row.engine, running)

    @work(group="models-cancel", exit_on_error=False)
    async def _cancel(self, engine: Engine, running: Running) -> None:
        """Cancelling is an action of its own: asked for, confirmed, then done through `Actions.cancel`. The
        action's worker reports the outcome (read back from the engine) when its engine call has stopped."""
        if not await self.app.push_screen_wait(ConfirmDialog(
                f"Cancel the {running.verb} of {running.model} on {engine.name}?",
                "enginedeck stops waiting for it, then reads back what the engine holds and records that. The engine "
                "may finish what it has already started.")):
            return
        if not running.actions.cancel(engine):
            self.notify(f"nothing to cancel: the {running.verb} of {neutralise(running.model)} has ended",
                        markup=False)

    @contextmanager
    def _holding(self, engine: Engine, verb: str, model: str, actions: Actions) -> Iterator[None]:
        """Mark `engine` busy on this screen while the action runs (keys greyed out, `c` offered)."""
        self._busy_engines[engine.name] = Running(verb, model, actions)
        self._explain()
        try:
            yield
        finally:
            del self._busy_engines[engine.name]
            self._explain()

    async def _run(self, verb: str, engine: Engine, model: str, call: Callable[[Actions], Awaitable[T]]) -> T | None:
        """One action, one per engine: what `call` returned, None when it was refused or failed (said in a notice)."""
        if (running := self._busy_engines.get(engine.name)) is not None:  # a key pressed before the footer caught up
            self.notify(f"{running.verb} of {neutralise(running.model)} is still running on {neutralise(engine.name)}",
                        title=f"{verb} refused", severity="warning", markup=False)
            return None
        self.query_one("#why", Static).update(Text(f"{verb} {neutralise(model)}…"))
        try:
            actions = await self.ctx.actions()
            with self._holding(engine, verb, model, actions):
                started = time.monotonic()
                result = await call(actions)
            if verb != "swap":
                self.notify(f"{verb} {neutralise(model)} in {ms(time.monotonic() - started)}", markup=False)
            return result
        except ActionCancelledError as exc:
            self.notify(one_line(str(exc)), title=f"{verb} cancelled", severity="warning", timeout=15, markup=False)
            return None
        except ActionInProgressError as exc:  # held by another enginedeck process (a CLI command, another TUI)
            self.notify(one_line(str(exc)), title=f"{verb} refused", severity="warning", timeout=10, markup=False)
            return None
        except EngineDeckError as exc:
            self.notify(one_line(str(exc)), title=f"{verb} failed", severity="error", timeout=10, markup=False)
            return None
        finally:
            self.reload()
