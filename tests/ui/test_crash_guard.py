"""No screen can crash the app: a bug in an action, a screen's handler, a worker or a widget shows one line, is
logged with its traceback in the data dir, and the console goes on (keys still switch screens)."""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import Static

from console.ui.guard import LOG_NAME
from console.ui.screens.dashboard import DashboardScreen
from console.ui.widgets.bars import KeyBar
from tests.ui.fixtures import StubEngine, StubRegistry, TestContext, demo_app, make_config, settle

pytestmark = pytest.mark.crash_guard
HOSTILE = "boom \x1b]0;pwned\x07 [red]x[/red]"


def notes_hook(notes: list) -> object:
    return lambda m: notes.append(m.notification) if type(m).__name__ == "Notify" else None


async def still_responsive(pilot) -> None:
    """The person can still get around: digits switch screens."""
    app = pilot.app
    await pilot.press("2")
    await settle(pilot, until=lambda: app.current_mode == "models")
    await pilot.press("1")
    await settle(pilot, until=lambda: app.current_mode == "dashboard")
    assert app.is_running and app.return_code is None


def errors(notes: list) -> list:
    return [n for n in notes if n.severity == "error" and "console goes on" in (n.title or "")]


async def test_an_action_that_fails_is_reported_and_logged(tmp_path, monkeypatch):
    def broken(self) -> None:
        raise RuntimeError(HOSTILE)

    monkeypatch.setattr(DashboardScreen, "action_refresh", broken)
    notes: list = []
    app = demo_app(tmp_path)
    async with app.run_test(size=(80, 24), message_hook=notes_hook(notes)) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot, until=lambda: bool(errors(notes)))
        (note,) = errors(notes)
        first, second = note.message.split("\n")
        assert first.startswith("Dashboard (action refresh): RuntimeError: boom")
        assert "\x1b" not in note.message and "\x07" not in note.message
        log = tmp_path / "data" / LOG_NAME
        assert second == f"details in {log}"
        text = log.read_text()
        assert "Traceback" in text and "in broken" in text and "\x1b" not in text
        assert log.stat().st_mode & 0o777 == 0o600
        await still_responsive(pilot)


async def test_a_worker_that_fails_is_reported(tmp_path):
    class Broken(StubEngine):
        async def list_models(self):
            raise RuntimeError("the adapter has a bug")

    notes: list = []
    app = demo_app(tmp_path, engines=[Broken("broken")])
    async with app.run_test(size=(80, 24), message_hook=notes_hook(notes)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot, until=lambda: bool(errors(notes)))
        assert "Models (reload): RuntimeError: the adapter has a bug" in errors(notes)[0].message
        await still_responsive(pilot)


async def test_a_screen_handler_that_fails_leaves_the_screen_working(tmp_path, monkeypatch):
    def broken(self, message) -> None:
        raise KeyError("engine")

    monkeypatch.setattr(DashboardScreen, "on_engines_refreshed", broken)
    notes: list = []
    app = demo_app(tmp_path)
    async with app.run_test(size=(80, 24), message_hook=notes_hook(notes)) as pilot:
        await settle(pilot, until=lambda: bool(errors(notes)))
        assert "Dashboard (EnginesRefreshed): KeyError" in errors(notes)[0].message
        # The screen's own message loop still runs: its key still works and the tick still polls.
        await pilot.press("e")
        await settle(pilot)
        await still_responsive(pilot)


async def test_a_widget_that_fails_is_reported_and_the_app_goes_on(tmp_path):
    notes: list = []
    app = demo_app(tmp_path)

    def boom() -> None:
        raise ValueError("a widget's bug")

    async with app.run_test(size=(80, 24), message_hook=notes_hook(notes)) as pilot:
        await settle(pilot)
        app.screen.query_one(KeyBar).call_later(boom)
        # Not pilot.pause(): it counts on every widget answering, and this one's loop is ending.
        for _ in range(200):
            if errors(notes):
                break
            await asyncio.sleep(0.01)
        assert "ValueError: a widget's bug" in errors(notes)[0].message
        await still_responsive(pilot)


async def test_the_same_error_again_is_logged_not_shown_again(tmp_path, monkeypatch):
    calls = 0

    def broken(self) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("again")

    monkeypatch.setattr(DashboardScreen, "action_refresh", broken)
    notes: list = []
    app = demo_app(tmp_path)
    async with app.run_test(size=(80, 24), message_hook=notes_hook(notes)) as pilot:
        await settle(pilot)
        await pilot.press("r", "r", "r")
        await settle(pilot, until=lambda: calls == 3)
        assert len(errors(notes)) == 1
        assert (tmp_path / "data" / LOG_NAME).read_text().count("RuntimeError: again") == 3


async def test_a_data_dir_that_cannot_be_written_is_said_in_the_notice(tmp_path, monkeypatch):
    monkeypatch.setattr(DashboardScreen, "action_refresh", lambda self: 1 / 0)
    (tmp_path / "file").write_text("not a directory")
    config = make_config(tmp_path)
    config = type(config)(**{**config.__dict__, "data_dir": tmp_path / "file" / "data"})
    notes: list = []
    from console.ui.app import EngineDeckApp

    app = EngineDeckApp(TestContext(config, StubRegistry([StubEngine("one")])))
    async with app.run_test(size=(80, 24), message_hook=notes_hook(notes)) as pilot:
        await settle(pilot, until=lambda: app.engines_ready)
        await pilot.press("r")
        await settle(pilot, until=lambda: bool(errors(notes)))
        assert "ZeroDivisionError" in errors(notes)[0].message
        assert "not logged: " in errors(notes)[0].message
        await still_responsive(pilot)
        assert isinstance(app.screen.query_one("#status-line"), Static)
