"""The installed `enginedeck` command against endpoints that attack at the HTTP level (tests/fakes/wire_attacks.py),
run as a user runs it: a subprocess, from a directory outside the checkout, with `--timeout 2`.

Each command ends in time, prints one line that names the engine, the endpoint and the limit, and exits 1 (or 0
for `engines`, whose answer is the list with the engine down); nothing prints a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes.wire_attacks import COMMANDS, attack_server

EXE = str(Path(sys.executable).with_name("enginedeck"))
TIMEOUT_S = 2.0
GENEROUS_S = 20.0  # an unbounded read runs for minutes or forever; a busy box must not fail this


def run(tmp_path: Path, url: str, kind: str, command: list[str]) -> tuple[int, str, float]:
    config = tmp_path / "config.toml"
    config.write_text(f'[[engines]]\nname = "bad"\nurl = "{url}"\nkind = "{kind}"\n')
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINEDECK_")}
    env |= {"ENGINEDECK_CONFIG": str(config), "ENGINEDECK_DATA_DIR": str(tmp_path / "data")}
    started = time.monotonic()
    done = subprocess.run([EXE, "--no-discover", "--timeout", str(TIMEOUT_S), *command], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=GENEROUS_S * 3)
    return done.returncode, done.stderr, time.monotonic() - started


@pytest.mark.parametrize("attack, words", [
    ("endless_json", "(limits."),
    ("gzip_bomb", "(limits."),
    ("huge_line", "(limits."),
    ("drip", "timeout)"),
    ("deep_json", "not JSON"),
])
@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("kind", ["ollama", "vllm"])
def test_each_command_ends_in_time_with_one_line(tmp_path: Path, attack: str, words: str, command: str,
                                                 kind: str) -> None:
    with attack_server(attack) as url:
        code, stderr, elapsed = run(tmp_path, url, kind, COMMANDS[command])
    assert elapsed < GENEROUS_S
    assert "Traceback" not in stderr
    if command == "engines":
        assert code == 0  # the list is the answer; the engine is in it, down
        return
    lines = [line for line in stderr.splitlines() if line.startswith("enginedeck:")]
    assert code == 1 and len(lines) == 1, stderr
    assert "bad" in lines[0] and (words in lines[0] or (attack == "deep_json" and command in ("chat", "probe"))), stderr
