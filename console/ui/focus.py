"""Who has the keyboard: a text field takes digits and letters as text, so the app's keys wait until esc."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.screen import Screen


def text_field_has_focus(screen: Screen[Any]) -> bool:
    """A focused widget that takes printable keys as text (an Input, a TextArea): digits, `?` and `q` are its."""
    focused = screen.focused
    return focused is not None and focused.check_consume_key("a", "a")
