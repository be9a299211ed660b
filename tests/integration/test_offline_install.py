"""enginedeck installs on an air-gapped box from a wheelhouse alone, as docs/offline-install.md describes.

The connected side (`pip wheel` of the project and its dependencies) may use the package index; the install side
runs with every pip setting cleared and --no-index, so only the wheelhouse can satisfy it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCE = (".git", ".venv", ".engines", "build", "dist", "*.egg-info", "__pycache__", ".ruff_cache",
              ".pytest_cache", "bench", "tests")


def run(argv: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, f"{' '.join(map(str, argv))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.timeout(900)
def test_install_from_wheelhouse_without_an_index(tmp_path: Path):
    # Build from a copy, so the build's build/ and egg-info never land in the working tree.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    wheelhouse = tmp_path / "wheelhouse"
    run([sys.executable, "-m", "pip", "wheel", "-q", "-w", wheelhouse, src], cwd=tmp_path)
    assert sorted(wheelhouse.glob("enginedeck-*.whl")), "pip wheel left no enginedeck wheel"

    venv = tmp_path / "offline-venv"
    run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    offline = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    offline |= {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-index", "--find-links", wheelhouse,
         "enginedeck"], cwd=tmp_path, env=offline)

    where = run([venv / "bin" / "python", "-c", "import console; print(console.__file__)"], cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv), "enginedeck was not installed into the new venv"
    helped = run([venv / "bin" / "enginedeck", "--help"], cwd=tmp_path, env=offline)
    assert helped.stdout.startswith("usage: enginedeck")
