"""Every file of the package ships in the wheel, and what is installed is the wheel's bytes.

A data file that the code reads from its own folders (themes, stylesheets) but that is not package data works
in the checkout and is missing when installed: the themes were, for a while (every start said "theme 'dark' not
found").
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

from tests.installed.conftest import ROOT, Installed


def package_files() -> set[str]:
    """The package's files in the source: git's list where there is one, else the tree without caches."""
    listed = subprocess.run(["git", "ls-files", "console"], cwd=ROOT, capture_output=True, text=True, check=False)
    if listed.returncode == 0 and listed.stdout.strip():
        names = set(listed.stdout.split())
    else:
        names = {str(p.relative_to(ROOT)) for p in (ROOT / "console").rglob("*") if p.is_file()}
    return {n for n in names if "__pycache__" not in n and (ROOT / n).exists()}


def test_every_file_of_the_package_is_in_the_wheel(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        shipped = set(zf.namelist())
    missing = sorted(package_files() - shipped)
    assert not missing, f"in the source but not in the wheel: {missing}"
    assert {"console/themes/dark.toml", "console/ui/app.tcss"} <= shipped


def test_the_installed_files_are_the_wheels(wheel: Path, installed: Installed):
    (site,) = installed.venv.glob("lib/python*/site-packages")
    with zipfile.ZipFile(wheel) as zf:
        ours = [n for n in zf.namelist() if n.startswith("console/")]
        assert ours
        for name in ours:
            assert (site / name).read_bytes() == zf.read(name), f"{name} differs from the wheel's"
