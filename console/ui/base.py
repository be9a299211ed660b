"""What a screen or a widget may ask of the app, typed: the services, the store, the telemetry sources.

Textual types `self.app` as a plain `App`, which knows nothing of enginedeck. Screens subclass `DeckScreen` and
read `self.deck` (the app, as `Deck`) and `self.ctx` (the services, a `console.services.Context`), and name keys
in hints with `self.key_of(binding_id)` (the person's key, after their [keymap]); a widget calls `deck(self)`.

`Deck` is a protocol rather than the app class so that this module sits below both the app and the screens
(console/ui/app.py imports the screens' map); the app class is checked against it where it is defined, so a
member renamed on one side and not the other fails the type check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, TypeVar, cast

from textual.binding import Binding
from textual.screen import Screen

if TYPE_CHECKING:
    from textual.dom import DOMNode
    from textual.signal import Signal

    from console.engines.poll import FirstPoll
    from console.engines.registry import EngineEntry
    from console.services import Context
    from console.store.db import Store
    from console.telemetry.gpu import GpuMonitor
    from console.telemetry.host import HostMonitor
    from console.telemetry.processes import EngineProcess

    ProcessScan = Callable[[Mapping[int, str]], list[EngineProcess]]

ResultT = TypeVar("ResultT")


class Deck(Protocol):
    """The app as screens and widgets see it (console/ui/app.py's docstring says what each is for)."""

    @property
    def ctx(self) -> Context: ...
    @property
    def read_only(self) -> bool: ...
    @property
    def store(self) -> Store | None:
        """None until the store is open (`store_problem` says why it never opened)."""
    @property
    def store_problem(self) -> str | None: ...
    @property
    def first_poll(self) -> FirstPoll | None: ...
    @property
    def engines_ready(self) -> bool: ...
    @property
    def engines_changed(self) -> Signal[list[EngineEntry]]: ...
    @property
    def gpu_monitor(self) -> GpuMonitor: ...
    @property
    def host_monitor(self) -> HostMonitor: ...
    @property
    def scan_processes(self) -> ProcessScan: ...
    @property
    def keymap(self) -> Mapping[str, str]:
        """The person's keys: binding id -> keys (console/ui/keymap.py)."""
    def screen_key(self, name: str) -> str: ...
    def binding_key(self, binding: Binding) -> str: ...
    def refresh_engines(self) -> None: ...


def deck(node: DOMNode) -> Deck:
    """The app of a mounted screen or widget, typed. Every node of enginedeck is mounted in an EngineDeckApp (the
    tests' too), so this is a view of it, not a conversion."""
    return cast("Deck", node.app)


class DeckScreen(Screen[ResultT]):
    """Base of enginedeck's screens: the typed app and services (a screen never reaches them through a global)."""

    @property
    def deck(self) -> Deck:
        return deck(self)

    @property
    def ctx(self) -> Context:
        return deck(self).ctx

    def key_of(self, binding_id: str) -> str:
        """The key a hint names for one of this screen's bindings (its widgets' and the app's too): the first of the
        person's keys when their keymap moved it (console/ui/keymap.py), else the first of its own."""
        owners = [type(self), *getattr(self, "HELP_WIDGETS", ()), self.app]
        binding = next(b for owner in owners for b in owner.BINDINGS
                       if isinstance(b, Binding) and b.id == binding_id)
        return deck(self).binding_key(binding).split(",")[0]
