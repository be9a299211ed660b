"""What every screen says while no engine is known: what was looked for (the dashboard), and how to add one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from console.ui.base import deck

if TYPE_CHECKING:
    from console.config import Config
    from console.engines.registry import EngineEntry


def no_engine_message(config: Config, *, refresh: str) -> str:
    """`refresh` says how to look again from where the reader is (the dashboard's `r`, or the palette)."""
    from console.config import default_config_path
    from console.engines.detect import DEFAULT_PORTS

    scanned = (f"Scanned 127.0.0.1 on the default ports ({', '.join(str(p) for p in DEFAULT_PORTS)})."
               if config.discover else "Discovery is off (--no-discover or discover = false).")
    return (
        "No engine found.\n"
        f"{scanned}\n"
        "Point enginedeck at one:  enginedeck --engine http://HOST:PORT\n"
        f"or add an [[engines]] entry (name, url) to {config.path or default_config_path()}\n"
        f"then {refresh}."
    )


def no_engine_short(config: Config) -> str:
    """The same in two lines at 80 columns, for the screens that have their own work to show."""
    from console.config import default_config_path

    return (f"No engine found. Add one: enginedeck --engine http://HOST:PORT, or an [[engines]] entry in "
            f"{config.path or default_config_path()}; then ctrl+p, Refresh engines.")


class NoEngineNote(Static):
    """Shown while the registry's last refresh found no engine; hidden otherwise. The app adds one to every
    screen but the dashboard (which says the same in its engines panel)."""

    DEFAULT_CSS = """
    NoEngineNote { height: auto; padding: 0 1; color: $warning; display: none; }
    """

    def on_mount(self) -> None:
        app = deck(self)
        app.engines_changed.subscribe(self, self._changed)
        if app.engines_ready:
            self._changed(app.ctx.registry().entries)

    def _changed(self, entries: list[EngineEntry]) -> None:
        none = not entries
        if none:
            self.update(Text(no_engine_short(deck(self).ctx.config)))
        if self.display != none:
            self.display = none
