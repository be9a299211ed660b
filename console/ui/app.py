"""The Textual app: a shell of screens (one Textual mode each), services passed in, nothing done at import.

Conventions every screen follows (chat, probe and logs too):

- A screen is a `Screen` subclass named in `SCREENS` as "module:Class"; it is imported the first time it is
  opened, so start-up pays only for the dashboard. Import heavy modules (Markdown, plotext, aiosqlite users)
  inside the screen module or inside the method that needs them, never in this file.
- Each screen is a mode: switching away keeps it alive, so a running chat stream or probe goes on. Digits
  1-5 switch screens everywhere; letters are free for each screen's own actions. A focused text input takes
  digits and letters as text, so a screen with one binds escape to leave it (focus the main table or log).
- Services come from the app, never from globals: `self.app.ctx` (a `console.commands.context.Context`:
  `config`, `registry()`, `engine(ref)`, `store()`, `actions()`), `self.app.read_only`, `self.app.store`
  (None until opened, `self.app.store_problem` says why), and the telemetry sources `self.app.gpu_monitor`,
  `self.app.host_monitor`, `self.app.scan_processes`. Tests inject stubs through the constructor.
- Every binding has an `id` and a description; a mutating one is refused in `check_action` under
  `--read-only` (return None so the footer greys it out) and the screen says why in words. The palette and
  the help screen list bindings from `BINDINGS`, so there is nothing else to register, except that a widget
  with keys of its own (the chat prompt) goes in its screen's `HELP_WIDGETS` for the help screen.
- Engine lists come from the registry; when it finishes a refresh the app posts `EnginesRefreshed` to every
  screen. `self.app.engines_ready` is False until the first refresh is done.
- Network and disk work runs in workers: `@work(exclusive=True, group=..., exit_on_error=False)` for async
  I/O, `thread=True` only for blocking libraries (NVML, psutil, file scans). A worker that fails tells the
  person with `notify(..., markup=False)`; untrusted text goes through `console.logs.sanitize` first.
- Borders: use the `.panel` class or `border: round`; the app class `-ascii` switches them to ASCII (add a
  `.-ascii YourWidget` rule for your own borders), and `self.app.has_class("-ascii")` says to avoid glyphs.
- Repaint only when something changed: compare before `update()`, keep histories in bounded deques.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen

from console.ui.themes import load_themes

if TYPE_CHECKING:
    from textual.driver import Driver

    from console.commands.context import Context
    from console.engines.registry import EngineEntry
    from console.store.db import Store
    from console.telemetry.gpu import GpuMonitor
    from console.telemetry.host import HostMonitor
    from console.telemetry.processes import EngineProcess

    ProcessScan = Callable[[Mapping[int, str]], list[EngineProcess]]


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
    DEFAULT_MODE = "dashboard"  # the first screen composed: no default screen to build and switch away from
    BINDINGS: ClassVar[list[BindingType]] = [
        *[Binding(spec.key, f"open_screen('{name}')", spec.title, id=f"screen-{name}")
          for name, spec in SCREENS.items()],
        Binding("question_mark", "help", "Help", key_display="?", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, ctx: Context, *, ascii_mode: bool = False, theme: str | None = None,
                 gpu_monitor: GpuMonitor | None = None, host_monitor: HostMonitor | None = None,
                 scan_processes: ProcessScan | None = None) -> None:
        """Args:
            ctx: the run's services (config, registry, store, actions).
            ascii_mode: ASCII borders and no glyphs.
            theme: a theme name that wins over the config (whose theme already heeds NO_COLOR).
            gpu_monitor, host_monitor, scan_processes: telemetry sources; the real ones are built on first use
                (in a worker thread), tests pass fakes with fixed figures.
        """
        self.ctx = ctx
        self.ascii_mode = ascii_mode
        self._requested_theme = theme
        self.store: Store | None = None
        self.store_problem: str | None = None
        self.engines_ready = False
        """True once the registry has finished its first refresh (until then "no engine" would be a lie)."""
        self._gpu_monitor = gpu_monitor
        self._host_monitor = host_monitor
        self._scan_processes = scan_processes
        super().__init__()
        for name, spec in SCREENS.items():
            self.add_mode(name, self._factory(spec))
        self._theme_problems = self._set_theme()
        if ascii_mode:
            self.add_class("-ascii")

    def _set_theme(self) -> list[str]:
        """Register the theme files and start in the wanted theme; returns what went wrong, to notify.

        The theme is in place before the first stylesheet is parsed. Setting `self.theme` on a running app
        makes Textual re-parse and re-apply every stylesheet (~15 % of the first paint), so the value is set
        the way Textual sets its own default in `App.__init__`: without the watcher, with the dark/light
        classes and the ANSI colour mapping that the watcher would have set.
        """
        loaded = load_themes()
        for theme in loaded.themes.values():
            self.register_theme(theme)
        problems = [f"skipped {problem}" for problem in loaded.problems]
        wanted = self._requested_theme or self.ctx.config.ui.theme
        if wanted not in loaded.themes:
            problems.append(f"theme {wanted!r} not found; using dark")
            wanted = "dark" if "dark" in loaded.themes else "textual-dark"
        self.set_reactive(App.theme, wanted)
        dark = self.current_theme.dark
        self.set_class(dark, "-dark-mode", update=False)
        self.set_class(not dark, "-light-mode", update=False)
        self._refresh_truecolor_filter(self.ansi_theme)
        return problems

    def get_driver_class(self) -> type[Driver]:
        """Textual's own driver where it picks one from the environment (textual serve) or on Windows; elsewhere
        the same terminal driver with an input thread that sleeps while nothing is typed (console/ui/driver.py)."""
        from textual import constants

        if sys.platform == "win32" or constants.DRIVER is not None:
            return super().get_driver_class()
        from console.ui.driver import QuietLinuxDriver

        return QuietLinuxDriver

    @staticmethod
    def _factory(spec: ScreenSpec) -> Callable[[], Screen]:
        return lambda: spec.load()()

    @property
    def read_only(self) -> bool:
        return self.ctx.config.read_only

    # Telemetry sources are built lazily: importing pynvml/psutil and initialising NVML is start-up cost the
    # first paint should not pay. Call these from a worker thread.
    @property
    def gpu_monitor(self) -> GpuMonitor:
        if self._gpu_monitor is None:
            from console.telemetry.gpu import GpuMonitor

            self._gpu_monitor = GpuMonitor()
        return self._gpu_monitor

    @property
    def host_monitor(self) -> HostMonitor:
        if self._host_monitor is None:
            from console.telemetry.host import HostMonitor

            self._host_monitor = HostMonitor()
        return self._host_monitor

    @property
    def scan_processes(self) -> ProcessScan:
        if self._scan_processes is None:
            from console.telemetry.processes import engine_processes

            self._scan_processes = engine_processes
        return self._scan_processes

    def on_mount(self) -> None:
        for problem in self._theme_problems:
            self.notify(problem, title="Theme", severity="warning", markup=False)
        # Start-up work begins after the first paint: importing httpx and the engine adapters and opening the
        # database would otherwise hold the dashboard back (docs/performance.md).
        self.call_after_refresh(self._start_services)

    def _start_services(self) -> None:
        # The collector was off for start-up (console.cli.main). Freezing first moves everything allocated so
        # far out of its reach, so the collections the idle dashboard triggers stay small.
        gc.freeze()
        gc.enable()
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
        from console.errors import EngineDeckError

        try:
            entries = await self.ctx.registry().refresh()
        except EngineDeckError as exc:
            self.notify(str(exc), title="Engines", severity="error", timeout=10, markup=False)
            entries = []
        self.engines_ready = True
        for screen in self._each_screen():
            screen.post_message(EnginesRefreshed(entries))

    def _each_screen(self) -> Iterable[Screen]:
        for stack in self._screen_stacks.values():
            yield from stack

    async def on_unmount(self) -> None:
        if self._gpu_monitor is not None:
            self._gpu_monitor.close()
        await self.ctx.aclose()

    def action_open_screen(self, name: str) -> None:
        """Switch to a screen; one whose module cannot be imported is reported, and the app goes on."""
        spec = SCREENS[name]
        try:
            spec.load()
        except (ImportError, AttributeError) as exc:
            self.notify(f"{spec.title} is unavailable: {exc}", title="Screen", severity="error", markup=False)
            return
        self.switch_mode(name)

    def action_help(self) -> None:
        from console.ui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette lists every screen and every action the current screen offers, with its key."""
        for name, spec in SCREENS.items():
            yield SystemCommand(f"Open {spec.title}  [{spec.key}]", spec.description,
                                lambda name=name: self.action_open_screen(name))
        for active in screen.active_bindings.values():
            binding = active.binding
            if binding.action.startswith("open_screen") or binding.action == "command_palette" \
                    or not binding.description:
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
