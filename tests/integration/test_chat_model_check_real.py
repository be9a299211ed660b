"""`enginedeck chat` against the real single-model llama-server of the lab: it answers any model name with its one
model, so the name is checked against the engine's list before anything is sent or saved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab_fixtures import LabServer

pytestmark = pytest.mark.llama
ROOT = Path(__file__).resolve().parents[2]


def enginedeck(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    config.touch()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ENGINEDECK_CONFIG": str(config),
           "ENGINEDECK_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([sys.executable, "-m", "console", *argv, "--no-discover"], env=env, capture_output=True,
                          text=True, timeout=180, stdin=subprocess.DEVNULL)


def test_a_name_the_server_does_not_serve_is_refused_and_nothing_is_stored(llama_server: LabServer, tmp_path):
    done = enginedeck(tmp_path, "chat", llama_server.url, "gpt-4o", "Say hi.", "--max-tokens", "4")
    assert done.returncode == 1 and done.stdout == ""
    assert f"does not serve a model named 'gpt-4o' (it serves {llama_server.model})" in done.stderr
    listed = enginedeck(tmp_path, "history", "list", "--json")
    assert json.loads(listed.stdout) == []

    done = enginedeck(tmp_path, "chat", llama_server.url, llama_server.model, "Say hi.", "--max-tokens", "4",
                      "--json")
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["status"] == "complete" and reply["model"] == llama_server.model
    shown = json.loads(enginedeck(tmp_path, "history", "show", str(reply["session_id"]), "--json").stdout)
    assert shown["messages"][1]["model"] == llama_server.model
