"""One log pane: a virtual line view that renders only the visible rows, fed by one log source.

Lines are held in a bounded deque (`MAX_PANE_LINES`); what the filter lets through is a second bounded deque,
rebuilt when the filter changes. Rows are drawn as Segments straight from the `LogLine`s (no markup parsing,
so a line's text can never become markup), which keeps a high-rate log cheap to show.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import ClassVar

from rich.segment import Segment
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Static

from console.errors import EngineDeckError
from console.logs.filter import LogFilter
from console.logs.index import FileIndex
from console.logs.line import Level, LogLine, Mark
from console.logs.parse import LineParser
from console.logs.sanitize import inert, neutralise, one_line
from console.logs.sources import Event, Notice, NoticeKind

MAX_PANE_LINES = 20_000  # lines a pane holds; older ones are dropped (files can be reopened with more history)
MAX_ROW_CHARS = 1_000  # a row is cut here for display; the raw view shows the rest of a long line
OLDER_BATCH = 1_000  # lines read back from the file per "older" request
REFRESH_INTERVAL_S = 0.05  # at most 20 repaints a second however fast lines come

LEVEL_CLASSES = {Level.TRACE: "trace", Level.DEBUG: "debug", Level.INFO: "info", Level.WARN: "warn",
                 Level.ERROR: "error", Level.FATAL: "error"}
MARK_TEXT = {Mark.VALID: "✓", Mark.INVALID: "✗", Mark.UNSIGNED: "·"}
MARK_ASCII = {Mark.VALID: "ok", Mark.INVALID: "!!", Mark.UNSIGNED: "--"}


def notice_line(notice: Notice) -> LogLine:
    """A source event shown in the pane as a line of its own."""
    level = Level.ERROR if notice.kind is NoticeKind.ERROR else Level.WARN
    return LogLine(notice.source, notice.message, f"── {neutralise(notice.message)}", level, fmt="notice")


class LogView(ScrollView, can_focus=True):
    """The rows of one pane. Keys scroll; the screen drives follow, filter, search and the raw toggle."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "logview--trace", "logview--debug", "logview--info", "logview--warn", "logview--error",
        "logview--cursor", "logview--muted", "logview--invalid", "logview--valid",
    }
    DEFAULT_CSS = """
    LogView { height: 1fr; background: $surface; }
    LogView > .logview--trace { color: $text-muted; }
    LogView > .logview--debug { color: $text-muted; }
    LogView > .logview--info { color: $text; }
    LogView > .logview--warn { color: $warning; }
    LogView > .logview--error { color: $error; text-style: bold; }
    LogView > .logview--cursor { background: $accent 40%; }
    LogView > .logview--muted { color: $text-muted; }
    LogView > .logview--invalid { color: $error; text-style: bold; }
    LogView > .logview--valid { color: $success; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False, id="logview-up"),
        Binding("down", "cursor(1)", "Down", show=False, id="logview-down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="logview-pageup"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="logview-pagedown"),
    ]

    follow: reactive[bool] = reactive(True, repaint=False)
    raw: reactive[bool] = reactive(False)

    def __init__(self, *, ascii_marks: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: deque[LogLine] = deque(maxlen=MAX_PANE_LINES)
        self.shown: deque[LogLine] = deque(maxlen=MAX_PANE_LINES)
        self.filter = LogFilter()
        self.cursor = -1  # row of the search hit / selected line, -1 for none
        self._marks = MARK_ASCII if ascii_marks else MARK_TEXT
        self._width = 0
        self._dirty = False

    # -- data -----------------------------------------------------------------------------------------------

    def add(self, line: LogLine) -> None:
        self.lines.append(line)
        if self.filter.matches(line) or line.fmt == "notice":
            if len(self.shown) == self.shown.maxlen and self.cursor >= 0:
                self.cursor -= 1
            self.shown.append(line)
            self._dirty = True

    def flush(self) -> None:
        """Apply the lines added since the last call to the scroll geometry (called on a timer)."""
        if not self._dirty:
            return
        self._dirty = False
        self._update_size()
        if self.follow:
            self.scroll_end(animate=False, immediate=True)
        self.refresh()

    def prepend(self, older: list[LogLine]) -> None:
        """Older lines read back from the file, put before the ones held; the rows in view stay in view."""
        before = len(self.shown)
        self.lines.extendleft(reversed(older))
        self.follow = False
        y = self.scroll_y
        self.set_filter(self.filter)
        self.scroll_to(y=y + len(self.shown) - before, animate=False, immediate=True)

    def set_filter(self, flt: LogFilter) -> None:
        self.filter = flt
        self.shown = deque((ln for ln in self.lines if ln.fmt == "notice" or flt.matches(ln)), maxlen=MAX_PANE_LINES)
        self.cursor = -1
        self._width = 0
        self._update_size()
        if self.follow:
            self.scroll_end(animate=False, immediate=True)
        self.refresh()

    def _update_size(self) -> None:
        # The widest row decides the horizontal scroll; measuring only new rows keeps this O(new lines).
        for line in list(self.shown)[-min(len(self.shown), 200):]:
            self._width = max(self._width, min(MAX_ROW_CHARS, sum(map(len, self._row_text(line)))))
        self.virtual_size = Size(self._width, len(self.shown))

    # -- search ---------------------------------------------------------------------------------------------

    def search(self, pattern: re.Pattern[str], *, forward: bool) -> bool:
        """Move the cursor to the next (or previous) row whose text matches; False when there is none."""
        n = len(self.shown)
        if not n:
            return False
        start = self.cursor if self.cursor >= 0 else (int(self.scroll_y) - 1 if forward else n)
        rows = range(start + 1, n) if forward else range(min(start, n) - 1, -1, -1)
        for y in rows:
            line = self.shown[y]
            if pattern.search(line.raw if self.raw else line.text):
                self.move_cursor(y)
                return True
        return False

    def move_cursor(self, y: int) -> None:
        self.cursor = max(0, min(y, len(self.shown) - 1))
        self.follow = False
        if not self.scroll_y <= self.cursor < self.scroll_y + self.size.height:
            self.scroll_to(y=max(0, self.cursor - self.size.height // 2), animate=False, immediate=True)
        self.refresh()

    def action_cursor(self, delta: int) -> None:
        self.move_cursor((self.cursor if self.cursor >= 0 else int(self.scroll_y) + self.size.height - 1) + delta)

    def action_page(self, delta: int) -> None:
        self.follow = False
        self.scroll_to(y=self.scroll_y + delta * max(1, self.size.height - 1), animate=False)

    def jump(self, *, end: bool) -> None:
        self.cursor = -1
        self.follow = end
        if end:
            self.scroll_end(animate=False, immediate=True)
        else:
            self.scroll_home(animate=False, immediate=True)
        self.refresh()

    # -- rendering ------------------------------------------------------------------------------------------

    def _row_text(self, line: LogLine) -> tuple[str, str, str, str]:
        """(time, level, signature mark, body); a source without timestamps gets no time column."""
        ts = line.ts.astimezone().strftime("%H:%M:%S ") if line.ts else ""
        level = f"{line.level.label:<5} " if line.level is not None else "      "
        mark = f"{self._marks[line.mark]} " if line.mark is not None else ""
        body = neutralise(line.raw) if self.raw and line.fmt != "notice" else line.text
        return ts, level, mark, body.replace("\t", "    ")

    def on_resize(self) -> None:
        if self.follow:
            self.scroll_end(animate=False, immediate=True)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        width = self.size.width
        if row >= len(self.shown):
            return Strip.blank(width, self.rich_style)
        line = self.shown[row]
        ts, level, mark, body = self._row_text(line)
        style = self.get_component_rich_style
        level_style = style(f"logview--{LEVEL_CLASSES[line.level]}" if line.level is not None else "logview--info")
        segments = [Segment(ts, style("logview--muted")), Segment(level, level_style)]
        if line.mark is not None:
            segments.append(Segment(mark, style("logview--invalid" if line.mark is Mark.INVALID else
                                                "logview--valid" if line.mark is Mark.VALID else "logview--muted")))
        warn = line.level is not None and line.level >= Level.WARN
        segments.append(Segment(body[:MAX_ROW_CHARS], level_style if warn else self.rich_style))
        strip = Strip(segments).crop(scroll_x, scroll_x + width)
        if row == self.cursor:
            strip = strip.apply_style(style("logview--cursor"))
        return strip.extend_cell_length(width, self.rich_style)


class LogPane(Vertical):
    """A title line and a LogView, following one source in a worker that belongs to the pane."""

    DEFAULT_CSS = """
    LogPane { border: round $panel-lighten-2; height: 1fr; width: 1fr; }
    LogPane:focus-within { border: round $primary; }
    LogPane > .pane-title { height: 1; color: $text-muted; padding: 0 1; }
    .-ascii LogPane { border: ascii $panel-lighten-2; }
    .-ascii LogPane:focus-within { border: ascii $primary; }
    """

    def __init__(self, label: str, events: Callable[[], AsyncIterator[Event]], *, ascii_marks: bool = False,
                 path: Path | None = None, parser: LineParser | None = None, id: str | None = None) -> None:
        """`path` and `parser`: for a file source, so older lines can be read back from the file."""
        super().__init__(id=id)
        self.label = label
        self._events = events
        self.path = path
        self._parser = parser
        self._reopened = False  # after rotation or truncation the held offsets no longer point into `path`
        self._ascii = ascii_marks
        self.state = "starting"
        self.received = 0

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def compose(self) -> ComposeResult:
        yield Static("", classes="pane-title", markup=False)
        yield LogView(ascii_marks=self._ascii)

    def on_mount(self) -> None:
        self.border_title = inert(one_line(self.label, 80))  # border titles are markup
        self.set_interval(REFRESH_INTERVAL_S, self._tick)
        self.follow_source()

    @work(exclusive=True, group="log-pane", name="log-pane-loop", exit_on_error=False)
    async def follow_source(self) -> None:
        self.state = "following"
        view = self.view
        try:
            async for event in self._events():
                self.received += 1
                if isinstance(event, Notice):
                    self._reopened |= event.kind in (NoticeKind.ROTATED, NoticeKind.TRUNCATED)
                    view.add(notice_line(event))
                else:
                    view.add(event)
        except EngineDeckError as exc:
            view.add(notice_line(Notice(self.label, NoticeKind.ERROR, str(exc))))
            self.state = "failed"
        except OSError as exc:
            view.add(notice_line(Notice(self.label, NoticeKind.ERROR, f"{exc.strerror or exc}")))
            self.state = "failed"
        else:
            self.state = "ended"

    def load_older(self, count: int = OLDER_BATCH) -> str | None:
        """Start reading up to `count` lines before the oldest one held; or say why that cannot be done."""
        view = self.view
        room = min(count, MAX_PANE_LINES - len(view.lines))
        oldest = next((ln.offset for ln in view.lines if ln.fmt != "notice"), None)
        if self.path is None or self._parser is None:
            return "only a file pane can read older lines"
        if self._reopened:
            return "the file was rotated or truncated: older lines are in another file"
        if oldest is None or oldest == 0:
            return "this is the start of the file"
        if room <= 0:
            return f"the pane holds {MAX_PANE_LINES:,} lines: close and reopen it to see older ones"
        self._read_older(self.path, self._parser.for_random_access(), oldest, room)
        return None

    @work(thread=True, exclusive=True, group="log-pane-older", exit_on_error=False)
    def _read_older(self, path: Path, parser: LineParser, offset: int, count: int) -> None:
        try:
            with FileIndex(path, parser) as index:
                index.restart_before(offset)
                index.extend_back(count)
                older = [index.line(i) for i in range(index.count)]
        except EngineDeckError as exc:
            self.app.call_from_thread(self.notify, one_line(str(exc)), severity="error", markup=False)
            return
        self.app.call_from_thread(self.view.prepend, older)

    def _tick(self) -> None:
        self.view.flush()
        self._update_title()

    def _update_title(self) -> None:
        view = self.view
        parts = [self.state if self.state != "following" else ("following" if view.follow else "paused")]
        if view.filter.min_level is not None:
            parts.append(f"≥{view.filter.min_level.label}" if not self._ascii else f">={view.filter.min_level.label}")
        if view.filter.pattern is not None:
            parts.append(f"/{neutralise(view.filter.pattern.pattern)}/")
        if view.raw:
            parts.append("raw")
        parts.append(f"{len(view.shown)}/{len(view.lines)} lines")
        title = "  ".join(parts)
        static = self.query_one(".pane-title", Static)
        if str(static.render()) != title:
            static.update(title)
