"""The installed package, as a user gets it: one wheel built from the source once per session, a wheelhouse of it
and its dependencies, and a clean venv installed from that wheelhouse alone (no index), run from a directory
outside the checkout with no PYTHONPATH. Every test here is marked `installed` (scripts/test.sh runs them as their
own phase).

ENGINEDECK_TEST_WHEEL=/path/to/enginedeck-*.whl tests that wheel instead of building one (to check a release, or
to see these tests fail on a wheel from before a fix).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
NOT_SOURCE = (".git", ".venv", ".engines", "build", "dist", "*.egg-info", "__pycache__", ".ruff_cache",
              ".pytest_cache", "bench", "tests")
# pip without any setting of the caller's: only the wheelhouse can satisfy an install.
OFFLINE_PIP = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.path)).is_relative_to(HERE):
            item.add_marker(pytest.mark.installed)


def run(argv: Sequence[str | Path], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, argv))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """A user's environment: no PYTHONPATH or variable of enginedeck's from the caller, XDG dirs and HOME in tmp."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ENGINEDECK_", "PYTHON", "PIP_", "XDG_", "VIRTUAL_ENV")) and k != "NO_COLOR"}
    env |= {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local/share")}
    return env | extra


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """enginedeck's wheel, built once per session from a copy of the source (so build/ and egg-info never land in
    the working tree)."""
    given = os.environ.get("ENGINEDECK_TEST_WHEEL")
    if given:
        return Path(given).resolve()
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist", src], cwd=tmp)
    (built,) = (tmp / "dist").glob("enginedeck-*.whl")
    return built


@pytest.fixture(scope="session")
def wheelhouse(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and one wheel per dependency (the connected side of docs/offline-install.md: may use the index)."""
    house = tmp_path_factory.mktemp("wheelhouse")
    run([sys.executable, "-m", "pip", "wheel", "-q", "-w", house, wheel], cwd=house)
    return house


@dataclass(frozen=True)
class Installed:
    venv: Path
    home: Path  # a directory outside the checkout: the working directory and HOME of every run

    @property
    def enginedeck(self) -> Path:
        return self.venv / "bin" / "enginedeck"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self, **extra: str) -> dict[str, str]:
        return user_env(self.home, **extra)

    def run(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`enginedeck ARGS` as a user runs it; the result whatever its exit code."""
        return subprocess.run([str(self.enginedeck), *args], cwd=self.home, env=env or self.env(),
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)


@pytest.fixture(scope="session")
def installed(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A fresh venv with enginedeck installed from the wheelhouse with no index, the way the air-gapped box does."""
    base = tmp_path_factory.mktemp("installed")
    home = base / "home"
    home.mkdir()
    venv = base / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=home)
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-index", "--find-links", wheelhouse,
         "enginedeck"], cwd=home, env=user_env(home, **OFFLINE_PIP))
    return Installed(venv=venv, home=home)
