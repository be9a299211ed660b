"""Run `enginedeck` the way a user does: the installed entry point of this interpreter's environment, as a
subprocess, from a directory outside the checkout, with its own config file and data dir.

`Installed(tmp_path)` writes an empty config (mode 600) and sets ENGINEDECK_CONFIG / ENGINEDECK_DATA_DIR for the
child only; no ENGINEDECK_* variable of the caller leaks in. `run(...)` waits; `start(...)` returns the process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]


def entry_point() -> Path:
    """`enginedeck` next to this interpreter (the venv's bin/), as pip installed it."""
    path = Path(sys.executable).parent / "enginedeck"
    if not path.exists():
        pytest.fail(f"no enginedeck entry point at {path}: install the package into this environment",
                    pytrace=False)
    return path


class Installed:
    def __init__(self, tmp_path: Path, config: str = "") -> None:
        self.home = tmp_path / "run"  # the working directory: outside the checkout, so nothing is found by path
        self.home.mkdir(parents=True, exist_ok=True)
        assert CHECKOUT not in self.home.resolve().parents
        self.config = tmp_path / "config.toml"
        self.data = tmp_path / "data"
        self.write_config(config)

    def write_config(self, text: str) -> None:
        self.config.write_text(text)
        self.config.chmod(0o600)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINEDECK_")}
        env.update(ENGINEDECK_CONFIG=str(self.config), ENGINEDECK_DATA_DIR=str(self.data), NO_COLOR="1",
                   PYTHONDONTWRITEBYTECODE="1")
        env.pop("PYTHONPATH", None)  # the installed package, not the checkout on a path
        return env

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([str(entry_point()), *args], cwd=self.home, env=self.env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)

    def run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(entry_point()), *args], cwd=self.home, env=self.env(), text=True,
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout, check=False)
