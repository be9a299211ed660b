"""Every key of every screen, pressed the way a person would, with no engine, with one engine (the Ollama contract
server) and read-only: after each one the console is still running, nothing was reported as a bug, and the person
can still get around (a text field left with escape, a dialog closed with escape, a digit to another screen and
back)."""

from __future__ import annotations

import pytest
from textual.binding import Binding

from console.config import EngineConfig
from console.ui.app import EngineDeckApp
from console.ui.focus import text_field_has_focus
from console.ui.screens import SCREENS
from tests.ui.fixtures import (
    HOST,
    NO_GPU,
    FixedGpu,
    FixedHost,
    StubRegistry,
    TestContext,
    fixed_processes,
    make_config,
    settle,
)

pytestmark = pytest.mark.crash_guard  # reports are collected and asserted on, not raised
STATES = ("no-engine", "one-engine", "read-only")
NEVER = {"q", "ctrl+q"}  # quit: the one key after which the app is meant to be gone (tested in test_app_shell)


def app_in(state: str, tmp_path, server) -> EngineDeckApp:
    if state == "no-engine":
        ctx = TestContext(make_config(tmp_path), StubRegistry([]))
    else:
        engines = [EngineConfig(name="fake", url=server.url, kind="ollama")]
        ctx = TestContext(make_config(tmp_path, engines=engines, read_only=state == "read-only"))
    return EngineDeckApp(ctx, gpu_monitor=FixedGpu(NO_GPU), host_monitor=FixedHost(HOST),
                         scan_processes=fixed_processes())


def keys_of(bindings) -> list[str]:
    keys: list[str] = []
    for b in bindings:
        if isinstance(b, Binding):
            keys += [k.strip() for k in b.key.split(",") if k.strip() not in NEVER and k.strip() not in keys]
    return keys


def screen_keys(name: str) -> list[str]:
    cls = SCREENS[name].load()
    widgets = getattr(cls, "HELP_WIDGETS", ())
    # The app's digits are pressed after every key anyway (back_to); its other keys here.
    app_keys = [b for b in EngineDeckApp.BINDINGS if isinstance(b, Binding) and not b.action.startswith("open_")]
    return keys_of([*cls.BINDINGS, *(b for w in widgets for b in w.BINDINGS), *app_keys])


async def turn(pilot, n: int = 3) -> None:
    for _ in range(n):
        await pilot.pause(0.02)


async def back_to(pilot, name: str, why: str) -> None:
    """Leave whatever the key opened, the way a person would (escape), then a digit away and back."""
    app = pilot.app
    for _ in range(6):
        if not (app.screen.is_modal or text_field_has_focus(app.screen) or app.current_mode != name):
            break
        if app.current_mode != name and not app.screen.is_modal and not text_field_has_focus(app.screen):
            await pilot.press(SCREENS[name].key)
        else:
            await pilot.press("escape")
        await turn(pilot)
    assert app.is_running and app.return_code is None, why
    assert not app.screen.is_modal and not text_field_has_focus(app.screen), (why, app.screen, app.focused)
    other = "models" if name == "dashboard" else "dashboard"
    await pilot.press(SCREENS[other].key)
    await settle(pilot, until=lambda: app.current_mode == other, timeout_s=5)
    await pilot.press(SCREENS[name].key)
    await settle(pilot, until=lambda: app.current_mode == name, timeout_s=5)
    assert not app.crash_reporter.reports, (why, app.crash_reporter.reports)  # nothing turned into a notice


async def open_screen(pilot, name: str) -> None:
    await settle(pilot, until=lambda: pilot.app.engines_ready)
    await pilot.press(SCREENS[name].key)
    await settle(pilot, until=lambda: pilot.app.current_mode == name)
    await turn(pilot)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("name", list(SCREENS))
async def test_every_key_of_every_screen(tmp_path, ollama_server, name, state):
    app = app_in(state, tmp_path, ollama_server)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_screen(pilot, name)
        for key in screen_keys(name):
            await pilot.press(key)
            await turn(pilot)
            await back_to(pilot, name, f"{name}/{state}: {key}")


@pytest.mark.parametrize("state", STATES)
async def test_every_key_of_the_help(tmp_path, ollama_server, state):
    from console.ui.screens.help import HelpScreen

    app = app_in(state, tmp_path, ollama_server)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_screen(pilot, "probe")
        for key in keys_of(HelpScreen.BINDINGS):
            await pilot.press("question_mark")
            await settle(pilot, until=lambda: isinstance(app.screen, HelpScreen))
            await pilot.press(key)
            await turn(pilot)
            assert not isinstance(app.screen, HelpScreen), key  # every key of the help closes it
            target = next((n for n, s in SCREENS.items() if s.key == key), "probe")
            assert app.current_mode == target, key  # a digit goes where it says
            await back_to(pilot, "probe", f"help/{state}: {key}")


# (screen, key that opens the dialog, the dialog's class name)
DIALOGS = [("models", "x", "ConfirmDialog"), ("models", "l", "ChoiceDialog"), ("models", "g", "AskDialog"),
           ("models", "i", "TextDialog"), ("chat", "ctrl+n", "ChoiceDialog"), ("chat", "ctrl+o", "ChoiceDialog")]


@pytest.mark.parametrize(("name", "opener", "dialog"), DIALOGS, ids=[f"{d[0]}-{d[2]}-{d[1]}" for d in DIALOGS])
async def test_every_key_of_every_dialog(tmp_path, ollama_server, name, opener, dialog):
    from console.ui.widgets import dialogs

    app = app_in("one-engine", tmp_path, ollama_server)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_screen(pilot, name)
        for key in keys_of(getattr(dialogs, dialog).BINDINGS):
            await settle(pilot, until=lambda: not app.screen.is_modal)
            if name == "models":
                await settle(pilot, until=lambda: app.screen.selected is not None)
            await pilot.press(opener)
            await settle(pilot, until=lambda: type(app.screen).__name__ == dialog)
            await pilot.press(key)
            await turn(pilot)
            await back_to(pilot, name, f"{dialog} from {name}: {key}")


@pytest.mark.parametrize("state", STATES)
async def test_opening_a_log_source_by_keys(tmp_path, ollama_server, state, monkeypatch):
    """5, o, a path, enter (issue 12: this crashed the app), then x and the same again."""
    (tmp_path / "engine.log").write_text("level=INFO msg=hello\n")
    monkeypatch.chdir(tmp_path)
    app = app_in(state, tmp_path, ollama_server)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_screen(pilot, "logs")
        await pilot.press("o", *"engine.log", "enter")
        await turn(pilot, 10)
        await back_to(pilot, "logs", f"logs/{state}: open a file")
        await pilot.press("x", "o", *"engine.log", "enter")  # close it, open it again
        await turn(pilot, 10)
        await back_to(pilot, "logs", f"logs/{state}: reopen a file")
