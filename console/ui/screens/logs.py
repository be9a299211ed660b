"""The logs screen: several panes, each following one source (a file, a journald unit, a command's output, a
signed JSONL file, enginedeck's own audit trail).

Opens with a pane per engine that names a log_file or log_unit in the config, plus the audit trail. Keys act on
the focused pane: filter by level and regex, search next/previous, pause/follow, start/end, raw lines, the
whole of a line.

Layout: below `WIDE_COLUMNS` (80x24 over SSH) one pane at a time fills the screen, with a line naming every pane
(`!` on one with new warnings) and tab to the next. Two panes side by side at 80 columns leave each 36
columns, less than a vLLM line's prefix and message; stacked, two panes get 8 rows each and three get 5. One
pane at a time keeps 78 columns by 18 rows for the log a person is reading. `l` cycles one / stacked / side
by side; from `WIDE_COLUMNS` the panes start side by side.

A screen that is not shown costs nothing: on suspend every pane pauses its source (no reads, no polls, no
repaints); on resume each catches up from where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container
from textual.widgets import Input, Static

from console.errors import EngineDeckError
from console.logs.filter import LogFilter, compile_pattern
from console.logs.line import Level, LogLine
from console.logs.sanitize import one_line
from console.logs.spec import SourceSpec, build_source, parse_spec
from console.ui.base import DeckScreen
from console.ui.widgets.bars import KeyBar, TitleBar
from console.ui.widgets.dialogs import TextDialog
from console.ui.widgets.log_pane import MAX_PANE_LINES, LogPane, LogView, elide_middle

if TYPE_CHECKING:
    from textual.dom import DOMNode

MAX_PANES = 6
START_LINES = 500  # lines of history a new file or unit pane starts with
WIDE_COLUMNS = 120  # from this width the panes start side by side; below it, one at a time
LAYOUTS = ("single", "stacked", "side")
LEVEL_CYCLE: tuple[Level | None, ...] = (None, Level.INFO, Level.WARN, Level.ERROR)
PROMPTS = {"open": "PATH, journal:UNIT, cmd:COMMAND, audit:PATH or audit: (the trail)",
           "filter": "regex (empty: no filter)", "search": "regex"}
PROMPT_TITLES = {"open": "Open a source", "filter": "Filter the pane", "search": "Search the pane"}


def pane_of(node: DOMNode | None) -> LogPane | None:
    """The pane a widget is in, if any."""
    while node is not None and not isinstance(node, LogPane):
        node = node.parent
    return node if isinstance(node, LogPane) else None


class LogsScreen(DeckScreen[None]):
    TITLE = "Logs"
    BINDINGS: ClassVar[list[BindingType]] = [
        # First, so the key bar shows it first while the field is open (and only then: check_action).
        Binding("escape", "leave_prompt", "Leave field", id="logs-leave"),
        Binding("o", "prompt('open')", "Open", id="logs-open", tooltip="Open a source in a new pane"),
        Binding("tab", "next_pane(1)", "Next pane", id="logs-next-pane"),
        Binding("shift+tab", "next_pane(-1)", "Previous pane", show=False, id="logs-previous-pane"),
        Binding("x", "close_pane", "Close", id="logs-close", tooltip="Close the pane (a command pane stops it)"),
        Binding("v", "cycle_level", "Level", id="logs-level"),
        Binding("f", "prompt('filter')", "Filter", id="logs-filter"),
        Binding("slash", "prompt('search')", "Search", key_display="/", id="logs-search"),
        Binding("n", "search(True)", "Next", id="logs-next"),
        Binding("N", "search(False)", "Previous", key_display="N", id="logs-previous"),
        Binding("enter", "show_line", "Line", id="logs-line", tooltip="The selected line whole, with its fields"),
        Binding("l", "cycle_layout", "Layout", id="logs-layout"),
        Binding("p", "toggle_follow", "Pause/follow", id="logs-follow"),
        Binding("g", "jump(False)", "Start", id="logs-start"),
        Binding("G", "jump(True)", "End", key_display="G", id="logs-end"),
        Binding("r", "toggle_raw", "Raw", id="logs-raw"),
        Binding("b", "older", "Older lines", id="logs-older"),
    ]
    DEFAULT_CSS = """
    LogsScreen #strip { height: 1; display: none; background: $panel; color: $text-muted; }
    LogsScreen #strip.-shown { display: block; }
    LogsScreen #panes { layout: horizontal; height: 1fr; }
    LogsScreen #panes.-stacked { layout: vertical; }
    LogsScreen #panes.-single LogPane { display: none; }
    LogsScreen #panes.-single LogPane.-current { display: block; }
    LogsScreen #prompt { display: none; border: round $primary; }
    LogsScreen #prompt.-open { display: block; }
    .-ascii LogsScreen #prompt { border: ascii $primary; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._prompt_mode = ""
        self._prompt_open = False
        self._search: str | None = None
        self._count = 0
        self.layout_mode = ""  # one of LAYOUTS once known
        self._layout_chosen = False  # the person picked one with `l`: window size no longer decides
        self._current: LogPane | None = None
        self._seen: dict[str, int] = {}  # pane id -> its `problems` when it was last the one shown
        self._strip_shown: tuple[list[tuple[str, bool]], bool] = ([], False)

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Static("", id="strip", markup=False)
        yield Container(id="panes")
        yield Input(id="prompt")
        yield KeyBar()

    async def on_mount(self) -> None:
        self._apply_layout("side" if self.app.size.width >= WIDE_COLUMNS else "single")
        config = self.ctx.config
        specs = [SourceSpec("engine", e.name) for e in config.engines if e.log_file or e.log_unit]
        specs.append(SourceSpec("trail", ""))
        for spec in specs[:MAX_PANES]:
            await self.open_pane(spec, focus=not self.panes)

    # -- showing and hiding ---------------------------------------------------------------------------------

    def on_screen_suspend(self) -> None:
        for pane in self.panes:
            pane.pause()

    def on_screen_resume(self) -> None:
        for pane in self.panes:
            pane.resume()

    def on_resize(self, event: events.Resize) -> None:
        if not self._layout_chosen:
            self._apply_layout("side" if event.size.width >= WIDE_COLUMNS else "single")
        self._update_strip()

    # -- panes ----------------------------------------------------------------------------------------------

    @property
    def panes(self) -> list[LogPane]:
        return list(self.query(LogPane))

    def focused_pane(self) -> LogPane | None:
        if (pane := pane_of(self.focused)) is not None:
            return pane
        if self._current is not None and self._current.is_attached:
            return self._current
        panes = self.panes
        return panes[0] if panes else None

    async def open_pane(self, spec: SourceSpec, *, focus: bool = True) -> bool:
        if len(self.panes) >= MAX_PANES:
            self.notify(f"at most {MAX_PANES} panes: close one first (x)", severity="warning")
            return False
        try:
            source = build_source(spec, config=self.ctx.config, lines=START_LINES, follow=True,
                                  keep=MAX_PANE_LINES)
        except EngineDeckError as exc:
            self.notify(one_line(str(exc)), title="Logs", severity="error", markup=False)
            return False
        self._count += 1
        pane = LogPane(source, ascii_marks=self.app.has_class("-ascii"), id=f"pane-{self._count}")
        await self.query_one("#panes").mount(pane)  # composed once this returns: its view exists
        if focus or self._current is None:
            self._show(pane)
        self._update_strip()
        return True

    def _show(self, pane: LogPane) -> None:
        """Make `pane` the current one (the one shown, in the one-pane layout) and focus its view."""
        self._set_current(pane)
        pane.view.focus()

    def _set_current(self, pane: LogPane) -> None:
        if pane is self._current:
            return
        if self._current is not None:
            self._current.remove_class("-current")
        pane.add_class("-current")
        self._current = pane
        self._seen[pane.id or ""] = pane.problems
        self._update_strip()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if (pane := pane_of(event.widget)) is not None:
            self._set_current(pane)

    def on_log_pane_updated(self, event: LogPane.Updated) -> None:
        if event.pane is self._current:
            self._seen[event.pane.id or ""] = event.pane.problems
        self._update_strip()

    def action_next_pane(self, delta: int) -> None:
        self.action_leave_prompt()
        panes = self.panes
        if not panes:
            return
        at = panes.index(self._current) if self._current in panes else 0
        self._show(panes[(at + delta) % len(panes)])

    async def action_close_pane(self) -> None:
        pane = self.focused_pane()
        if pane is None:
            return
        panes = self.panes
        at = panes.index(pane)
        self._seen.pop(pane.id or "", None)
        if pane is self._current:
            self._current = None
        await pane.remove()  # its worker is cancelled with it, which stops the source (and a command's process)
        rest = self.panes
        if rest:
            self._show(rest[min(at, len(rest) - 1)])
        self._update_strip()

    def action_cycle_layout(self) -> None:
        self._layout_chosen = True
        self._apply_layout(LAYOUTS[(LAYOUTS.index(self.layout_mode) + 1) % len(LAYOUTS)])
        self.notify(f"layout: {'one pane at a time' if self.layout_mode == 'single' else self.layout_mode}",
                    timeout=2)

    def _apply_layout(self, mode: str) -> None:
        if mode == self.layout_mode:
            return
        self.layout_mode = mode
        panes = self.query_one("#panes")
        for name in LAYOUTS:
            panes.set_class(name == mode, f"-{name}")
        self._update_strip()

    def _update_strip(self) -> None:
        """In the one-pane layout, the line that names every pane: the shown one highlighted, `!` after one
        with warnings or errors since it was last shown."""
        strip = self.query_one("#strip", Static)
        panes = self.panes
        shown = self.layout_mode == "single" and len(panes) > 1
        strip.set_class(shown, "-shown")
        if not shown:
            return
        width = self.size.width or self.app.size.width
        hint = "tab: next pane"
        names = [(Path(p.label).name if p.path is not None and p.label == str(p.path) else p.label) for p in panes]
        marks = ["!" if p.problems > self._seen.get(p.id or "", 0) else "" for p in panes]
        # Names shorten (in the middle) until every pane fits on the line, then the hint goes: the shown pane
        # must never be the one cut off.
        for limit, with_hint in ((24, True), (16, True), (16, False), (10, False), (6, False), (1, False)):
            entries = [(f" {i} {elide_middle(one_line(name), limit)}{mark} ", pane is self._current)
                       for i, (pane, name, mark) in enumerate(zip(panes, names, marks, strict=True), 1)]
            if sum(len(words) + 1 for words, _ in entries) + (len(hint) if with_hint else 0) <= width:
                break
        if (entries, with_hint) == self._strip_shown:
            return
        self._strip_shown = (entries, with_hint)
        text = Text(no_wrap=True, overflow="ellipsis")
        for words, current in entries:
            text.append(words, style="reverse" if current else "")
            text.append(" ")
        if with_hint:
            text.append(hint)
        strip.update(text, layout=False)

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

    def action_show_line(self) -> None:
        """The selected line (the search hit, or the last one in view) whole: wrapped, with its fields."""
        view = self._view()
        line = view.selected() if view is not None else None
        if line is None:
            self.notify("no line to show", severity="warning")
            return
        self.app.push_screen(TextDialog(_line_title(line), _line_body(line)))

    # -- the prompt -----------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While the field is open only `escape` (leave it) is the screen's: every other key is typed."""
        if action == "leave_prompt":
            return self._prompt_open
        return not self._prompt_open

    def action_prompt(self, mode: str) -> None:
        prompt = self.query_one("#prompt", Input)
        self._prompt_mode = mode
        prompt.placeholder = PROMPTS[mode]
        prompt.border_title = f"{PROMPT_TITLES[mode]}   enter: ok   esc: cancel"
        view = self._view()
        prompt.value = (view.filter.pattern.pattern if mode == "filter" and view and view.filter.pattern
                        else self._search or "" if mode == "search" else "")
        prompt.add_class("-open")
        self._prompt_open = True
        prompt.focus()
        self.refresh_bindings()

    def action_leave_prompt(self) -> None:
        if not self._prompt_open:
            return
        self._prompt_open = False
        self.query_one("#prompt", Input).remove_class("-open")
        self.refresh_bindings()
        pane = self.focused_pane()
        if pane is not None:
            pane.view.focus()

    @on(events.DescendantBlur, "#prompt")
    def _prompt_left(self) -> None:
        self.action_leave_prompt()  # however focus left it (a click, tab): the field closes

    @on(Input.Submitted, "#prompt")
    async def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        mode = self._prompt_mode
        self.action_leave_prompt()
        view = self._view()
        try:
            if mode == "open" and text:
                await self.open_pane(parse_spec(text))
            elif mode == "filter" and view is not None:
                view.set_filter(LogFilter(view.filter.min_level, compile_pattern(text) if text else None))
            elif mode == "search" and text and view is not None:
                self._search = text
                self.action_search(True)
        except EngineDeckError as exc:
            self.notify(one_line(str(exc)), title="Logs", severity="error", markup=False)


def _line_title(line: LogLine) -> str:
    where = f"{line.source}:{line.lineno}" if line.lineno is not None else line.source
    return where if line.fmt != "notice" else f"{line.source}: what the source said"


def _line_body(line: LogLine) -> str:
    """The line's text wrapped by the dialog, then what it was parsed into and the line as written; untrusted
    throughout (the dialog neutralises it and shows it as plain text)."""
    if line.fmt == "notice":
        return line.raw
    head = [f"level {line.level.label}" if line.level is not None else "no level",
            line.ts.astimezone().isoformat(sep=" ", timespec="milliseconds") if line.ts else "no time",
            f"format {line.fmt}"]
    if line.mark is not None:
        head.append(f"signature {line.mark.value}")
    parts = [line.text, "", "  ·  ".join(head)]
    if line.fields:
        parts += ["", *(f"{name} = {value}" for name, value in line.fields)]
    if line.raw != line.text:
        parts += ["", "as written:", line.raw]
    return "\n".join(parts)
