"""The app's screens by name: key, title, where the class lives ("module:Class") and what it is for.

A screen's module is imported the first time the screen is opened (`ScreenSpec.load`), so start-up pays only for
the dashboard. The app switches between these (one Textual mode each) and the help screen lists their keys.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.screen import Screen


@dataclass(frozen=True)
class ScreenSpec:
    key: str
    title: str
    target: str  # "module:Class"
    description: str

    def load(self) -> type[Screen[Any]]:
        module, _, cls = self.target.partition(":")
        screen_cls: type[Screen[Any]] = getattr(importlib.import_module(module), cls)
        return screen_cls


SCREENS: dict[str, ScreenSpec] = {
    "dashboard": ScreenSpec("1", "Dashboard", "console.ui.screens.dashboard:DashboardScreen",
                            "Engines, loaded models, GPU and host at a glance"),
    "models": ScreenSpec("2", "Models", "console.ui.screens.models:ModelsScreen",
                         "Every model of every engine: load, unload, swap, pull, delete"),
    "chat": ScreenSpec("3", "Chat", "console.ui.screens.chat:ChatScreen",
                       "Chat sessions with per-message figures, history and compare"),
    "probe": ScreenSpec("4", "Probe", "console.ui.screens.probe:ProbeScreen",
                        "Concurrency probe: how many users can this engine serve"),
    "logs": ScreenSpec("5", "Logs", "console.ui.screens.logs:LogsScreen",
                       "Engine logs, journald units and the audit trail in panes"),
    "traffic": ScreenSpec("6", "Traffic", "console.ui.screens.traffic:TrafficScreen",
                          "Requests through the gateways: in flight, just finished, per client"),
}
