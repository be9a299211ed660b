"""The Textual app: a shell of screens (one Textual mode each), services passed in, nothing done at import.

Conventions every screen follows (chat, probe and logs too):

- A screen is a `Screen` subclass named in `SCREENS` as "module:Class"; it is imported the first time it is
  opened, so start-up pays only for the dashboard. Import heavy modules (Markdown, plotext, aiosqlite users)
  inside the screen module or inside the method that needs them, never in this file.
- Each screen is a mode: switching away keeps it alive, so a running chat stream or probe goes on. Digits
  1-6 switch screens everywhere; letters are free for each screen's own actions. A focused text field takes
  digits and letters as text; escape always leaves it: the app sees to it after the screen's own escape
  binding (if any) has run, calling the screen's `leave_field()` when it has one to say where focus goes.
  Set `AUTO_FOCUS` to a widget that is not a text field, so that a digit typed on arrival switches screens.
- A screen that is not shown costs nothing: subclass `console.ui.calm.QuietWhenHidden` when its widgets
  have timers, and pause the screen's own loops in `on_screen_suspend` (work that must go on runs in workers).
- Services come from the app, never from globals, typed: a screen subclasses `console.ui.base.DeckScreen` and
  reads `self.ctx` (a `console.services.Context`: `config`, `registry()`, `engine(ref)`, `store()`, `actions()`)
  and `self.deck` (the app as `console.ui.base.Deck`): `read_only`, `store` (None until opened, `store_problem`
  says why), and the telemetry sources `gpu_monitor`, `host_monitor`, `scan_processes`; a widget calls
  `deck(self)`. Tests inject stubs through the constructor.
- Every binding has an `id` (the config's [keymap] moves keys by id, console/ui/keymap.py: a class with bindings
  that is not a screen, a HELP_WIDGET or listed there fails tests/ui/test_keymap.py) and a description; a hint that
  names a key asks `self.key_of(binding_id)`, so it names the person's key. A mutating binding is refused in
  `check_action` under `--read-only` (return None so the footer greys it out) and the screen says why in words: its
  `why_refused(action)` returns them, and the app shows them when the greyed key is pressed. The palette
  (every screen's actions, from anywhere) and the help screen list bindings from `BINDINGS`, so there is
  nothing else to register, except that a widget with keys of its own (the chat prompt) goes in its
  screen's `HELP_WIDGETS`.
- Engine lists come from the registry; when it finishes a refresh the app posts `EnginesRefreshed` to every
  screen (and publishes `engines_changed` for widgets). `self.app.engines_ready` is False until the first
  refresh is done. While no engine is known, the app adds a `NoEngineNote` to every screen but the dashboard.
- Network and disk work runs in workers: `@work(exclusive=True, group=..., exit_on_error=False)` for async
  I/O, `thread=True` only for blocking libraries (NVML, psutil, file scans). A worker that fails in a way it
  expects tells the person with `notify(..., markup=False)`; untrusted text goes through
  `console.logs.sanitize` first. Anything unexpected (a bug) is caught by the crash guard (console/ui/guard.py):
  one line on screen, the traceback in the data dir's ui-errors.log, and the app goes on.
- Borders: use the `.panel` class or `border: round`; the app class `-ascii` switches them to ASCII (add a
  `.-ascii YourWidget` rule for your own borders), and `self.app.has_class("-ascii")` says to avoid glyphs.
- Repaint only when something changed: compare before `update()`, keep histories in bounded deques.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, overload

from textual.actions import parse as parse_action
from textual.app import App, ScreenStackError, SystemCommand, UnknownModeError
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.signal import Signal
from textual.widget import Widget

from console.ui import textual_compat
from console.ui.focus import text_field_has_focus
from console.ui.guard import CrashReporter, guard_screen, screen_name
from console.ui.keymap import key_text, resolve_keymap
from console.ui.messages import EnginesRefreshed
from console.ui.screens import SCREENS, ScreenSpec
from console.ui.themes import load_themes

if TYPE_CHECKING:
    import asyncio

    from textual import events
    from textual.actions import ActionParseResult
    from textual.dom import DOMNode
    from textual.driver import Driver
    from textual.screen import ScreenResultCallbackType
    from textual.widget import AwaitMount
    from textual.worker import Worker

    from console.engines.poll import FirstPoll
    from console.engines.registry import EngineEntry
    from console.services import Context
    from console.store.db import Store
    from console.telemetry.gpu import GpuMonitor
    from console.telemetry.host import HostMonitor
    from console.ui.base import Deck, ProcessScan

ResultT = TypeVar("ResultT")


# The garbage collector after start-up. CPython's full collection stops every thread, the UI loop's included, for
# as long as it takes to walk every tracked object (~25 ms for this app's ~50,000 on the 2-core box): a followed
# log growing at 20 MiB/s triggered six in five seconds, each a stall. A young generation of 10,000 objects
# instead of 700 (a young collection then takes ~1-3 ms) makes full collections about fourteen times rarer, and
# freezing start-up's objects once it has settled takes them out of every later walk (docs/performance.md).
GC_YOUNG_THRESHOLD = 10_000

# Screens that say "no engine" in a notice when opened rather than in a line of their own: the logs screen has
# work without any engine (the audit trail, files, journald units) and needs its height for the panes.
NOTE_AS_NOTICE = frozenset({"logs"})


class EngineDeckApp(App[int]):
    TITLE = "enginedeck"
    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = True
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]  # noqa: RUF012 - App declares it an instance variable, not a ClassVar
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {}  # filled in __init__ with lazy factories
    DEFAULT_MODE = "dashboard"  # the first screen composed: no default screen to build and switch away from
    BINDINGS: ClassVar[list[BindingType]] = [
        *[Binding(spec.key, f"open_screen('{name}')", spec.title, id=f"screen-{name}")
          for name, spec in SCREENS.items()],
        Binding("question_mark", "help", "Help", key_display="?", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, ctx: Context, *, ascii_mode: bool = False, theme: str | None = None,
                 gpu_monitor: GpuMonitor | None = None, host_monitor: HostMonitor | None = None,
                 scan_processes: ProcessScan | None = None, first_poll: FirstPoll | None = None) -> None:
        """Args:
            ctx: the run's services (config, registry, store, actions).
            ascii_mode: ASCII borders and no glyphs.
            theme: a theme name that wins over the config (whose theme already heeds NO_COLOR).
            gpu_monitor, host_monitor, scan_processes: telemetry sources; the real ones are built on first use
                (in a worker thread), tests pass fakes with fixed figures.
            first_poll: the registry's first refresh and the engines' first polls, started before the app
                (console/ui/start.py): the app takes them over instead of asking again.
        """
        self.ctx = ctx
        self.ascii_mode = ascii_mode
        self._requested_theme = theme
        self.store: Store | None = None
        self.store_problem: str | None = None
        self.first_poll = first_poll
        self.engines_ready = first_poll is not None and first_poll.refresh.done() \
            and not first_poll.refresh.cancelled() and first_poll.refresh.exception() is None
        """True once the registry has finished its first refresh (until then "no engine" would be a lie)."""
        self._first_refresh = first_poll.refresh if first_poll is not None else None
        self._gc_thresholds: tuple[int, int, int] | None = None  # the collector's, before the app's own
        self._start_work = {"store", "engines"}  # start-up work still running (see _started)
        self._gpu_monitor = gpu_monitor
        self._host_monitor = host_monitor
        self._scan_processes = scan_processes
        self._mode_screens: dict[str, Screen[Any]] = {}  # each mode's screen, once built
        super().__init__()
        self.keymap = resolve_keymap(ctx.config, self.BINDINGS)
        """The person's keys (binding id -> keys, console/ui/keymap.py): Textual's keymap, and what lists show."""
        if self.keymap:
            self.set_keymap(self.keymap)
        self.crash_reporter = CrashReporter(self, ctx.config.data_dir, fatal=self._fatal)
        self.engines_changed: Signal[list[EngineEntry]] = Signal(self, "engines-changed")
        """Published after every registry refresh, for widgets (screens get EnginesRefreshed)."""
        self.firing_alerts: tuple[str, ...] = ()  # names of the alert rules firing now ([alerts] rules_file)
        self.alerts_changed: Signal[tuple[str, ...]] = Signal(self, "alerts-changed")
        for name, spec in SCREENS.items():
            self.add_mode(name, self._factory(name, spec))
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
        textual_compat.refresh_ansi_colours(self)
        return problems

    def get_driver_class(self) -> type[Driver]:
        """Textual's own driver where it picks one from the environment (textual serve) or on Windows; elsewhere
        the same terminal driver with an input thread that sleeps while nothing is typed (console/ui/driver.py)."""
        from textual import constants

        if sys.platform == "win32" or constants.DRIVER is not None or textual_compat.xterm_parser(False) is None:
            return super().get_driver_class()
        from console.ui.driver import QuietLinuxDriver

        return QuietLinuxDriver

    def _factory(self, name: str, spec: ScreenSpec) -> Callable[[], Screen[Any]]:
        def build() -> Screen[Any]:
            screen = self._mode_screens[name] = self._guarded(spec.load()())
            return screen

        return build

    def _guarded(self, screen: Screen[ResultT]) -> Screen[ResultT]:
        guard_screen(screen, self.crash_reporter.report)
        return screen

    if TYPE_CHECKING:  # Textual's own overloads: the result type follows wait_for_dismiss
        @overload
        def push_screen(self, screen: Screen[ResultT] | str, callback: ScreenResultCallbackType[ResultT] | None = None,
                        wait_for_dismiss: Literal[False] = False, *, mode: str | None = None) -> AwaitMount: ...

        @overload
        def push_screen(self, screen: Screen[ResultT] | str, callback: ScreenResultCallbackType[ResultT] | None = None,
                        wait_for_dismiss: Literal[True] = True, *, mode: str | None = None) -> asyncio.Future[ResultT]:
            ...

    def push_screen(self, screen: Screen[ResultT] | str, callback: ScreenResultCallbackType[ResultT] | None = None,
                    wait_for_dismiss: bool = False, *, mode: str | None = None) -> AwaitMount | asyncio.Future[ResultT]:
        """Every pushed screen (dialogs, help) gets the same guard as the mode screens."""
        if isinstance(screen, Screen):
            self._guarded(screen)
        if wait_for_dismiss:
            return super().push_screen(screen, callback, wait_for_dismiss=True, mode=mode)
        return super().push_screen(screen, callback, wait_for_dismiss=False, mode=mode)

    # -- the crash guard (console/ui/guard.py) ---------------------------------------------------------------
    async def run_action(self, action: str | ActionParseResult, default_namespace: DOMNode | None = None,
                         namespaces: Mapping[str, DOMNode] | None = None) -> bool:
        """Every key binding, palette command and key-bar click lands here. A refused action that can say why
        (the screen's `why_refused`) says so instead of doing nothing; one that fails is reported, and the app
        goes on."""
        try:
            target, name, params = self._action_target(
                action, self if default_namespace is None else default_namespace, namespaces)
            why_refused = getattr(target, "why_refused", None)
            if target is not None and callable(why_refused) and target.check_action(name, params) is None \
                    and (reason := why_refused(name)):
                self.notify(reason, title="Not now", severity="warning", markup=False)
                return True
            return await super().run_action(action, default_namespace, namespaces)
        except Exception as error:  # one bug must not end the console
            where = self._where()
            self.crash_reporter.report(f"{where} (action {action if isinstance(action, str) else action[1]})",
                                       error)
            return True

    def _where(self) -> str:
        """The screen shown now, for a report; "app" before the first screen (or after the last)."""
        try:
            return screen_name(self.screen)
        except (ScreenStackError, UnknownModeError):
            return "app"

    def _action_target(self, action: str | ActionParseResult, default_namespace: DOMNode,
                       namespaces: Mapping[str, DOMNode] | None) -> tuple[DOMNode | None, str, tuple[object, ...]]:
        """The node an action runs on, its name and parameters, as Textual resolves them: a namespace given by
        the caller, then `app.`, `screen.` or `focused.`, else the default. None: a namespace Textual will refuse
        itself."""
        destination, name, params = action if isinstance(action, tuple) else parse_action(action)
        target = None if namespaces is None else namespaces.get(destination)
        if target is not None or not destination:
            return (default_namespace if target is None else target), name, params
        if destination == "app":
            return self, name, params
        if destination == "screen":
            return self.screen, name, params
        return (self.focused if destination == "focused" else None), name, params

    def _fatal(self, error: BaseException) -> None:
        """Textual's own handling of an error (print the traceback and exit): the crash guard's strict mode."""
        textual_compat.textual_fatal(self, error)

    def _handle_exception(self, error: Exception) -> None:
        """What reaches Textual's own handler: a widget's handler, a timer, a worker started with
        exit_on_error. Reported, and the app goes on, unless it is the app's own message loop that failed (that
        loop ends after this call, so only Textual's exit is left). The method is Textual's private one
        (console/ui/textual_compat.py: tests/ui/test_textual_drift.py fails if Textual stops calling it)."""
        from textual.worker import WorkerFailed

        pump = textual_compat.active_pump()
        if isinstance(error, WorkerFailed):
            error = error.error if isinstance(error.error, Exception) else error
        elif pump is None or pump is self or not self.is_running:
            self.crash_reporter._log("app", error)
            super()._handle_exception(error)
            return
        where = screen_name(pump.screen) if isinstance(pump, Widget) and pump.is_attached else "app"
        self.crash_reporter.report(f"{where} ({type(pump).__name__})", error)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The app's own workers (store, engines): one that fails is reported like a screen's."""
        from textual.worker import WorkerState

        if event.state is WorkerState.ERROR and isinstance(event.worker.error, BaseException):
            self.crash_reporter.report(f"app ({event.worker.name})", event.worker.error)

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
        self._gc_thresholds = gc.get_threshold()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *self._gc_thresholds[1:])
        gc.enable()
        self.run_worker(self._open_store(), name="open-store", group="store", exclusive=True,
                        exit_on_error=False)
        self.refresh_engines()
        if (rules_file := self.ctx.config.alerts.rules_file) is not None:
            from console.ui.alerts import watch_alerts

            self.run_worker(watch_alerts(rules_file, self.ctx.registry(), lambda: self.gpu_monitor,
                                         notify=self._alerts_off, changed=self._alerts_firing),
                            name="alerts-loop", group="alerts", exclusive=True, exit_on_error=False)

    def _alerts_off(self, text: str) -> None:
        self.notify(text, title="Alerts", severity="warning", timeout=15, markup=False)

    def _alerts_firing(self, firing: tuple[str, ...]) -> None:
        self.firing_alerts = firing
        self.alerts_changed.publish(firing)

    def _started(self, work: str) -> None:
        """`work` ("store", "engines") of start-up is done. Once both are (the modules they import, the store,
        the first refresh and polls), collect once, while nothing else is going on, and freeze what is left, so
        that a full collection later walks only what the app made since."""
        if work in self._start_work:
            self._start_work.discard(work)
            if not self._start_work:
                gc.collect()
                gc.freeze()

    async def _open_store(self) -> None:
        from console.errors import StoreError

        try:
            self.store = await self.ctx.store()
        except StoreError as exc:
            self.store_problem = str(exc)
            self.notify(f"History is off: {exc}", title="Store", severity="warning", timeout=10, markup=False)
        finally:
            self._started("store")

    def refresh_engines(self) -> None:
        """Rediscover and re-poll every engine off the UI thread; screens get EnginesRefreshed."""
        self.run_worker(self._refresh_engines(), name="refresh-engines", group="engines", exclusive=True,
                        exit_on_error=False)

    async def _refresh_engines(self) -> None:
        from console.errors import EngineDeckError

        first, self._first_refresh = self._first_refresh, None  # the refresh started before the app, once
        try:
            entries = await (first if first is not None else self.ctx.registry().refresh())
        except EngineDeckError as exc:
            self.notify(str(exc), title="Engines", severity="error", timeout=10, markup=False)
            entries = []
        self.engines_ready = True
        self.engines_changed.publish(entries)
        for screen in self._each_screen():
            screen.post_message(EnginesRefreshed(entries))
        self._started("engines")

    def _each_screen(self) -> Iterable[Screen[Any]]:
        """Every mode's screen built so far (the dialogs above them have no use for engine lists)."""
        return list(self._mode_screens.values())

    async def on_unmount(self) -> None:
        if self._gc_thresholds is not None:  # another app in this process (a test) starts from the defaults
            gc.set_threshold(*self._gc_thresholds)
        if self._gpu_monitor is not None:
            self._gpu_monitor.close()
        self.crash_reporter.close()
        await self.ctx.aclose()

    def action_open_screen(self, name: str) -> None:
        """Switch to a screen; one whose module cannot be imported is reported, and the app goes on."""
        self._open_screen(name)

    def _open_screen(self, name: str) -> bool:
        from console.ui.screens.help import HelpScreen

        spec = SCREENS[name]
        try:
            spec.load()
        except (ImportError, AttributeError) as exc:
            self.notify(f"{spec.title} is unavailable: {exc}", title="Screen", severity="error", markup=False)
            return False
        while isinstance(self.screen, HelpScreen):  # a digit on the help screen goes where it says
            self.pop_screen()
        self.switch_mode(name)
        if name in NOTE_AS_NOTICE:
            self._tell_no_engine()
        elif name != "dashboard":  # the dashboard says it in its engines panel
            self.call_after_refresh(self._add_no_engine_note, name)
        return True

    def _tell_no_engine(self) -> None:
        from console.ui.widgets.notes import no_engine_short

        if self.engines_ready and not self.ctx.registry().entries:
            self.notify(no_engine_short(self.ctx.config), title="No engine", severity="warning", timeout=10,
                        markup=False)

    def _add_no_engine_note(self, name: str, tries: int = 20) -> None:
        """Every screen says so while no engine is known (widgets/notes.py): added here, once the screen is
        composed, so that no screen has to remember to."""
        from console.ui.widgets.notes import NoEngineNote

        screen = self._mode_screens.get(name)
        if screen is None or screen.query(NoEngineNote):
            return
        if screen.is_mounted:
            screen.mount(NoEngineNote())
        elif tries:
            self.call_after_refresh(self._add_no_engine_note, name, tries - 1)

    def action_help(self) -> None:
        from console.ui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    def on_key(self, event: events.Key) -> None:
        """Escape always leaves a text field. This runs before the bindings of the key; what they do is looked
        at once they have run: a screen's own escape binding may leave the field itself (and say where focus
        goes), or close a dialog, or do nothing about the field, and only then is the field left here."""
        if event.key == "escape" and text_field_has_focus(self.screen):
            self.call_later(self._after_escape, self.screen)

    def _after_escape(self, screen: Screen[Any]) -> None:
        if self.screen is screen and text_field_has_focus(screen):
            self.leave_field()

    def leave_field(self) -> None:
        """Out of the focused text field. A screen says where focus goes with a `leave_field()` method; otherwise
        it goes to the first widget that is not a text field (none: no focus), so every key reaches the
        bindings."""
        screen = self.screen
        leave = getattr(screen, "leave_field", None)
        if callable(leave):
            leave()
        if text_field_has_focus(screen):
            target = next((w for w in screen.focus_chain if not w.check_consume_key("a", "a")), None)
            screen.set_focus(target)

    # -- the command palette ---------------------------------------------------------------------------------
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Every screen, every action of the screen shown now (with its key), and every action of the other
        screens, which opens that screen and runs it there: "Run probe" works from the dashboard too."""
        for name, spec in SCREENS.items():
            yield SystemCommand(f"Open {spec.title}  [{self.screen_key(name)}]", spec.description,
                                lambda name=name: self.action_open_screen(name))
        here = next((name for name, spec in SCREENS.items() if isinstance(screen, spec.load())), None) \
            if not screen.is_modal else None
        for active in screen.active_bindings.values():
            binding = active.binding
            if not self._palette_worthy(binding, active.node, screen):
                continue
            yield SystemCommand(
                f"{binding.description}  [{binding.key_display or binding.key}]",
                active.tooltip or binding.tooltip or binding.description,
                lambda node=active.node, action=binding.action: self.run_action(action, node),
                discover=active.enabled,
            )
        for name, spec in SCREENS.items():
            if name == here or screen.is_modal:
                continue
            try:
                screen_cls = spec.load()
            except (ImportError, AttributeError):
                continue
            for entry in screen_cls.BINDINGS:
                if isinstance(entry, Binding) and entry.description and entry.key != "escape":
                    yield SystemCommand(
                        f"{spec.title}: {entry.description}  [{self.screen_key(name)} {self.binding_key(entry)}]",
                        entry.tooltip or f"opens {spec.title} and does it there",
                        lambda name=name, action=entry.action: self._run_on_screen(name, action))
        yield SystemCommand("Refresh engines", "Rediscover and poll every engine now", self.refresh_engines)
        yield from super().get_system_commands(screen)

    def screen_key(self, name: str) -> str:
        """The key that opens a screen: its digit, or the person's (console/ui/keymap.py)."""
        return self.keymap.get(f"screen-{name}", SCREENS[name].key)

    def binding_key(self, binding: Binding) -> str:
        """The key a list (help, palette) shows for a binding: the person's when their keymap moved it."""
        return key_text(binding, self.keymap)

    @staticmethod
    def _palette_worthy(binding: Binding, node: DOMNode, screen: Screen[Any]) -> bool:
        """The app's and the screen's own actions, and those of the widgets the screen lists for the help
        (the chat prompt, the session list); not Textual's editing keys of every focused input."""
        if not binding.description or binding.action.startswith("open_screen") \
                or binding.action == "command_palette":
            return False
        return isinstance(node, (App, Screen, *getattr(screen, "HELP_WIDGETS", ())))

    def _run_on_screen(self, name: str, action: str) -> None:
        if self._open_screen(name):
            # Through the screen's own queue: a screen opened just now runs it once composed and mounted.
            screen = self.screen
            screen.call_later(self.run_action, action, screen)



if TYPE_CHECKING:
    def _is_a_deck(app: EngineDeckApp) -> Deck:
        """The app gives screens and widgets all that console/ui/base.py promises them: mypy checks this line."""
        return app
