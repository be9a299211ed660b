"""Every key of every screen, in one place (the footer shows only the current screen's)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from console.logs.sanitize import escape_markup
from console.ui.base import Deck, deck
from console.ui.screens import SCREENS


def _rows(bindings: Iterable[BindingType], app: Deck) -> list[str]:
    """One line per binding: its key (the person's, when their keymap moved it) and what it does."""
    rows = []
    for b in bindings:
        if isinstance(b, Binding) and b.description:
            rows.append(f"  {escape_markup(app.binding_key(b)):<12} {escape_markup(b.description)}")
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
        app = deck(self)
        lines = ["[b]enginedeck — keys[/b]", "",
                 "A text field (the chat prompt, a filter, a form field) takes letters and digits as text:",
                 "[b]esc[/b] leaves it, and then the keys below work again. In a dialog esc cancels.",
                 "", "[b]Everywhere[/b]"]
        lines += _rows(self.app.BINDINGS, app)
        lines.append(f"  {'esc':<12} Leave a text field; close a dialog or this help")
        lines.append(f"  {'ctrl+p':<12} Command palette: every action of every screen, by name")
        for name, spec in SCREENS.items():
            key = escape_markup(app.screen_key(name))
            try:
                screen_cls = spec.load()
            except ImportError as exc:
                lines += ["", f"[b]{spec.title}[/b] \\[{key}]", f"  unavailable: {escape_markup(str(exc))}"]
                continue
            lines += ["", f"[b]{spec.title}[/b] \\[{key}] — {escape_markup(spec.description)}"]
            # Widgets with keys of their own (the chat prompt) are named in their screen's HELP_WIDGETS.
            bindings = [*screen_cls.BINDINGS, *(b for w in getattr(screen_cls, "HELP_WIDGETS", ()) for b in w.BINDINGS)]
            lines += _rows(bindings, app)
        with VerticalScroll():
            yield Static("\n".join(lines))
