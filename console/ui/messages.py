"""Messages the app posts to its screens."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from console.engines.registry import EngineEntry


class EnginesRefreshed(Message):
    """The registry finished a refresh: screens showing engines should redraw from it."""

    def __init__(self, entries: list[EngineEntry]) -> None:
        super().__init__()
        self.entries = entries
