"""Sparklines over bounded histories, with an ASCII ramp for terminals without block glyphs, on one line."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from textual.content import Content
from textual.widget import Widget

BLOCKS = " ▁▂▃▄▅▆▇█"
ASCII_RAMP = " .:-=+*#%@"
HISTORY = 240  # samples kept: four minutes at 1 Hz, more than the widest terminal shows


def render_spark(values: Iterable[float | None], width: int, *, ascii_only: bool = False,
                 top: float | None = None) -> str:
    ramp = ASCII_RAMP if ascii_only else BLOCKS
    tail = list(values)[-width:] if width > 0 else []
    known = [v for v in tail if v is not None]
    peak = top if top is not None else max(known, default=0.0)
    out = []
    for v in tail:
        if v is None:
            out.append(" ")
        elif peak <= 0:
            out.append(ramp[1])
        else:
            out.append(ramp[min(len(ramp) - 1, max(1, round(v / peak * (len(ramp) - 1))))])
    return "".join(out).rjust(width)


@dataclass
class _Series:
    label: str
    top: float | None  # a fixed scale top (100 for percentages); None scales to the highest value shown
    values: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY))
    current: str = ""  # the latest value as a person reads it, drawn after the line
    shown: bool = False


class SparkBar(Widget):
    """The live figures on one line: `cpu ▁▂▅█ 12%  gpu ▃▅ 63%  vram ▇▇ 41 GB  tok/s ▂▅ 512`.

    The dashboard docks it at the bottom, outside the scrolling panels: a repaint of a docked line makes Textual
    render only the widgets whose clip overlaps that line (the screen, the bars, the body), not every panel,
    which halves the cost of the once-a-second repaint an idle dashboard makes. Series appear with their first
    value and can be hidden; the line repaints only when what it draws changes.
    """

    DEFAULT_CSS = "SparkBar { dock: bottom; margin-bottom: 1; height: 1; width: 100%; color: $primary; padding: 0 1; }"

    def __init__(self, series: list[tuple[str, str, float | None]], *, id: str | None = None) -> None:
        """Args:
            series: (key, label, top) in the order they are drawn.
        """
        super().__init__(id=id)
        self.series = {key: _Series(label, top) for key, label, top in series}
        self._drawn = ""

    def push(self, key: str, value: float | None, shown: str) -> None:
        s = self.series[key]
        s.values.append(value)
        s.current = shown
        s.shown = True
        self._repaint_if_changed()

    def set_shown(self, key: str, visible: bool) -> None:
        if self.series[key].shown != visible:
            self.series[key].shown = visible
            self._repaint_if_changed()

    def shown_keys(self) -> list[str]:
        return [key for key, s in self.series.items() if s.shown]

    def _repaint_if_changed(self) -> None:
        if self._line(self.content_size.width) != self._drawn:
            self.refresh()

    def _line(self, width: int) -> str:
        visible = [s for s in self.series.values() if s.shown]
        if not visible:
            return ""
        ascii_only = self.app.has_class("-ascii")
        gaps = 2 * (len(visible) - 1)
        fixed = sum(len(s.label) + len(s.current) + 2 for s in visible)
        bars = max(0, (width - fixed - gaps) // len(visible))
        return "  ".join(f"{s.label} {render_spark(s.values, bars, ascii_only=ascii_only, top=s.top)} {s.current}"
                         for s in visible)

    def render(self) -> Content:
        # Plain Content, not a str: a str would be parsed as markup on every repaint.
        self._drawn = self._line(self.content_size.width)
        return Content(self._drawn)
