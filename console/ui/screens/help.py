"""Every key of every screen, in one place (the footer shows only the current screen's)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from console.logs.sanitize import escape_markup
from console.ui.screens import SCREENS


def _rows(bindings: list[BindingType]) -> list[tuple[str, str]]:
    rows = []
    for b in bindings:
        if isinstance(b, Binding) and b.description:
            rows.append((b.key_display or b.key, b.description))
        elif isinstance(b, tuple) and len(b) >= 3:
            rows.append((b[0], b[2]))
    return rows


def _digit_bindings() -> list[BindingType]:
    """The digits work here too: they close the help and open the screen (the app's own bindings stop at a
    modal screen)."""
    return [Binding(spec.key, f"app.open_screen('{name}')", spec.title, show=False, id=f"help-screen-{name}")
            for name, spec in SCREENS.items()]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close", id="close-help"),
        *_digit_bindings(),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 76; max-width: 100%; height: 90%; border: round $primary;
                                  background: $surface; padding: 0 1; }
    .-ascii HelpScreen > VerticalScroll { border: ascii $primary; }
    """

    def compose(self) -> ComposeResult:
        lines = ["[b]enginedeck — keys[/b]", "",
                 "A text field (the chat prompt, a filter, a form field) takes letters and digits as text:",
                 "[b]esc[/b] leaves it, and then the keys below work again. In a dialog esc cancels.",
                 "", "[b]Everywhere[/b]"]
        lines += [f"  {k:<12} {escape_markup(d)}" for k, d in _rows(self.app.BINDINGS)]
        lines.append(f"  {'esc':<12} Leave a text field; close a dialog or this help")
        lines.append(f"  {'ctrl+p':<12} Command palette: every action of every screen, by name")
        for spec in SCREENS.values():
            try:
                screen_cls = spec.load()
            except ImportError as exc:
                lines += ["", f"[b]{spec.title}[/b] \\[{spec.key}]", f"  unavailable: {escape_markup(str(exc))}"]
                continue
            lines += ["", f"[b]{spec.title}[/b] \\[{spec.key}] — {escape_markup(spec.description)}"]
            # Widgets with keys of their own (the chat prompt) are named in their screen's HELP_WIDGETS.
            bindings = [*screen_cls.BINDINGS, *(b for w in getattr(screen_cls, "HELP_WIDGETS", ()) for b in w.BINDINGS)]
            lines += [f"  {k:<12} {escape_markup(d)}" for k, d in _rows(bindings)]
        with VerticalScroll():
            yield Static("\n".join(lines))
