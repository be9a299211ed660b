"""A one-line sparkline over a bounded history, with an ASCII ramp for terminals without block glyphs."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

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


class Spark(Widget):
    """`label ▁▂▅█ value`. Repaints only when the drawn line changes, so a flat line costs no output."""

    DEFAULT_CSS = "Spark { height: 1; width: 1fr; color: $primary; }"

    def __init__(self, label: str, *, top: float | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.label = label
        self.top = top
        """Fixed scale top (100 for percentages); None scales to the highest value shown."""
        self.values: deque[float | None] = deque(maxlen=HISTORY)
        self.current = ""
        """The latest value as a person reads it, drawn after the line."""
        self._drawn = ""

    def push(self, value: float | None, shown: str) -> None:
        self.values.append(value)
        self.current = shown
        line = self._line(self.size.width)
        if line != self._drawn:
            self.refresh()

    def _line(self, width: int) -> str:
        ascii_only = self.app.has_class("-ascii")
        bar_width = max(0, width - len(self.label) - len(self.current) - 2)
        return f"{self.label} {render_spark(self.values, bar_width, ascii_only=ascii_only, top=self.top)} " \
               f"{self.current}"

    def render(self) -> Content:
        # Plain Content, not a str: a str would be parsed as markup on every repaint (once a second for the CPU).
        self._drawn = self._line(self.size.width)
        return Content(self._drawn)
