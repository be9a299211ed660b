"""Every private name of a dependency that enginedeck uses (console/ui/textual_compat.py, docs/architecture.md):
one test each that fails when the installed release no longer has it, and one that the fallback keeps the console
working without it. An upgrade that moves a name fails here, with the name, instead of costing CPU or a crash
guard in production."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
from contextvars import ContextVar

import pytest
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Static

from console.ui import textual_compat
from console.ui.driver import TEXTUAL_TICK_S


class Host(App[None]):
    """A bare Textual app: these tests are about Textual itself, not about enginedeck's app."""

    def compose(self) -> ComposeResult:
        yield Static("timers", id="ticker")
        yield DataTable(id="table")


class Bare:
    """A node, timer, parser or table from a Textual that has moved every private name."""


# -- a widget's timers (console/ui/calm.py: a hidden screen costs nothing) -------------------------------------

async def test_widget_timers_and_their_running_flag_are_where_calm_reads_them():
    async with Host().run_test() as pilot:
        widget = pilot.app.query_one("#ticker")
        assert hasattr(widget, "_timers")
        timer = widget.set_interval(60, lambda: None)
        assert hasattr(timer, "_active") and hasattr(timer._active, "is_set")
        assert textual_compat.running_timers(widget) == [timer]
        timer.pause()
        assert textual_compat.running_timers(widget) == []
        timer.resume()
        assert textual_compat.running_timers(widget) == [timer]


def test_without_them_no_timer_is_paused():
    assert textual_compat.running_timers(Bare()) == []  # type: ignore[arg-type]


# -- the first theme without the watcher (console/ui/app.py: _set_theme) ---------------------------------------

def test_the_truecolor_filter_refresh_is_where_the_app_calls_it():
    refresh = getattr(App, "_refresh_truecolor_filter", None)
    assert callable(refresh)
    assert list(inspect.signature(refresh).parameters) == ["self", "theme"]


def test_without_it_the_theme_is_still_set():
    assert textual_compat.refresh_ansi_colours(Bare()) is False  # type: ignore[arg-type]


# -- the crash guard (console/ui/guard.py, EngineDeckApp._handle_exception) -------------------------------------

def test_textuals_exception_handler_is_the_method_the_app_overrides():
    handler = getattr(App, "_handle_exception", None)
    assert callable(handler)
    assert list(inspect.signature(handler).parameters) == ["self", "error"]
    # ... and Textual calls it when a handler fails (the app's override is exercised by tests/ui/test_crash_guard.py)
    source = inspect.getsource(importlib.import_module("textual.message_pump"))
    assert "_handle_exception(" in source


def test_the_active_message_pump_is_where_the_guard_reads_it():
    from textual._context import active_message_pump

    assert isinstance(active_message_pump, ContextVar)
    assert textual_compat.active_pump() is None  # no handler is running here


async def test_the_active_pump_is_the_node_whose_handler_runs():
    async with Host().run_test() as pilot:
        seen: list[object] = []
        widget = pilot.app.query_one("#ticker")
        widget.call_later(lambda: seen.append(textual_compat.active_pump()))
        await pilot.pause()
        assert seen == [widget]


async def test_a_screens_message_handler_can_be_wrapped_on_one_instance():
    calls: list[str] = []

    def wrap(handle):
        async def wrapped(message):
            calls.append(type(message).__name__)
            await handle(message)

        return wrapped

    async with Host().run_test() as pilot:
        screen = Screen()
        assert textual_compat.wrap_message_handler(screen, wrap) is True
        assert inspect.iscoroutinefunction(Screen._on_message)
        await pilot.app.push_screen(screen)
        await pilot.pause()
        assert calls  # every event of the screen went through the wrapper
        assert Screen._on_message is not screen._on_message  # the class is untouched


def test_without_it_the_screen_is_left_as_it_is():
    assert textual_compat.wrap_message_handler(Bare(), lambda h: h) is False  # type: ignore[arg-type]


def test_textual_fatal_without_the_handler_exits_with_status_1(monkeypatch):
    exits: list[tuple[int | None, object]] = []

    class Exiting:
        def exit(self, return_code: int | None = None, message: object = None) -> None:
            exits.append((return_code, message))

    monkeypatch.delattr(App, "_handle_exception")
    textual_compat.textual_fatal(Exiting(), RuntimeError("boom"))  # type: ignore[arg-type]
    assert exits == [(1, "RuntimeError: boom")]


# -- one cell repainted alone (console/ui/screens/dashboard.py: set_cell) ---------------------------------------

async def test_a_cell_can_change_without_repainting_the_table():
    async with Host().run_test() as pilot:
        table = pilot.app.query_one(DataTable)
        (column,) = table.add_columns("figure")
        row = table.add_row("1")
        count = table._update_count
        assert textual_compat.set_cell_quietly(table, row, column, "2") is True
        assert table.get_cell(row, column) == "2" and table._update_count == count + 1


