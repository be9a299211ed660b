"""A screen that is not shown costs nothing (STYLE.md, rule 11): its widgets' timers pause while another screen is
shown and resume when it comes back.

Textual keeps a hidden screen's timers running: the focused field's cursor blinks twice a second and a progress
bar redraws its clock every second, on a screen nobody sees. Work that must go on (a chat reply streaming, a
probe measuring) runs in workers, which this leaves alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.screen import Screen

from console.ui.base import DeckScreen
from console.ui.textual_compat import running_timers

if TYPE_CHECKING:
    from textual.timer import Timer


def pause_timers(screen: Screen[Any]) -> list[Timer]:
    """Pause every running timer of the screen's widgets (not the screen's own repaint timer); return them."""
    paused: list[Timer] = []
    for widget in screen.walk_children():
        for timer in running_timers(widget):  # Textual has no public list of a widget's timers
            timer.pause()
            paused.append(timer)
    return paused


class QuietWhenHidden(DeckScreen[None]):
    """Base for a screen whose widgets have timers: they are paused on ScreenSuspend, resumed on ScreenResume.
    A subclass that has loops of its own pauses them in its own `on_screen_suspend` (both handlers run)."""

    _paused_timers: list[Timer] | None = None

    def on_screen_suspend(self) -> None:
        self._paused_timers = pause_timers(self)

    def on_screen_resume(self) -> None:
        for timer in self._paused_timers or ():
            timer.resume()
        self._paused_timers = None
