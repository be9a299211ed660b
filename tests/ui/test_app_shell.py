"""The shell around the screens: digits switch screens, help lists every key, the palette lists every action,
ASCII mode, NO_COLOR, themes from files (a user's, a broken one)."""

from __future__ import annotations

import importlib.util

from textual.binding import Binding
from textual.widgets import Static

from console.config import with_environment
from console.ui.app import EngineDeckApp
from console.ui.screens import SCREENS, ScreenSpec
from console.ui.start import ascii_wanted
from tests.ui.fixtures import QUIET, StubRegistry, TestContext, demo_app, make_config, screen_text, settle


def importable(name: str) -> bool:
    return importlib.util.find_spec(SCREENS[name].target.partition(":")[0]) is not None


async def test_digits_switch_screens(tmp_path):
    app = demo_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        for name, spec in SCREENS.items():
            if not importable(name):
                continue
            app.screen.set_focus(None)  # a focused text input takes digits as text (see app.py conventions)
            await pilot.press(spec.key)
            await settle(pilot)
            assert app.current_mode == name, name
            assert type(app.screen).__name__ == spec.target.partition(":")[2]
        app.screen.set_focus(None)
        await pilot.press("1")
        await settle(pilot)
        assert type(app.screen).__name__ == "DashboardScreen"


async def test_a_screen_that_cannot_be_imported_is_reported_not_fatal(tmp_path, monkeypatch):
    broken = ScreenSpec("5", "Logs", "console.ui.screens.no_such_screen:Nope", "missing")
    monkeypatch.setitem(SCREENS, "logs", broken)
    notes = []
    app = demo_app(tmp_path)
    hook = lambda m: notes.append(m.notification) if type(m).__name__ == "Notify" else None  # noqa: E731
    async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        assert type(app.screen).__name__ == "DashboardScreen"
        assert any(n.title == "Screen" and "Logs is unavailable" in n.message for n in notes)


def described(bindings: list) -> list[Binding]:
    return [b for b in bindings if isinstance(b, Binding) and b.description]


