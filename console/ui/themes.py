"""Themes are data: TOML files in themes/ (shipped) and <config dir>/themes/ (the user's), read at start.

A broken theme file never stops the app: it is skipped and the reason is kept for a notification.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

from console.config import config_dir

COLOUR_KEYS = ("primary", "secondary", "accent", "foreground", "background", "surface", "panel",
               "success", "warning", "error")
NO_COLOR_THEME = "monochrome"


def theme_dirs() -> list[Path]:
    """Shipped themes (a source checkout, then an installed wheel's data files), then the user's, which win."""
    repo = Path(__file__).resolve().parents[2] / "themes"
    installed = Path(sys.prefix) / "share" / "enginedeck" / "themes"
    return [d for d in (repo, installed, config_dir() / "themes") if d.is_dir()]


@dataclass
class ThemeLoad:
    themes: dict[str, Theme] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def parse_theme(path: Path) -> Theme:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    name = raw.get("name") or path.stem
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
        for path in sorted(directory.glob("*.toml")):
            try:
                theme = parse_theme(path)
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ColorParseError, ValueError,
                    TypeError) as exc:
                result.problems.append(f"theme {path}: {exc}")
                continue
            result.themes[theme.name] = theme
    return result
