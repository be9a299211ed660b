"""The config's [keymap]: a binding id moved to another key runs by that key (and no longer by its own), the key bar,
the help screen and the palette show it; an unknown id, a clash, or a key that would take Esc, Ctrl-C or a screen's
key stops enginedeck with exit 2 at the line of the file. Every binding has an id, and docs/config.md lists them
all, from the code."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from dataclasses import replace
from pathlib import Path

import pytest
from textual.binding import Binding
from textual.widgets import Static

import console.ui
from console.cli import main
from console.config import KeyChoice, Keymap
from console.errors import ConfigError
from console.ui.app import EngineDeckApp
from console.ui.keymap import DIALOGS, ON_SCREENS, catalogue, resolve_keymap, scope_name
from console.ui.screens import SCREENS
from console.ui.widgets.bars import KeyBar
from tests.ui.fixtures import TestContext, make_config, settle

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def keyed_app(tmp_path: Path, **keys: str) -> EngineDeckApp:
    config = replace(make_config(tmp_path), keymap=Keymap(tuple(KeyChoice(k, v) for k, v in keys.items())))
    return EngineDeckApp(TestContext(config))


def status(app: EngineDeckApp) -> str:
    return str(app.screen.query_one("#status", Static).render())


async def test_a_moved_key_runs_the_action_and_the_old_one_does_not(tmp_path):
    app = keyed_app(tmp_path, **{"probe-run": "ctrl+t"})
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, until=lambda: app.engines_ready)
        await pilot.press("4")
        await settle(pilot, until=lambda: app.current_mode == "probe")
        assert status(app) == "ctrl+t: run · pick an engine and a model"  # the hint names the person's key
        await pilot.press("r")  # the old key: nothing runs
        await pilot.pause()
        assert status(app) == "ctrl+t: run · pick an engine and a model"
        await pilot.press("ctrl+t")  # the new one runs the probe's form, which says what is missing
        await settle(pilot, until=lambda: status(app) == "pick an engine and type a model name first")

        bar = str(app.screen.query_one(KeyBar).render())
        assert "^t Run probe" in bar and " r Run probe" not in bar

        await pilot.press("question_mark")
        await pilot.pause()
        help_text = str(app.screen.query_one(Static).render())
        run_line = next(line for line in help_text.splitlines() if "Run probe" in line)
        assert run_line.split() == ["ctrl+t", "Run", "probe"]


async def test_a_moved_screen_key_opens_the_screen_and_follows_on_the_help_screen(tmp_path):
    app = keyed_app(tmp_path, **{"screen-models": "M"})  # "m" is taken: the probe's mark
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, until=lambda: app.engines_ready)
        await pilot.press("2")
        await pilot.pause()
        assert app.current_mode == "dashboard"
        await pilot.press("M")
        await settle(pilot, until=lambda: app.current_mode == "models")
        await pilot.press("question_mark")
        await pilot.pause()
        assert "Models [M]" in str(app.screen.query_one(Static).render())
        await pilot.press("1")
        await settle(pilot, until=lambda: app.current_mode == "dashboard")
        await pilot.press("question_mark", "M")  # on the help screen the moved key goes to the screen too
        await settle(pilot, until=lambda: app.current_mode == "models")
        commands = [c.title for c in app.get_system_commands(app.screen)]
        assert "Open Models  [M]" in commands and "Probe: Run probe  [4 r]" in commands


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("body", "line", "message"), [
    ('[ui]\ntheme = "dark"\n\n[keymap]\nprobe-rnu = "ctrl+t"\n', 5,
     "[keymap] no binding has the id `probe-rnu`: did you mean `probe-run`?"),
    ('[keymap]\nquit = "Q"\nprobe-run = "c"\n', 3,
     "`probe-run` and `probe-cancel` would both be c on the Probe screen"),
    ('[keymap]\nmodels-load = "q"\n', 2, "`models-load` and `quit` would both be q on the Models screen"),
    ('[keymap]\nprobe-run = "2"\n', 2, "`probe-run` = \"2\" would take the key of the Models screen (2)"),
    ('[keymap]\ndashboard-refresh = "escape"\n', 2, "would take Esc"),
    ('[keymap]\nchat-copy = "ctrl+c"\n', 2, "would take Ctrl-C"),
    ('[keymap]\nchat-search = "ctrl+p"\n', 2, "would take Ctrl-P (the command palette"),
    ('[keymap]\nquit = "ctrl+q"\n', 2, "would take Ctrl-Q (Textual's own quit"),
    ('[keymap]\nscreen-models = "1"\n', 2, "`screen-models` and `screen-dashboard` would both be 1 on every screen"),
    ('[keymap]\ndashboard-refresh = "ctl+r"\n', 2, "'ctl' in 'ctl+r' is not a modifier"),
    ('[keymap]\ndashboard-refresh = 5\n', 2, "keymap.dashboard-refresh must be keys such as"),
])
def test_a_keymap_the_console_cannot_use_is_a_usage_error_at_its_line(tmp_path, capsys, body, line, message):
    path = write(tmp_path, body)
    assert main(["--config", str(path), "--no-discover"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"enginedeck: {path}:{line}: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_binding_may_keep_its_own_key_and_take_a_free_one(tmp_path):
    config = replace(make_config(tmp_path), keymap=Keymap((KeyChoice("models-clear", "escape,ctrl+u"),
                                                           KeyChoice("quit", "Q"))))
    assert resolve_keymap(config, EngineDeckApp.BINDINGS) == {"models-clear": "escape,ctrl+u", "quit": "Q"}


def test_the_app_refuses_a_bad_keymap_itself(tmp_path):
    with pytest.raises(ConfigError, match="no binding has the id `nope`"):
        keyed_app(tmp_path, nope="x")


# -- every binding has an id, and the docs list them all ----------------------------------------------------

def owners_with_bindings() -> set[str]:
    """Every class in console/ui that declares BINDINGS of its own, as "module:Class"."""
    found = set()
    for info in pkgutil.walk_packages(console.ui.__path__, "console.ui."):
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and "BINDINGS" in cls.__dict__ and cls.__dict__["BINDINGS"]:
                found.add(f"{module.__name__}:{name}")
    return found


def test_every_binding_has_an_id_and_every_id_is_known_to_the_keymap():
    ids: list[str] = []
    for target in owners_with_bindings():
        module, _, name = target.partition(":")
        for binding in getattr(importlib.import_module(module), name).__dict__["BINDINGS"]:
            assert isinstance(binding, Binding) and binding.id, f"{target}: {binding} has no id"
            ids.append(binding.id)
    assert len(ids) == len(set(ids)), "two bindings share an id"
    # ... and every class with bindings is one the keymap checks: the app, a screen, a screen's HELP_WIDGETS, or
    # one of console/ui/keymap.py's lists (a new dialog left out would escape the clash checks).
    listed = {"console.ui.app:EngineDeckApp", *(spec.target for spec in SCREENS.values()), *DIALOGS.values(),
              *(t for targets in ON_SCREENS.values() for t in targets),
              *(f"{w.__module__}:{w.__name__}" for spec in SCREENS.values()
                for w in getattr(spec.load(), "HELP_WIDGETS", ()))}
    assert owners_with_bindings() - listed == set()
    assert {b.id for b in catalogue(EngineDeckApp.BINDINGS)} == set(ids)


def id_table() -> str:
    rows = ["| id | keys | what it does | where |", "|---|---|---|---|"]
    for b in catalogue(EngineDeckApp.BINDINGS):
        where = ", ".join(scope_name(s).removeprefix("on ").removeprefix("in ") for s in b.scopes)
        rows.append(f"| `{b.id}` | `{','.join(b.keys)}` | {b.description} | {where} |")
    return "\n".join(rows)


def test_docs_config_lists_every_binding_id():
    text = DOC.read_text(encoding="utf-8")
    table = re.search(r"^\| id \| keys \|.*?(?=\n\n|\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert table is not None and table.group(0).strip() == id_table(), \
        f"docs/config.md's [keymap] table is out of date; it should read:\n\n{id_table()}\n"
