"""The logs screen: several panes, side by side or stacked, each following one source (a file, a journald
unit, a command's output, a signed JSONL file, enginedeck's own audit trail).

Opens with a pane per engine that names a log_file or log_unit in the config, plus the audit trail. Keys act on
the focused pane: filter by level and regex, search next/previous, pause/follow, start/end, raw lines.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container
from textual.screen import Screen
from textual.widgets import Input

from console.errors import EngineDeckError
from console.logs.filter import LogFilter, compile_pattern
from console.logs.line import Level
from console.logs.sanitize import one_line
from console.logs.sources import FileSource
from console.logs.spec import SourceSpec, build_source, parse_spec
from console.ui.widgets.bars import KeyBar, TitleBar
from console.ui.widgets.log_pane import LogPane, LogView

MAX_PANES = 6
START_LINES = 500  # lines of history a new file or unit pane starts with
LEVEL_CYCLE: tuple[Level | None, ...] = (None, Level.INFO, Level.WARN, Level.ERROR)
PROMPTS = {"open": "source: PATH, journal:UNIT, cmd:COMMAND, audit:PATH or audit: (the trail)",
           "filter": "filter regex (empty: none)", "search": "search regex"}


class LogsScreen(Screen[None]):
    TITLE = "Logs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o", "prompt('open')", "Open source", id="logs-open"),
        Binding("x", "close_pane", "Close pane", id="logs-close"),
        Binding("l", "toggle_layout", "Layout", id="logs-layout"),
        Binding("v", "cycle_level", "Level", id="logs-level"),
        Binding("f", "prompt('filter')", "Filter", id="logs-filter"),
        Binding("slash", "prompt('search')", "Search", key_display="/", id="logs-search"),
        Binding("n", "search(True)", "Next", id="logs-next"),
        Binding("N", "search(False)", "Previous", key_display="N", id="logs-previous"),
        Binding("p", "toggle_follow", "Pause/follow", id="logs-follow"),
        Binding("g,home", "jump(False)", "Start", id="logs-start"),
        Binding("G,end", "jump(True)", "End", key_display="G", id="logs-end"),
        Binding("r", "toggle_raw", "Raw", id="logs-raw"),
        Binding("b", "older", "Older lines", id="logs-older"),
        Binding("escape", "leave_prompt", "Leave field", show=False, id="logs-leave"),
    ]
    DEFAULT_CSS = """
    LogsScreen #panes { layout: horizontal; height: 1fr; }
    LogsScreen #panes.-stacked { layout: vertical; }
    LogsScreen #prompt { dock: bottom; display: none; }
    LogsScreen #prompt.-open { display: block; }
    LogsScreen #empty { padding: 1 2; color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._prompt_mode = ""
        self._search: str | None = None
        self._count = 0

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Container(id="panes")
        yield Input(id="prompt")
        yield KeyBar()

    def on_mount(self) -> None:
        config = self.app.ctx.config
        specs = [SourceSpec("engine", e.name) for e in config.engines if e.log_file or e.log_unit]
        specs.append(SourceSpec("trail", ""))
        for spec in specs[:MAX_PANES]:
            self.open_pane(spec)

    # -- panes ----------------------------------------------------------------------------------------------

    @property
    def panes(self) -> list[LogPane]:
        return list(self.query(LogPane))

    def focused_pane(self) -> LogPane | None:
        node = self.focused
        while node is not None and not isinstance(node, LogPane):
            node = node.parent
        if isinstance(node, LogPane):
            return node
        panes = self.panes
        return panes[0] if panes else None

    def open_pane(self, spec: SourceSpec) -> bool:
        if len(self.panes) >= MAX_PANES:
            self.notify(f"at most {MAX_PANES} panes: close one first (x)", severity="warning")
            return False
        try:
            source = build_source(spec, config=self.app.ctx.config, lines=START_LINES, follow=True)
        except EngineDeckError as exc:
            self.notify(one_line(str(exc)), title="Logs", severity="error", markup=False)
            return False
        self._count += 1
        file = source if isinstance(source, FileSource) else None
        pane = LogPane(source.name, source.events, ascii_marks=self.app.has_class("-ascii"),
                       path=file.path if file else None, parser=file.parser if file else None,
                       id=f"pane-{self._count}")
        self.query_one("#panes").mount(pane)
        self.call_after_refresh(lambda: pane.view.focus())
        return True

    def action_close_pane(self) -> None:
        pane = self.focused_pane()
        if pane is not None:
            pane.remove()  # its worker is cancelled with it, which stops the source (and a command's process)

    def action_toggle_layout(self) -> None:
        self.query_one("#panes").toggle_class("-stacked")

    # -- view state of the focused pane ---------------------------------------------------------------------

    def _view(self) -> LogView | None:
        pane = self.focused_pane()
        return pane.view if pane is not None else None

    def action_cycle_level(self) -> None:
        view = self._view()
        if view is not None:
            current = view.filter.min_level
            nxt = LEVEL_CYCLE[(LEVEL_CYCLE.index(current) + 1) % len(LEVEL_CYCLE)]
            view.set_filter(LogFilter(nxt, view.filter.pattern))

    def action_toggle_follow(self) -> None:
        view = self._view()
        if view is None:
            return
        if view.follow:
            view.follow = False
        else:
            view.jump(end=True)

    def action_jump(self, end: bool) -> None:
        view = self._view()
        if view is not None:
            view.jump(end=end)

    def action_toggle_raw(self) -> None:
        view = self._view()
        if view is not None:
            view.raw = not view.raw

    def action_older(self) -> None:
        pane = self.focused_pane()
        if pane is not None and (why := pane.load_older()) is not None:
            self.notify(why, markup=False)

    def action_search(self, forward: bool) -> None:
        view = self._view()
        if view is None or not self._search:
            self.notify("search with / first", severity="warning")
            return
        if not view.search(compile_pattern(self._search, ignore_case=True), forward=forward):
            self.notify(f"no {'later' if forward else 'earlier'} match for {one_line(self._search, 60)}",
                        markup=False)

    # -- the prompt -----------------------------------------------------------------------------------------

    def action_prompt(self, mode: str) -> None:
        prompt = self.query_one("#prompt", Input)
        self._prompt_mode = mode
        prompt.placeholder = PROMPTS[mode]
        view = self._view()
        prompt.value = (view.filter.pattern.pattern if mode == "filter" and view and view.filter.pattern
                        else self._search or "" if mode == "search" else "")
        prompt.add_class("-open")
        prompt.focus()

    def action_leave_prompt(self) -> None:
        prompt = self.query_one("#prompt", Input)
        prompt.remove_class("-open")
        view = self._view()
        if view is not None:
            view.focus()

    @on(Input.Submitted, "#prompt")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        mode = self._prompt_mode
        self.action_leave_prompt()
        view = self._view()
        try:
            if mode == "open" and text:
                self.open_pane(parse_spec(text))
            elif mode == "filter" and view is not None:
                view.set_filter(LogFilter(view.filter.min_level, compile_pattern(text) if text else None))
            elif mode == "search" and text and view is not None:
                self._search = text
                self.action_search(True)
        except EngineDeckError as exc:
            self.notify(one_line(str(exc)), title="Logs", severity="error", markup=False)
