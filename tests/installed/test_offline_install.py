"""enginedeck installs on an air-gapped box from a wheelhouse alone, as docs/offline-install.md describes, and it
is the wheel the rest of tests/installed tests.

The connected side (`pip wheel` of the project's wheel and its dependencies) may use the package index; the
install side (conftest.py's `installed`) runs with every pip setting cleared and --no-index, so only the
wheelhouse can satisfy it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.installed.conftest import Installed, run


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_wheelhouse_holds_the_built_wheel_and_every_dependency(wheel: Path, wheelhouse: Path):
    (copied,) = wheelhouse.glob("enginedeck-*.whl")
    assert sha256(copied) == sha256(wheel)
    assert {"textual", "httpx", "ollama", "aiosqlite", "psutil"} <= {
        p.name.split("-")[0].lower() for p in wheelhouse.glob("*.whl")}


def test_install_from_wheelhouse_without_an_index(installed: Installed):
    where = run([installed.python, "-c", "import console; print(console.__file__)"], cwd=installed.home,
                env=installed.env())
    assert Path(where.stdout.strip()).is_relative_to(installed.venv), "enginedeck was not installed into the venv"
    helped = installed.run("--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: enginedeck")
