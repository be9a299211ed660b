"""Every private name of Textual that enginedeck uses, in one place, each with a fallback.

Textual has no public API for these. Each use here says what it is for and what happens when a release moves the
name: the console keeps working, only what the name bought is lost. tests/ui/test_textual_drift.py fails for each
name the installed Textual no longer has, so an upgrade that moves one is noticed, not found out in production.
docs/architecture.md ("Private attributes of dependencies") lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from textual.app import App

if TYPE_CHECKING:
    from textual._xterm_parser import XTermParser
    from textual.message import Message
    from textual.message_pump import MessagePump
    from textual.screen import Screen
    from textual.timer import Timer
    from textual.widgets import DataTable
    from textual.widgets.data_table import ColumnKey, RowKey


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


def refresh_ansi_colours(app: App[Any]) -> bool:
    """Map ANSI colours in text through the app's theme, as Textual's theme watcher does: the app sets its first
    theme without the watcher (console/ui/app.py: `_set_theme`), so it does this part itself.

    `App._refresh_truecolor_filter`. Fallback (False): ANSI colours keep the mapping of Textual's default theme
    until the theme is changed; every other colour follows the theme.
    """
    refresh = getattr(app, "_refresh_truecolor_filter", None)
    if not callable(refresh):
        return False
    refresh(app.ansi_theme)
    return True


def textual_fatal(app: App[Any], error: BaseException) -> None:
    """Textual's own handling of an error: print the traceback and exit (`App._handle_exception`; the crash
    guard's strict mode, for tests). Fallback: exit with status 1 and the error in one line."""
    handle = getattr(App, "_handle_exception", None)
    if callable(handle):
        handle(app, error if isinstance(error, Exception) else Exception(repr(error)))
    else:
        app.exit(return_code=1, message=f"{type(error).__name__}: {error}")


def active_pump() -> MessagePump | None:
    """The message pump (app, screen, widget) whose handler is running now (`textual._context`).

    Fallback: None, which the app's `_handle_exception` treats as its own loop: Textual prints the error and exits,
    as it does without the crash guard. The guard around actions and screens (console/ui/guard.py) still holds.
    """
    try:
        from textual._context import active_message_pump
    except ImportError:
        return None
    return active_message_pump.get(None)


Handler = Callable[["Message"], Coroutine[Any, Any, None]]


def wrap_message_handler(screen: Screen[Any], wrap: Callable[[Handler], Handler]) -> bool:
    """Put `wrap` around the one method every event, message and callback of this screen goes through
    (`MessagePump._on_message`), on this instance only.

    Fallback (False): not wrapped; a failing handler then reaches `App._handle_exception`, which reports it and
    the app goes on, though that screen's message loop may have ended (Textual's issue 2818).
    """
    handle = getattr(screen, "_on_message", None)
    if not callable(handle):
        return False
    setattr(screen, "_on_message", wrap(handle))  # noqa: B010 - this one instance's method, on purpose
    return True


def set_cell_quietly(table: DataTable[Any], row_key: RowKey, column_key: ColumnKey, value: object) -> bool:
    """Change one cell's value without DataTable.update_cell's repaint of the whole table: the table's `_data`
    and the `_update_count` its render caches are keyed on (the caller repaints the cell). The caches are
    emptied too: each change would otherwise leave every cached cell and line under the old count until the LRU
    bounds push them out (10,000 cells and 1,000 lines a table: ten engines polled at 1 Hz grew the TUI's RSS
    by 17 MB over ten minutes). Emptying them costs nothing a repaint of the one cell does not redo.

    Fallback (False, nothing changed): the caller uses `update_cell`, which repaints every row. Without
    `_clear_caches` the change is still made; the caches then stay within those LRU bounds.
    """
    data = getattr(table, "_data", None)
    count = getattr(table, "_update_count", None)
    if not isinstance(data, dict) or not isinstance(count, int) or row_key not in data:
        return False
    data[row_key][column_key] = value
    table._update_count = count + 1
    clear_caches = getattr(table, "_clear_caches", None)
    if callable(clear_caches):
        clear_caches()
    return True


def normalize_keys(keys: str) -> str:
    """Keys as Textual's keymap compares them: "?" is "question_mark", "/" is "slash" (`textual.keys.
    _normalize_key_list`, which `App.set_keymap` applies). Fallback: a character's Unicode name, lower case, with
    Textual's names for the few it renames; a key written as a name is the same either way."""
    try:
        from textual.keys import _normalize_key_list
    except ImportError:
        return ",".join(_character_key(key.strip()) if len(key.strip()) == 1 else key.strip()
                        for key in keys.split(","))
    return _normalize_key_list(keys)


def _character_key(character: str) -> str:
    import unicodedata

    if character.isalnum():
        return character
    try:
        name = unicodedata.name(character).lower().replace("-", "_").replace(" ", "_")
    except ValueError:
        return character
    return {"solidus": "slash", "reverse_solidus": "backslash", "commercial_at": "at",
            "hyphen_minus": "minus", "plus_sign": "plus", "low_line": "underscore"}.get(name, name)


# -- the terminal driver (console/ui/driver.py) ---------------------------------------------------------------

def xterm_parser(debug: bool) -> XTermParser | None:
    """Textual's parser of terminal input (`textual._xterm_parser.XTermParser`), or None: the app then uses
    Textual's own driver (console/ui/app.py: `get_driver_class`), whose input thread wakes ten times a second."""
    try:
        from textual._xterm_parser import XTermParser
    except ImportError:
        return None
    return XTermParser(debug)


def parser_wait_s(parser: object, fallback_s: float) -> float | None:
    """How long until the parser's deadline for an unfinished escape sequence; None: it has none (wait for input).

    The parser's private `_timeout_time` on Textual's private clock `textual._time.get_time`. Fallback:
    `fallback_s` (Textual's own tick), so a lone ESC still becomes the escape key.
    """
    try:
        deadline = getattr(parser, "_timeout_time")  # noqa: B009 - a name Textual may move: see the fallback
        from textual._time import get_time
    except (AttributeError, ImportError):
        return fallback_s
    if deadline is None:
        return None
    return max(0.0, float(deadline) - get_time())
