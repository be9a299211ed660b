"""Smoke tests of the installed `enginedeck`: the version, the TUI on a real terminal in every shipped theme and
with NO_COLOR (read off the screen by a terminal emulator), a config error, and a headless command against the
real llama-server of the engine lab. Run from a directory outside the checkout, with no PYTHONPATH."""

from __future__ import annotations

import collections
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios
import threading
import time
import tomllib
from pathlib import Path

import pyte
import pytest

from tests.installed.conftest import Installed
from tests.lab_fixtures import LabServer

SHIPPED_THEMES = {"dark", "light", "high-contrast", "monochrome"}
ANSI = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


class Terminal:
    """A program on a pty of 80x24 whose output a VT emulator (pyte) turns into the screen a person would see."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                                     start_new_session=True)
        os.close(slave)
        self.master = master
        self.screen = pyte.Screen(80, 24)
        self._stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the program closed the terminal
                return
            if not chunk:
                return
            with self._changed:
                self.raw += chunk
                self._stream.feed(chunk)
                self._changed.notify_all()

    def text(self) -> str:
        with self._changed:
            return "\n".join(self.screen.display)

    def wait_for(self, wanted: str, limit_s: float = 60.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: wanted in "\n".join(self.screen.display), limit_s):
                raise AssertionError(f"{wanted!r} never appeared on screen:\n" + "\n".join(self.screen.display))

    def colours(self) -> tuple[collections.Counter[str], collections.Counter[str]]:
        with self._changed:
            cells = [self.screen.buffer[y][x] for y in range(self.screen.lines) for x in range(self.screen.columns)]
        return collections.Counter(c.bg for c in cells), collections.Counter(c.fg for c in cells)

    def everything_written(self) -> str:
        """Every piece of text the program wrote, control sequences removed, whitespace runs made one space."""
        with self._changed:
            text = ANSI.sub(b" ", bytes(self.raw)).decode("utf-8", "replace")
        return " ".join(text.split())

    def quit(self) -> int:
        try:
            os.write(self.master, b"q")
            return self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            os.close(self.master)


def tui(installed: Installed, *args: str, **env: str) -> Terminal:
    config = installed.home / "empty.toml"
    config.write_text("")
    environ = installed.env(TERM="xterm-256color", COLORTERM="truecolor", ENGINEDECK_CONFIG=str(config), **env)
    term = Terminal([str(installed.enginedeck), "--no-discover", *args], environ, installed.home)
    # The host panel's first figures come after the app has mounted, and so after any notice made at mount.
    term.wait_for("Dashboard")
    term.wait_for("ram ")
    time.sleep(1.0)  # and a moment for a notice to be drawn, so its absence means something
    return term


def assert_nothing_was_missing(term: Terminal) -> None:
    for shown in (" ".join(term.text().split()), term.everything_written()):
        assert "not found" not in shown and "Traceback" not in shown, shown


def shipped_themes(installed: Installed) -> dict[str, dict[str, object]]:
    (themes,) = installed.venv.glob("lib/python*/site-packages/console/themes")
    return {p.stem: tomllib.loads(p.read_text()) for p in themes.glob("*.toml")}


def test_version(installed: Installed, wheel: Path):
    done = installed.run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"enginedeck {wheel.name.split('-')[1]}"


@pytest.mark.parametrize("theme", sorted(SHIPPED_THEMES))
def test_the_tui_starts_in_each_shipped_theme(installed: Installed, theme: str):
    term = tui(installed, "--theme", theme)
    try:
        assert_nothing_was_missing(term)
        themes = shipped_themes(installed)
        assert set(themes) == SHIPPED_THEMES
        backgrounds, _ = term.colours()
        # The screen is painted in the theme's own background: the theme was found and used.
        assert backgrounds.most_common(1)[0][0] == str(themes[theme]["background"]).lstrip("#").lower()
    finally:
        assert term.quit() == 0


def test_no_color_starts_in_monochrome_without_a_hue(installed: Installed):
    term = tui(installed, NO_COLOR="1")
    try:
        assert_nothing_was_missing(term)
        monochrome = shipped_themes(installed)["monochrome"]
        backgrounds, foregrounds = term.colours()
        assert backgrounds.most_common(1)[0][0] == str(monochrome["background"]).lstrip("#").lower()
        for colour in backgrounds.keys() | foregrounds.keys():
            grey = len(colour) == 6 and colour[0:2] == colour[2:4] == colour[4:6]
            assert colour == "default" or grey, f"a hue on screen with NO_COLOR: {colour}"
    finally:
        assert term.quit() == 0


def test_a_config_error_is_one_line_and_exit_2(installed: Installed):
    config = installed.home / "misspelt.toml"
    config.write_text('[ui]\ntheme = "light"\npoll_intervall_s = 5\n')
    done = installed.run("--config", str(config), "engines")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"enginedeck: {config}:3: unknown key `poll_intervall_s` in [ui]: "
                           "did you mean `poll_interval_s`?\n")


@pytest.mark.llama
def test_a_headless_command_against_the_real_llama_server(installed: Installed, llama_server: LabServer):
    done = installed.run("--engine", llama_server.url, "--no-discover", "engines", "--json")
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)["engines"]
    assert (entry["url"], entry["kind"], entry["health"], entry["source"]) == (llama_server.url, "llamacpp", "ok",
                                                                               "flag")
    done = installed.run("--engine", llama_server.url, "--no-discover", "models", "--json")
    assert done.returncode == 0, done.stderr
    assert llama_server.model in {m["name"] for m in json.loads(done.stdout)["models"]}
