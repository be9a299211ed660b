"""Small modal dialogs shared by every screen: confirm, pick one of a list, read a long text.

All text shown here may come from engines (model names, details), so it is passed as plain `Text`, never
as markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from console.logs.sanitize import neutralise

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 72; max-width: 100%; height: auto; max-height: 90%; border: round $primary;
                     background: $surface; padding: 0 1; }}
.-ascii {name} > Vertical {{ border: ascii $primary; }}
{name} .dialog-title {{ text-style: bold; color: $primary; }}
{name} .dialog-hint {{ color: $text-muted; }}
{name} .dialog-warning {{ color: $warning; }}
"""


class ConfirmDialog(ModalScreen[bool]):
    """y / enter confirms, n / escape refuses. Destructive actions always go through here."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y,enter", "answer(True)", "Yes", id="confirm-yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm-no"),
    ]
    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmDialog")

    def __init__(self, title: str, body: str, *, warning: str | None = None) -> None:
        super().__init__()
        self._title, self._body, self._warning = title, body, warning

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(neutralise(self._title)), classes="dialog-title")
            yield Static(Text(neutralise(self._body)))
            if self._warning:
                yield Static(Text(neutralise(self._warning)), classes="dialog-warning")
            yield Static("y / enter: yes    n / esc: no", classes="dialog-hint")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class ChoiceDialog(ModalScreen[str | None]):
    """Pick one value from a list with the arrow keys and enter; escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="choice-cancel")]
    DEFAULT_CSS = DIALOG_CSS.format(name="ChoiceDialog") + "ChoiceDialog OptionList { height: auto; max-height: 16; }"

    def __init__(self, title: str, choices: Sequence[tuple[str, str]], *, hint: str = "") -> None:
        """`choices` are (value, label) pairs."""
        super().__init__()
        self._title, self._choices, self._hint = title, list(choices), hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(neutralise(self._title)), classes="dialog-title")
            if self._hint:
                yield Static(Text(neutralise(self._hint)), classes="dialog-warning")
            yield OptionList(*[Option(Text(neutralise(label)), id=str(i))
                               for i, (_, label) in enumerate(self._choices)])
            yield Static("enter: choose    esc: cancel", classes="dialog-hint")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self._choices[int(event.option.id or 0)][0])

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextDialog(ModalScreen[None]):
    """A scrollable page of plain text (model details, a long error)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,enter", "dismiss", "Close", id="text-close")]
    DEFAULT_CSS = DIALOG_CSS.format(name="TextDialog") + "TextDialog VerticalScroll { height: auto; max-height: 30; }"

    def __init__(self, title: str, body: str) -> None:
        super().__init__()
        self._title, self._body = title, body

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(neutralise(self._title)), classes="dialog-title")
            with VerticalScroll():
                yield Static(Text(neutralise(self._body)))
            yield Static("esc: close", classes="dialog-hint")


class AskDialog(ModalScreen[str | None]):
    """One line of text (a model name to pull): enter accepts, escape cancels, an empty answer cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="ask-cancel")]
    DEFAULT_CSS = DIALOG_CSS.format(name="AskDialog")

    def __init__(self, title: str, *, value: str = "", hint: str = "") -> None:
        super().__init__()
        self._title, self._value, self._hint = title, value, hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(neutralise(self._title)), classes="dialog-title")
            yield Input(value=self._value, id="answer")
            yield Static(Text(neutralise(self._hint or "enter: ok    esc: cancel")), classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
