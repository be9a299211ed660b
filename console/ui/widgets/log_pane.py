"""One log pane: a virtual line view that renders only the visible rows, fed by one log source.

Lines are held in a bounded deque (`MAX_PANE_LINES`); what the filter lets through is a second bounded deque,
rebuilt when the filter changes. Rows are drawn as Segments straight from the `LogLine`s (no markup parsing,
so a line's text can never become markup), which keeps a high-rate log cheap to show.

The source reads and parses in worker threads and hands over batches; the pane takes `PANE_CHUNK` lines per
turn of the event loop and asks for the next batch only when it has taken them, so a burst is read as fast as
the pane keeps up and never holds the loop. Repaints are coalesced: one at most every `REFRESH_INTERVAL_S`
while lines come, none while nothing does. `pause()` (the screen is not shown) stops the source, polls
included; `resume()` catches up from where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from itertools import islice
from pathlib import Path
from typing import ClassVar

from rich.segment import Segment
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.events import MouseScrollUp
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer
from textual.widgets import Static

from console.audit.mark import Mark
from console.errors import EngineDeckError
from console.logs.filter import LogFilter
from console.logs.index import FileIndex
from console.logs.line import Level, LogLine
from console.logs.parse import LineParser
from console.logs.sanitize import inert, neutralise, one_line
from console.logs.sources import FileSource, LogSource, Notice, NoticeKind

MAX_PANE_LINES = 20_000  # lines a pane holds; older ones are dropped (files can be reopened with more history)
MAX_ROW_CHARS = 1_000  # a row is cut here for display; the raw view shows the rest of a long line
OLDER_BATCH = 1_000  # lines read back from the file per "older" request
REFRESH_INTERVAL_S = 0.05  # at most 20 repaints a second however fast lines come
PANE_CHUNK = 1_000  # lines taken per turn of the event loop (about 2 ms), so keys and repaints go between
MEASURED_ROWS = 200  # rows measured for the horizontal scroll width per repaint

LEVEL_CLASSES = {Level.TRACE: "trace", Level.DEBUG: "debug", Level.INFO: "info", Level.WARN: "warn",
                 Level.ERROR: "error", Level.FATAL: "error"}
MARK_TEXT = {Mark.VALID: "✓", Mark.INVALID: "✗", Mark.UNSIGNED: "·"}
MARK_ASCII = {Mark.VALID: "ok", Mark.INVALID: "!!", Mark.UNSIGNED: "--"}


def notice_line(notice: Notice) -> LogLine:
    """A source event shown in the pane as a line of its own, at its level (a clean exit is not an error)."""
    return LogLine(notice.source, notice.message, f"── {neutralise(notice.message)}", notice.level, fmt="notice")


def elide_middle(text: str, width: int) -> str:
    """`text` cut to `width` cells by taking out its middle (a path keeps its root and its file name)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    head = (width - 1) // 2
    return f"{text[:head]}…{text[len(text) - (width - 1 - head):]}"


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
        # Not ScrollView's scroll_home/scroll_end: those would leave `follow` as it was.
        Binding("home", "jump(False)", "Start", show=False, id="logview-home"),
        Binding("end", "jump(True)", "End", show=False, id="logview-end"),
    ]

    class Changed(Message):
        """Follow, filter or raw changed: the pane's status line says so."""

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
        self._unmeasured = 0  # rows added since the width was last measured
        self._dirty = False

    # -- data -----------------------------------------------------------------------------------------------

    def add(self, line: LogLine) -> None:
        self.lines.append(line)
        if line.fmt == "notice" or self.filter.matches(line):
            if len(self.shown) == self.shown.maxlen and self.cursor >= 0:
                self.cursor -= 1
            self.shown.append(line)
            self._unmeasured += 1
            self._dirty = True

    def flush(self) -> None:
        """Apply the lines added since the last call to the scroll geometry (the pane calls it, coalesced)."""
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
        self._remeasure()
        self.post_message(self.Changed())

    def _remeasure(self) -> None:
        self._width, self._unmeasured = 0, MEASURED_ROWS
        self._update_size()
        if self.follow:
            self.scroll_end(animate=False, immediate=True)
        self.refresh()

    def _update_size(self) -> None:
        # The widest row decides the horizontal scroll; measuring only new rows keeps this O(new lines).
        for line in islice(reversed(self.shown), min(self._unmeasured, MEASURED_ROWS)):
            self._width = max(self._width, min(MAX_ROW_CHARS, sum(map(len, self._row_text(line)))))
        self._unmeasured = 0
        self.virtual_size = Size(self._width, len(self.shown))

    def watch_follow(self) -> None:
        self.post_message(self.Changed())

    def watch_raw(self) -> None:
        self._remeasure()  # raw rows are as wide as the line was written
        self.post_message(self.Changed())

    def on_mouse_scroll_up(self, _event: MouseScrollUp) -> None:
        self.follow = False  # looking back: new lines must not pull the view to the end

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

    def selected(self) -> LogLine | None:
        """The line under the cursor, or the last one in view when there is no cursor."""
        if not self.shown:
            return None
        if self.cursor >= 0:
            return self.shown[min(self.cursor, len(self.shown) - 1)]
        return self.shown[max(0, min(int(self.scroll_y) + self.size.height, len(self.shown)) - 1)]

    def action_jump(self, end: bool) -> None:
        self.jump(end=end)

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
    """A status line and a LogView, following one source in a worker that belongs to the pane."""

    DEFAULT_CSS = """
    LogPane { border: round $panel-lighten-2; height: 1fr; width: 1fr; }
    LogPane:focus-within { border: round $primary; }
    LogPane > .pane-status { height: 1; color: $text-muted; padding: 0 1; }
    .-ascii LogPane { border: ascii $panel-lighten-2; }
    .-ascii LogPane:focus-within { border: ascii $primary; }
    """

    class Updated(Message):
        """New lines were shown or the state changed (the screen redraws its list of panes)."""

        def __init__(self, pane: LogPane) -> None:
            super().__init__()
            self.pane = pane

        @property
        def control(self) -> LogPane:
            return self.pane

    def __init__(self, source: LogSource, *, ascii_marks: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.label = source.name
        # A file pane can read older lines back from its file.
        self.path = source.path if isinstance(source, FileSource) else None
        self._parser = source.parser if isinstance(source, FileSource) else None
        self._reopened = False  # after rotation or truncation the held offsets no longer point into `path`
        self._ascii = ascii_marks
        self.state = "starting"
        self.received = 0
        self.problems = 0  # lines and notices at warn or above, so far
        self.notice: Notice | None = None  # what the source last said, while it is still news (status line)
        self.paused = False
        self._flush_timer: Timer | None = None

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def compose(self) -> ComposeResult:
        yield Static("", classes="pane-status", markup=False)
        yield LogView(ascii_marks=self._ascii)

    def on_mount(self) -> None:
        self.follow_source()

    def on_resize(self) -> None:
        # Border titles are markup, and Textual cuts them at the end: elided here in the middle, so a path keeps
        # its file name.
        self.border_title = inert(elide_middle(one_line(self.label, 300), max(8, self.size.width - 6)))
        self._update_status()

    # -- following ------------------------------------------------------------------------------------------

    @work(exclusive=True, group="log-pane", name="log-pane-loop", exit_on_error=False)
    async def follow_source(self) -> None:
        self.state = "following"
        self.request_flush()
        view = self.view
        try:
            async with contextlib.aclosing(self.source.batches()) as batches:
                async for batch in batches:
                    for start in range(0, len(batch), PANE_CHUNK):
                        for event in batch[start:start + PANE_CHUNK]:
                            self._take(event, view)
                        self.request_flush()
                        await asyncio.sleep(0)  # a turn for keys and repaints between chunks
        except EngineDeckError as exc:
            self._failed(str(exc))
        except OSError as exc:
            self._failed(f"{exc.strerror or exc}")
        else:
            self.state = "ended"
        self.request_flush()

    def _take(self, event: LogLine | Notice, view: LogView) -> None:
        self.received += 1
        if isinstance(event, Notice):
            self._reopened |= event.kind in (NoticeKind.ROTATED, NoticeKind.TRUNCATED)
            self.notice = event
            self.problems += event.level >= Level.WARN
            view.add(notice_line(event))
            return
        if self.notice is not None:
            self.notice = None  # lines came after it: no longer news
        if event.level is not None and event.level >= Level.WARN:
            self.problems += 1
        view.add(event)

    def _failed(self, message: str) -> None:
        self.notice = Notice(self.label, NoticeKind.ERROR, message)
        self.problems += 1
        self.view.add(notice_line(self.notice))
        self.state = "failed"

    def pause(self) -> None:
        """The screen is not shown: the source stops reading and polling, and nothing is repainted."""
        self.paused = True
        self.source.pause()
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None

    def resume(self) -> None:
        """Shown again: catch up from where the source stopped."""
        self.paused = False
        self.source.resume()
        self.request_flush()

    def request_flush(self) -> None:
        """Repaint soon: coalesced, at most every REFRESH_INTERVAL_S, never while paused."""
        if self._flush_timer is None and not self.paused:
            self._flush_timer = self.set_timer(REFRESH_INTERVAL_S, self._flush, name="log-pane-flush")

    def on_log_view_changed(self, event: LogView.Changed) -> None:
        event.stop()
        self.request_flush()

    def _flush(self) -> None:
        self._flush_timer = None
        self.view.flush()
        self._update_status()
        self.post_message(self.Updated(self))

    # -- older lines ----------------------------------------------------------------------------------------

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

    # -- status line ----------------------------------------------------------------------------------------

    def status_text(self, width: int) -> str:
        """`following  ≥warn  /regex/  raw  12/40 lines  what the source said`, cut to `width`: the source's
        message goes last and loses its middle (a path keeps its file name); Enter on its row shows it whole."""
        view = self.view
        notice = self.notice
        if self.state == "following":
            word = "waiting" if notice is not None and notice.kind is NoticeKind.WAITING else \
                "following" if view.follow else "paused"
        else:
            word = self.state
        parts = [word]
        if view.filter.min_level is not None:
            parts.append(f"{'>=' if self._ascii else '≥'}{view.filter.min_level.label}")
        if view.filter.pattern is not None:
            parts.append(f"/{one_line(view.filter.pattern.pattern, 40)}/")
        if view.raw:
            parts.append("raw")
        parts.append(f"{len(view.shown)}/{len(view.lines)} lines")
        text = "  ".join(parts)
        if notice is not None and notice.kind is not NoticeKind.ROTATED:
            room = width - len(text) - 2
            if room >= 12:
                text += "  " + self._elide_message(one_line(notice.message), room)
        return elide_middle(text, width)

    def _elide_message(self, message: str, width: int) -> str:
        """A file source's messages start with its path: the path gives way first, the words after it stay."""
        path = one_line(str(self.path)) if self.path is not None else ""
        rest = message[len(path):]
        if path and message.startswith(path) and len(message) > width and width - len(rest) >= 12:
            return elide_middle(path, width - len(rest)) + rest
        return elide_middle(message, width)

    def _update_status(self) -> None:
        if not self.is_mounted:
            return
        static = self.query_one(".pane-status", Static)
        text = self.status_text(max(10, (static.size.width or self.size.width - 4)))
        if static.content != text:
            static.update(text, layout=False)
