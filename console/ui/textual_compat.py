"""Every private name of Textual that enginedeck uses, in one place, each with a fallback.

Textual has no public API for these. Each use here says what it is for and what happens when a release moves the
name: the console keeps working, only what the name bought is lost. tests/ui/test_textual_drift.py fails for each
name the installed Textual no longer has, so an upgrade that moves one is noticed, not found out in production.
docs/architecture.md ("Private attributes of dependencies") lists them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.message_pump import MessagePump
    from textual.timer import Timer


def running_timers(node: MessagePump) -> list[Timer]:
    """The node's timers that are running now (not paused, not stopped).

    Textual keeps a node's timers in its private `_timers` set and whether a timer runs in the timer's private
    `_active` event. Fallback: no timer is reported, so a hidden screen's timers keep running (the CPU they cost
    before console/ui/calm.py), and none is resumed that its widget had paused itself.
    """
    timers: Any = getattr(node, "_timers", None)
    if timers is None:
        return []
    running: list[Timer] = []
    for timer in list(timers):
        active = getattr(timer, "_active", None)
        if active is None:
            return []
        if active.is_set():
            running.append(timer)
    return running