async def test_help_lists_every_binding_of_every_screen(tmp_path):
    app = demo_app(tmp_path)
    async with app.run_test(size=(100, 60)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert type(app.screen).__name__ == "HelpScreen"
        text = str(app.screen.query_one(Static).render())
        for b in described(EngineDeckApp.BINDINGS):
            assert f"{b.key_display or b.key}" in text and b.description in text
        for name, spec in SCREENS.items():
            if not importable(name):
                continue
            assert spec.title in text
            screen_cls = spec.load()
            widgets = getattr(screen_cls, "HELP_WIDGETS", ())
            for b in described([*screen_cls.BINDINGS, *(b for w in widgets for b in w.BINDINGS)]):
                assert b.description in text, (name, b.description)
        await pilot.press("escape")
        await settle(pilot)
        assert type(app.screen).__name__ == "DashboardScreen"


async def test_palette_lists_every_screen_and_action(tmp_path):
    app = demo_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        for key in ("1", "2"):
            await pilot.press(key)
            await settle(pilot)
            titles = [c.title for c in app.get_system_commands(app.screen)]
            for spec in SCREENS.values():
                assert f"Open {spec.title}  [{spec.key}]" in titles
            for b in described(list(type(app.screen).BINDINGS)):
                if app.screen.check_action(b.action.partition("(")[0], ()) is False:
                    continue  # not offered here (the host filter outside fleet mode): not in the palette either
                assert any(t.startswith(f"{b.description}  [") for t in titles), b.description
            assert "Help  [?]" in titles and "Refresh engines" in titles


async def test_ascii_mode_draws_no_box_characters(tmp_path):
    app = demo_app(tmp_path, ascii_mode=True)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        assert app.has_class("-ascii")
        shown = screen_text(app)
        assert "Engines" in shown and "+" in shown
        assert not set("╭╮╰╯│─▁▂▃▄▅▆▇█⭘") & set(shown)


def test_ascii_is_automatic_on_a_linux_console(monkeypatch):
    monkeypatch.setenv("TERM", "linux")
    assert ascii_wanted(None, False)
    assert not ascii_wanted(False, True)  # an explicit choice wins
    monkeypatch.setenv("TERM", "xterm-256color")
    assert not ascii_wanted(None, False) and ascii_wanted(None, True)


async def test_no_color_means_the_monochrome_theme(tmp_path):
    # NO_COLOR is read with the rest of the environment (console/config.py); --theme would win over it.
    ui = with_environment(QUIET, {"NO_COLOR": "1"})
    app = EngineDeckApp(TestContext(make_config(tmp_path, ui=ui), StubRegistry([])))
    async with app.run_test() as pilot:
        await settle(pilot)
        assert app.theme == "monochrome"


async def test_user_theme_is_loaded_and_a_broken_one_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("NO_COLOR", raising=False)
    themes = tmp_path / "xdg" / "enginedeck" / "themes"
    themes.mkdir(parents=True)
    (themes / "solar.toml").write_text('name = "solar"\ndark = true\nprimary = "#b58900"\nbackground = "#002b36"\n')
    (themes / "broken.toml").write_text('name = "broken"\nprimary = "not-a-colour"\n')
    notes = []
    hook = lambda m: notes.append(m.notification) if type(m).__name__ == "Notify" else None  # noqa: E731
    app = demo_app(tmp_path, theme="solar")
    async with app.run_test(message_hook=hook) as pilot:
        await settle(pilot)
        assert app.theme == "solar"
        assert {"dark", "light", "high-contrast", "monochrome", "solar"} <= set(app.available_themes)
        assert "broken" not in app.available_themes
        skipped = [n for n in notes if n.title == "Theme" and n.message.startswith("skipped ")]
        assert len(skipped) == 1 and "broken.toml" in skipped[0].message


async def test_unknown_theme_falls_back_to_dark_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    notes = []
    hook = lambda m: notes.append(m.notification) if type(m).__name__ == "Notify" else None  # noqa: E731
    app = EngineDeckApp(TestContext(make_config(tmp_path), StubRegistry([])), theme="nope")
    async with app.run_test(message_hook=hook) as pilot:
        await settle(pilot)
        assert app.theme == "dark" and any("theme 'nope' not found" in n.message for n in notes)


async def test_a_narrow_key_bar_leaves_keys_out_whole_and_clicks_still_match(tmp_path):
    from console.ui.widgets.bars import KeyBar

    app = demo_app(tmp_path)
    async with app.run_test(size=(60, 24)) as pilot:
        await settle(pilot)
        bar = app.screen.query_one(KeyBar)
        line = screen_text(app).splitlines()[-1]
        assert line.rstrip().endswith(("^p", "^p palette"))  # the palette keeps the right end
        shown = line[: bar._spans[-1][0]]
        # Every key shown has its whole description; the ones that do not fit are left out, not cut.
        assert not shown[bar._spans[-2][1]:].strip(), line  # nothing between the last whole key and the palette
        for start, end, key in bar._spans[:-1]:
            assert line[start:end].strip(), (key, line)
            assert line[end - 1] == " " and (end == len(line) or line[end] == " ")
        # Too narrow for a word per screen: their keys are one entry, and a click on it opens the help that names
        # them; a click on another shown key presses that key.
        assert " 1 2 3 4 5 6 screens " in line, line
        refresh = next(start for start, _end, key in bar._spans if key == "r")
        screens = next(start for start, _end, key in bar._spans if key == "question_mark")
        assert line[screens:].startswith(" 1 2 3"), line
        await pilot.click(KeyBar, offset=(screens + 2, 0))
        await settle(pilot)
        assert "Help" in screen_text(app).splitlines()[0] or app.screen.id == "help" or \
            type(app.screen).__name__ == "HelpScreen", screen_text(app)
        await pilot.press("escape")
        await settle(pilot)
        assert line[refresh + 1] == "r"


async def test_the_key_bar_at_80_columns_keeps_help_and_quit(tmp_path):
    app = demo_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        line = screen_text(app).splitlines()[-1]
        assert " ? Help " in line and " q Quit " in line and " 1 2 3 4 5 6 screens " in line, line
        await pilot.press("6")
        await settle(pilot)
        assert app.current_mode == "traffic"
