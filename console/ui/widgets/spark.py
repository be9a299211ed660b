"""A one-line sparkline over a bounded history, with an ASCII ramp for terminals without block glyphs."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from textual.reactive import reactive
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
    """`label ▁▂▅█ value`. Repaints only when a sample is pushed."""

    DEFAULT_CSS = "Spark { height: 1; width: 1fr; } Spark > .spark--bar { color: $primary; }"
    COMPONENT_CLASSES = frozenset({"spark--bar"})
    revision: reactive[int] = reactive(0)

    def __init__(self, label: str, *, top: float | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.label = label
        self.top = top
        self.values: deque[float | None] = deque(maxlen=HISTORY)
        self.current = ""

    def push(self, value: float | None, shown: str) -> None:
        self.values.append(value)
        self.current = shown
        self.revision += 1

    def render(self) -> str:
        ascii_only = self.app.has_class("-ascii")
        width = max(0, self.size.width - len(self.label) - len(self.current) - 2)
        return f"{self.label} {render_spark(self.values, width, ascii_only=ascii_only, top=self.top)} {self.current}"