async def test_quiet_changes_leave_no_stale_render_cache_behind():
    # Every change moves the count the render caches are keyed on; without emptying them, a dashboard polled for
    # ten minutes kept up to 10,000 stale cells per table (+17 MB RSS).
    assert callable(getattr(DataTable, "_clear_caches", None))
    async with Host().run_test(size=(40, 10)) as pilot:
        table = pilot.app.query_one(DataTable)
        (column,) = table.add_columns("figure")
        rows = [table.add_row(str(i)) for i in range(5)]
        await pilot.pause()
        for n in range(300):
            assert textual_compat.set_cell_quietly(table, rows[n % 5], column, str(n % 7)) is True
            table.refresh()
            await pilot.pause()
        assert len(table._cell_render_cache) <= 2 * len(rows)
        assert table.get_cell(rows[4], column) == str(299 % 7)


def test_without_them_the_cell_is_left_to_update_cell():
    assert textual_compat.set_cell_quietly(Bare(), "r", "c", "2") is False  # type: ignore[arg-type]


# -- the terminal driver (console/ui/driver.py) ---------------------------------------------------------------

def test_the_input_parser_and_its_deadline_are_where_the_driver_reads_them():
    from textual._time import get_time
    from textual._xterm_parser import XTermParser

    assert callable(get_time)
    parser = textual_compat.xterm_parser(False)
    assert isinstance(parser, XTermParser) and hasattr(parser, "_timeout_time")
    list(parser.feed("\x1b"))  # a lone ESC: the parser sets a deadline for the rest of a sequence
    wait = textual_compat.parser_wait_s(parser, TEXTUAL_TICK_S)
    assert wait is not None and 0 < wait <= 1.0


def test_without_the_deadline_the_driver_ticks_like_textual():
    assert textual_compat.parser_wait_s(Bare(), TEXTUAL_TICK_S) == TEXTUAL_TICK_S


def test_without_the_parser_the_app_uses_textuals_driver(monkeypatch, tmp_path):
    import sys

    from textual.drivers.linux_driver import LinuxDriver

    from console.ui.app import EngineDeckApp
    from console.ui.driver import QuietLinuxDriver
    from tests.ui.fixtures import TestContext, make_config

    if sys.platform == "win32":
        pytest.skip("the POSIX terminal driver")
    app = EngineDeckApp(TestContext(make_config(tmp_path)))
    monkeypatch.setattr("textual.constants.DRIVER", None)
    assert app.get_driver_class() is QuietLinuxDriver
    monkeypatch.setattr(textual_compat, "xterm_parser", lambda debug: None)
    assert app.get_driver_class() is LinuxDriver


# -- other dependencies ----------------------------------------------------------------------------------------

def test_httpx_still_has_the_cli_module_that_start_up_blocks():
    # console/cli.py puts None in sys.modules["httpx._main"] so that `import httpx` skips its command-line client
    # (~40 ms). If httpx renames it, nothing breaks: start-up pays the 40 ms again, and this test says so.
    assert importlib.util.find_spec("httpx._main") is not None
    assert "._main" in inspect.getsource(importlib.import_module("httpx"))


def test_logging_opens_its_file_where_the_crash_log_makes_it_private():
    # console/ui/guard.py overrides FileHandler._open to create ui-errors.log with mode 600 (the mode itself is
    # tested in tests/ui/test_crash_guard.py); a logging that opens its file elsewhere would skip the override.
    assert callable(getattr(logging.FileHandler, "_open", None))
    assert "self._open()" in inspect.getsource(logging.FileHandler)


def test_no_other_private_textual_module_is_imported_by_the_console():
    # Every private import lives in textual_compat.py; anywhere else it would have no fallback and no test here.
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2] / "console"
    private = re.compile(r"^\s*(from|import)\s+(textual|rich|httpx|ollama)(\.\w+)*\._", re.MULTILINE)
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.name != "textual_compat.py" and private.search(p.read_text())]
    assert offenders == []



# -- the keymap's keys (console/ui/keymap.py) ------------------------------------------------------------------

def test_keys_are_normalised_as_textuals_keymap_compares_them():
    from textual.keys import _normalize_key_list

    assert _normalize_key_list("?,ctrl+r") == "question_mark,ctrl+r"
    assert textual_compat.normalize_keys("?, /,G,ctrl+r") == "question_mark,slash,G,ctrl+r"


def test_without_textuals_the_fallback_names_keys_the_same(monkeypatch):
    import textual.keys

    monkeypatch.delattr(textual.keys, "_normalize_key_list")
    assert textual_compat.normalize_keys("?, /,@,G,ctrl+r") == "question_mark,slash,at,G,ctrl+r"
