"""The Textual app: a shell of screens (one Textual mode each), services passed in, nothing done at import.

Screens switch on the digits 1-5 everywhere, so letters stay free for each screen's own actions.

Screens are registered by module path and imported the first time they are opened, so start-up pays only for
the dashboard. Each screen is a mode: switching away keeps it alive, so a running chat stream or probe goes on.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen

from console.ui.themes import NO_COLOR_THEME, load_themes

if TYPE_CHECKING:
    from console.commands.context import Context
    from console.engines.registry import EngineEntry
    from console.store.db import Store


@dataclass(frozen=True)
class ScreenSpec:
    key: str
    title: str
    target: str  # "module:Class"
    description: str

    def load(self) -> type[Screen]:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


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
}


def ascii_wanted(explicit: bool | None, configured: bool) -> bool:
    """--ascii, the config, or a terminal that cannot draw box characters (Linux console, VT100)."""
    if explicit is not None:
        return explicit
    return configured or os.environ.get("TERM", "") in ("linux", "vt100", "vt220", "dumb")


class EnginesRefreshed(Message):
    """The registry finished a refresh: screens showing engines should redraw from it."""

    def __init__(self, entries: list[EngineEntry]) -> None:
        super().__init__()
        self.entries = entries


class EngineDeckApp(App[int]):
    TITLE = "enginedeck"
    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = True
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (120, "-wide")]
    MODES: ClassVar[dict[str, str]] = {}  # filled in __init__ with lazy factories
    BINDINGS: ClassVar[list[BindingType]] = [
        *[Binding(spec.key, f"switch_mode('{name}')", spec.title, id=f"screen-{name}")
          for name, spec in SCREENS.items()],
        Binding("question_mark", "help", "Help", key_display="?", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, ctx: Context, *, ascii_mode: bool = False, theme: str | None = None) -> None:
        self.ctx = ctx
        self.ascii_mode = ascii_mode
        self._requested_theme = theme
        self.store: Store | None = None
        self.store_problem: str | None = None
        super().__init__()
        for name, spec in SCREENS.items():
            self.add_mode(name, self._factory(spec))

    @staticmethod
    def _factory(spec: ScreenSpec) -> Callable[[], Screen]:
        return lambda: spec.load()()

    @property
    def read_only(self) -> bool:
        return self.ctx.config.read_only

    def on_mount(self) -> None:
        loaded = load_themes()
        for theme in loaded.themes.values():
            self.register_theme(theme)
        for problem in loaded.problems:
            self.notify(problem, title="Theme skipped", severity="warning", markup=False)
        wanted = NO_COLOR_THEME if os.environ.get("NO_COLOR") else (
            self._requested_theme or self.ctx.config.ui.theme)
        if wanted in loaded.themes:
            self.theme = wanted
        else:
            self.notify(f"theme {wanted!r} not found; using dark", severity="warning", markup=False)
            self.theme = "dark" if "dark" in loaded.themes else "textual-dark"
        if self.ascii_mode:
            self.add_class("-ascii")
        self.switch_mode("dashboard")
        self.run_worker(self._open_store(), name="open-store", group="store", exclusive=True,
                        exit_on_error=False)
        self.refresh_engines()

    async def _open_store(self) -> None:
        from console.errors import StoreError

        try:
            self.store = await self.ctx.store()
        except StoreError as exc:
            self.store_problem = str(exc)
            self.notify(f"History is off: {exc}", title="Store", severity="warning", timeout=10, markup=False)

    def refresh_engines(self) -> None:
        """Rediscover and re-poll every engine off the UI thread; screens get EnginesRefreshed."""
        self.run_worker(self._refresh_engines(), name="refresh-engines", group="engines", exclusive=True,
                        exit_on_error=False)

    async def _refresh_engines(self) -> None:
        entries = await self.ctx.registry().refresh()
        if self.screen is not None:
            for screen in self._each_screen():
                screen.post_message(EnginesRefreshed(entries))

    def _each_screen(self) -> Iterable[Screen]:
        for stack in self._screen_stacks.values():
            yield from stack

    async def on_unmount(self) -> None:
        await self.ctx.aclose()

    def action_help(self) -> None:
        from console.ui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette lists every screen and every action the current screen offers, with its key."""
        for name, spec in SCREENS.items():
            yield SystemCommand(f"Open {spec.title}  [{spec.key}]", spec.description,
                                lambda name=name: self.switch_mode(name))
        for active in screen.active_bindings.values():
            binding = active.binding
            if not binding.show or binding.action.startswith("switch_mode") or not binding.description:
                continue
            yield SystemCommand(
                f"{binding.description}  [{binding.key_display or binding.key}]",
                active.tooltip or binding.tooltip or binding.description,
                lambda node=active.node, action=binding.action: self.run_action(action, node),
                discover=active.enabled,
            )
        yield SystemCommand("Refresh engines", "Rediscover and poll every engine now", self.refresh_engines)
        yield from super().get_system_commands(screen)


def run_tui(ctx: Context) -> int:
    app = EngineDeckApp(ctx, ascii_mode=ascii_wanted(ctx.ascii, ctx.config.ui.ascii), theme=ctx.theme)
    return app.run() or 0
