"""Themes are data: TOML files shipped inside the package (console/themes/, read through importlib.resources,
so a wheel, a zip or a checkout all work) and the user's in <config dir>/themes/, read at start.

A broken theme file never stops the app: it is skipped and the reason is kept for a notification.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable

from textual.color import Color, ColorParseError
from textual.theme import Theme

from console.config import config_dir

COLOUR_KEYS = ("primary", "secondary", "accent", "foreground", "background", "surface", "panel",
               "success", "warning", "error")


def theme_dirs() -> list[Traversable]:
    """The shipped themes, then the user's, which win."""
    return [d for d in (files("console") / "themes", config_dir() / "themes") if d.is_dir()]


@dataclass
class ThemeLoad:
    themes: dict[str, Theme] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def parse_theme(path: Traversable) -> Theme:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    name = raw.get("name") or path.name.removesuffix(".toml")
    colours = {}
    for key in COLOUR_KEYS:
        if key in raw:
            Color.parse(raw[key])  # raises ColorParseError with the bad value
            colours[key] = raw[key]
    if "primary" not in colours:
        raise ValueError("a theme needs at least `primary`")
    variables = {str(k): str(v) for k, v in raw.get("variables", {}).items()}
    for value in variables.values():
        Color.parse(value)
    return Theme(name=str(name), dark=bool(raw.get("dark", True)), variables=variables, **colours)


def load_themes() -> ThemeLoad:
    result = ThemeLoad()
    for directory in theme_dirs():
        for path in sorted((p for p in directory.iterdir() if p.name.endswith(".toml")), key=lambda p: p.name):
            try:
                theme = parse_theme(path)
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ColorParseError, ValueError,
                    TypeError) as exc:
                result.problems.append(f"theme {path}: {exc}")
                continue
            result.themes[theme.name] = theme
    return result
