"""One focus model, driven by keys: on every screen a person can type in a field, press escape to leave it, and
then the digits, `?` and `q` are the app's again; the key bar and the help say so; every action of every screen
is in the palette from anywhere. Also what the screens say when they refuse (read-only) or have nothing to show
(no engine)."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from console.config import EngineConfig
from console.ui.app import EngineDeckApp
from console.ui.focus import text_field_has_focus
from console.ui.screens import SCREENS
from console.ui.widgets.prompt import PromptArea
from tests.ui.fixtures import StubRegistry, TestContext, demo_app, make_config, screen_text, settle


async def goto(pilot, name: str) -> None:
    await pilot.press(SCREENS[name].key)
    await settle(pilot, until=lambda: pilot.app.current_mode == name)


def key_bar(app: EngineDeckApp) -> str:
    return screen_text(app).splitlines()[-1]


# (screen, keys that put the cursor in a text field, what to type there)
FIELDS = [
    ("models", ["slash"], "ll3"),
    ("chat", ["i"], "hello 4?q"),
    ("chat", ["ctrl+f"], "sky 2"),
    ("probe", ["f"], "qwen 3"),
    ("logs", ["o"], "abc 1"),
]


@pytest.mark.parametrize(("name", "into", "text"), FIELDS, ids=[f"{f[0]}-{f[1][0]}" for f in FIELDS])
async def test_type_in_a_field_escape_then_a_digit_switches(tmp_path, name, into, text):
    app = demo_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await goto(pilot, name)
        await pilot.press(*into)
        await settle(pilot, until=lambda: text_field_has_focus(app.screen))
        field = app.focused
        await pilot.press(*text)
        typed = field.text if isinstance(field, PromptArea) else field.value
        assert typed.endswith(text) and app.current_mode == name  # digits, ? and q went into the field
        assert key_bar(app).startswith(" esc Leave field")
        await pilot.press("escape")
        assert not text_field_has_focus(app.screen), app.focused
        assert not key_bar(app).startswith(" esc Leave field")
        other = "dashboard" if name != "dashboard" else "models"
        await goto(pilot, other)
        await goto(pilot, name)  # and back: focus is not put back in a field
        assert not text_field_has_focus(app.screen), app.focused


async def test_probe_escape_then_r_runs_instead_of_typing(tmp_path):
    """The issue's case: escape from the model field, then r and q are keys again, not text."""
    app = demo_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await goto(pilot, "probe")
        model = app.screen.query_one("#model", Input)
        await settle(pilot, until=lambda: model.value == "llama3.2:1b")  # suggested from the engine
        await pilot.press("f", "end", "x", "escape", "r")
        assert model.value == "llama3.2:1bx"  # r did not replace the name
        await settle(pilot, until=lambda: not app.screen.running)
        await pilot.press("question_mark")
        await settle(pilot, until=lambda: type(app.screen).__name__ == "HelpScreen")
        await pilot.press("1")  # a digit on the help goes to that screen
        await settle(pilot, until=lambda: app.current_mode == "dashboard" and not app.screen.is_modal)


async def test_arriving_on_chat_or_probe_leaves_the_digits_to_the_app(tmp_path):
    app = demo_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for name in ("chat", "probe", "models", "logs"):
            await goto(pilot, name)
            await pilot.pause()
            assert not text_field_has_focus(app.screen), (name, app.focused)


async def test_escape_closes_a_dialog_without_leaving_the_field_under_it(tmp_path):
    app = demo_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await goto(pilot, "chat")
        await pilot.press("ctrl+n")  # a new chat: pick the first engine · model
        await settle(pilot, until=lambda: type(app.screen).__name__ == "ChoiceDialog")
        await pilot.press("enter")
        await settle(pilot, until=lambda: not app.screen.is_modal and app.screen.current is not None)
        assert isinstance(app.focused, PromptArea)
        await pilot.press("f5")  # parameters: a dialog with a text field, over the prompt
        await settle(pilot, until=lambda: type(app.screen).__name__ == "AskDialog")
        await pilot.press("escape")
        await settle(pilot, until=lambda: not app.screen.is_modal)
        assert isinstance(app.focused, PromptArea)  # the dialog closed; the prompt under it keeps the focus
        await pilot.press("escape", "w")  # out of the prompt, close the chat
        await settle(pilot, until=lambda: app.screen.current is None)


async def test_palette_lists_every_screens_actions_from_anywhere(tmp_path):
    app = demo_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for name, spec in SCREENS.items():
            if name == "dashboard":
                continue
            for b in spec.load().BINDINGS:
                if b.description and b.key != "escape":
                    assert f"{spec.title}: {b.description}  [{spec.key} {b.key_display or b.key}]" in titles
        assert not any("Move cursor" in t or "Delete character" in t for t in titles)  # no editing keys


async def test_palette_runs_another_screens_action(tmp_path, synthetic_engine):
    """From the dashboard: ctrl+p, "run probe", enter. The probe screen opens, asks the engine for its model
    and runs the ladder in the form, which ends in the history."""
    sim = synthetic_engine(ttft_s=0.001, itl_s=0.0005, tokens=4)
    config = make_config(tmp_path, engines=[EngineConfig(name="sim", url=sim.url, kind="openai")])
    app = EngineDeckApp(TestContext(config))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, until=lambda: app.engines_ready and app.store is not None)
        await pilot.press("ctrl+p")
        await settle(pilot, until=lambda: type(app.screen).__name__ == "CommandPalette")
        await pilot.press(*"probe: run probe")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot, until=lambda: app.current_mode == "probe")
        probe = app.screen
        status = probe.query_one("#status")
        await settle(pilot, until=lambda: str(status.render()).startswith("complete:"), timeout_s=120)
        (run,) = await app.store.probes.recent()
        assert (run.engine, run.model, run.status) == ("sim", "synthetic", "complete")


async def test_read_only_probe_says_why_r_does_nothing(tmp_path):
    notes: list = []
    hook = lambda m: notes.append(m.notification) if type(m).__name__ == "Notify" else None  # noqa: E731
    app = demo_app(tmp_path, read_only=True)
    async with app.run_test(size=(80, 24), message_hook=hook) as pilot:
        await settle(pilot)
        await goto(pilot, "probe")
        assert "read-only mode (--read-only): probes are off" in screen_text(app)
        await pilot.press("r")
        await settle(pilot, until=lambda: any("read-only" in n.message for n in notes))
        assert not app.screen.running and await app.store.probes.recent() == []


@pytest.mark.parametrize("name", ["models", "chat", "probe", "logs"])
async def test_no_engine_is_explained_on_every_screen(tmp_path, name):
    """A line of its own on models, chat and probe; a notice on the logs screen (it has work without engines)."""
    notes: list = []
    hook = lambda m: notes.append(m.notification.message) if type(m).__name__ == "Notify" else None  # noqa: E731
    app = EngineDeckApp(TestContext(make_config(tmp_path), StubRegistry([])))
    async with app.run_test(size=(80, 24), message_hook=hook) as pilot:
        await settle(pilot)
        await goto(pilot, name)
        said = lambda: "\n".join([screen_text(app), *notes])  # noqa: E731
        await settle(pilot, until=lambda: "No engine found." in said())
        assert "enginedeck --engine http://HOST:PORT" in said() and "[[engines]]" in said()


async def test_help_says_how_to_leave_a_field(tmp_path):
    app = demo_app(tmp_path)
    async with app.run_test(size=(80, 40)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot, until=lambda: type(app.screen).__name__ == "HelpScreen")
        text = screen_text(app)
        assert "esc leaves it" in text and "Leave a text field" in text
