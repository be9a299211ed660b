"""Defaults < file < environment < flags, setting by setting, through the path every run takes: the command line
parsed by console.cli, then Context.from_args (load_config for the file and the environment, with_flags)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from console.cli import parse_args
from console.config import Config, Timeouts, data_dir
from console.errors import ConfigError
from console.services import Context


@dataclass(frozen=True)
class Layered:
    """One setting: what the file, the environment and a flag say, and how to read it from the config."""

    name: str
    read: Callable[[Config], Any]
    default: Any
    file: tuple[str, Any]  # (TOML, value it gives)
    env: tuple[dict[str, str], Any] | None  # ({VAR: text}, value it gives)
    flag: tuple[list[str], Any] | None  # (arguments, value they give)


SETTINGS = [
    Layered("read_only", lambda c: c.read_only, False, ("read_only = true", True),
            ({"ENGINEDECK_READ_ONLY": "0"}, False), (["--read-only"], True)),
    Layered("discover", lambda c: c.discover, True, ("discover = false", False),
            ({"ENGINEDECK_DISCOVER": "yes"}, True), (["--no-discover"], False)),
    Layered("data_dir", lambda c: c.data_dir, "platform", ('data_dir = "/srv/from-file"', Path("/srv/from-file")),
            ({"ENGINEDECK_DATA_DIR": "/srv/from-env"}, Path("/srv/from-env")), None),
    Layered("ui.theme", lambda c: c.ui.theme, "dark", ('[ui]\ntheme = "light"', "light"),
            ({"ENGINEDECK_THEME": "high-contrast"}, "high-contrast"), (["--theme", "solar"], "solar")),
    Layered("ui.theme by NO_COLOR", lambda c: c.ui.theme, "dark", ('[ui]\ntheme = "light"', "light"),
            ({"NO_COLOR": "1"}, "monochrome"), (["--theme", "light"], "light")),
    Layered("ui.ascii", lambda c: c.ui.ascii, False, ("[ui]\nascii = true", True),
            ({"ENGINEDECK_ASCII": "off"}, False), (["--ascii"], True)),
    Layered("request deadline", lambda c: c.timeouts.request_s, Timeouts().request_s, ("request_timeout = 20", 20.0),
            None, (["--timeout", "7"], 7.0)),
    Layered("idle deadline", lambda c: c.timeouts.idle_s, Timeouts().idle_s, ("idle_timeout = 50", 50.0),
            None, (["--timeout", "7"], 7.0)),
    Layered("load deadline", lambda c: c.timeouts.load_s, Timeouts().load_s, ("load_timeout = 900", 900.0),
            None, (["--timeout", "7"], 900.0)),  # --timeout leaves loads their own deadline
    Layered("poll interval", lambda c: c.ui.poll_interval_s, 2.0, ("[ui]\npoll_interval_s = 5", 5.0), None, None),
    Layered("slo", lambda c: c.slo.ttft_p90_s, 1.0, ("[slo]\nttft_p90_s = 0.25", 0.25), None, None),
    Layered("limits", lambda c: c.limits.line_bytes, 1024 * 1024, ('[limits]\nline = "4 MiB"', 4 * 1024 * 1024),
            None, None),
    Layered("audit", lambda c: c.audit.retention_days, 365, ("[audit]\nretention_days = 30", 30), None, None),
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No variable of the caller that the config reads; XDG dirs in tmp; returns the config file's path."""
    for name in [k for k in os.environ if k.startswith("ENGINEDECK_")] + ["NO_COLOR"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    return tmp_path / "config.toml"


def config_of(argv: list[str]) -> Config:
    return Context.from_args(parse_args(argv)).config


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.name for s in SETTINGS])
@pytest.mark.parametrize("command", [[], ["engines"]], ids=["tui", "command"])
def test_each_layer_wins_over_the_one_below(setting: Layered, command: list[str], clean_env: Path,
                                            monkeypatch: pytest.MonkeyPatch):
    default = data_dir() if setting.default == "platform" else setting.default
    assert setting.read(config_of(command)) == default  # no file at the XDG default: the defaults

    clean_env.write_text(setting.file[0] + "\n")
    with_file = [*command, "--config", str(clean_env)]
    assert setting.read(config_of(with_file)) == setting.file[1] != default

    value = setting.file[1]
    if setting.env is not None:
        for name, text in setting.env[0].items():
            monkeypatch.setenv(name, text)
        assert setting.read(config_of(with_file)) == setting.env[1] != value
        value = setting.env[1]
    if setting.flag is not None:
        # Flags before the command: --theme and --ascii belong to the TUI, the rest are accepted anywhere.
        assert setting.read(config_of([*setting.flag[0], *with_file])) == setting.flag[1]
        assert setting.flag[1] != value or setting.name == "load deadline"


def test_the_config_file_itself(clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """--config > ENGINEDECK_CONFIG > <config dir>/config.toml."""
    xdg = tmp_path / "xdg-config" / "enginedeck" / "config.toml"
    xdg.parent.mkdir(parents=True)
    for path, theme in ((xdg, "xdg"), (tmp_path / "env.toml", "env"), (tmp_path / "flag.toml", "flag")):
        path.write_text(f'[ui]\ntheme = "{theme}"\n')
    assert config_of([]).ui.theme == "xdg"
    monkeypatch.setenv("ENGINEDECK_CONFIG", str(tmp_path / "env.toml"))
    assert config_of([]).ui.theme == "env"
    assert config_of(["--config", str(tmp_path / "flag.toml")]).ui.theme == "flag"


def test_theme_variable_wins_over_no_color(clean_env: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("ENGINEDECK_THEME", "light")
    assert config_of([]).ui.theme == "light"
    monkeypatch.delenv("ENGINEDECK_THEME")
    monkeypatch.setenv("NO_COLOR", "")  # set but empty means not set (no-color.org)
    assert config_of([]).ui.theme == "dark"


def test_timeout_flag_sets_each_engines_request_and_stream_deadlines_and_keeps_its_own_load(clean_env: Path):
    clean_env.write_text('connect_timeout = 2\n[[engines]]\nname = "a"\nurl = "http://x"\nrequest_timeout = 90\n'
                         'load_timeout = 900\nconnect_timeout = 1\n')
    engine = config_of(["--config", str(clean_env), "--timeout", "7"]).engines[0]
    assert engine.timeouts == Timeouts(connect_s=1.0, request_s=7.0, first_byte_s=7.0, idle_s=7.0, load_s=900.0)
    engine = config_of(["--config", str(clean_env), "--timeout", "0.5"]).engines[0]
    assert engine.timeouts.connect_s == 0.5  # connecting never takes longer than the whole request may


@pytest.mark.parametrize("name, text", [("ENGINEDECK_READ_ONLY", "maybe"), ("ENGINEDECK_DISCOVER", "2"),
                                        ("ENGINEDECK_ASCII", "y")])
def test_a_variable_that_is_not_a_yes_or_no_is_a_config_error(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                              name: str, text: str):
    monkeypatch.setenv(name, text)
    with pytest.raises(ConfigError, match=f"{name}='{text}' is neither true nor false"):
        config_of([])
