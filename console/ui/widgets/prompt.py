"""The chat prompt: a multi-line editor where enter sends.

Over SSH most terminals send the same byte for enter and shift+enter, so the newline key that always works is
ctrl+j (a line feed, which every terminal can send); shift+enter and alt+enter add a line too where the terminal
reports them (the kitty keyboard protocol). A bracketed paste arrives as one Paste event, so its newlines stay
in the text and nothing is sent before enter. The box grows with its text up to `max-height`, then scrolls.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import TextArea

# TextArea binds ctrl+y (redo) and f6 (select line); in the chat those keys copy the reply and open the system
# prompt, so the prompt lets them through to the screen.
YIELDED_ACTIONS = frozenset({"redo", "select_line"})


class PromptArea(TextArea):
    BINDINGS: ClassVar[list[BindingType]] = [
        # priority: TextArea would otherwise take enter as a newline before any binding is looked at.
        Binding("enter", "submit", "Send", priority=True, id="prompt-send"),
        Binding("ctrl+j,shift+enter,alt+enter", "newline", "New line", id="prompt-newline"),
    ]
    DEFAULT_CSS = """
    PromptArea { height: auto; min-height: 3; max-height: 8; }
    """

    class Submitted(Message):
        """Enter was pressed: `text` is the whole prompt, newlines included."""

        def __init__(self, prompt: PromptArea, text: str) -> None:
            super().__init__()
            self.prompt = prompt
            self.text = text

        @property
        def control(self) -> PromptArea:
            return self.prompt

    def __init__(self, *, placeholder: str, id: str | None = None) -> None:
        super().__init__(highlight_cursor_line=False, placeholder=placeholder, id=id)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in YIELDED_ACTIONS:
            return False
        return super().check_action(action, parameters)

    def action_submit(self) -> None:
        self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        self.replace("\n", *self.selection, maintain_selection_offset=False)

    def set_text(self, text: str) -> None:
        """Replace the whole prompt and put the cursor at its end, ready to go on typing."""
        self.text = text
        self.move_cursor(self.document.end)
