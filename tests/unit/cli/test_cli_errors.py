"""Every failure reaches a person as one line on stderr with exit 1, never a traceback (usage errors exit 2).

A few run as real subprocesses (`python -m console ...`) so the whole path, interpreter exit included, is proven.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from console.cli import main
from tests.fakes.hostile_server import CHAT, HostileServer, Reply, chunk, hostile_server_fixture, sse  # noqa: F401

ROOT = Path(__file__).resolve().parents[3]


def write_config(tmp_path: Path, engines: dict[str, tuple[str, str]]) -> Path:
    lines = ["connect_timeout = 1.0", "read_timeout = 3.0"]
    for name, (url, kind) in engines.items():
        lines += ["[[engines]]", f'name = "{name}"', f'url = "{url}"', f'kind = "{kind}"']
    cfg = tmp_path / "config.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def enginedeck(tmp_path: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINEDECK_")}
    env["ENGINEDECK_DATA_DIR"] = str(tmp_path / "data")
    env["ENGINEDECK_CONFIG"] = str(config or write_config(tmp_path, {}))
    return subprocess.run([sys.executable, "-m", "console", *args, "--no-discover"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def assert_one_line_failure(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("enginedeck: ")
    for needle in needles:
        assert needle in proc.stderr


def test_garbage_json_subprocess(tmp_path: Path, hostile_server: HostileServer):
    hostile_server.misbehave("garbage_models")
    cfg = write_config(tmp_path, {"junk": (hostile_server.url, "openai")})
    proc = enginedeck(tmp_path, "models", "junk", config=cfg)
    assert proc.stdout == ""
    assert_one_line_failure(proc, "junk: ", "not JSON")


def test_401_subprocess_names_the_fix(tmp_path: Path, hostile_server: HostileServer):
    hostile_server.misbehave("unauthorized_vllm")
    cfg = write_config(tmp_path, {"locked": (hostile_server.url, "vllm")})
    assert_one_line_failure(enginedeck(tmp_path, "ps", "locked", "--json", config=cfg), "401", "api_key_env")


def test_unreachable_url_subprocess(tmp_path: Path):
    assert_one_line_failure(enginedeck(tmp_path, "models", "http://127.0.0.1:9"), "cannot connect")


def test_stalled_engine_subprocess_times_out(tmp_path: Path, hostile_server: HostileServer):
    hostile_server.misbehave("stall")
    cfg = write_config(tmp_path, {"slow": (hostile_server.url, "openai")})
    assert_one_line_failure(enginedeck(tmp_path, "models", "slow", "--timeout", "1", config=cfg), "slow: ")


def test_broken_config_subprocess(tmp_path: Path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[[engines]\nname = 'x'\n")
    assert_one_line_failure(enginedeck(tmp_path, "engines", config=cfg), "invalid TOML")


def test_usage_error_exits_2(tmp_path: Path):
    proc = enginedeck(tmp_path, "load", "only-an-engine")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "usage:" in proc.stderr


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ENGINEDECK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ENGINEDECK_DEBUG", raising=False)

    def go(*args: str, engines: dict[str, tuple[str, str]] | None = None) -> int:
        return main([*args, "--no-discover", "--config", str(write_config(tmp_path, engines or {}))])

    return go


def test_busy_engine_is_one_line(run, capsys: pytest.CaptureFixture[str], hostile_server: HostileServer):
    hostile_server.misbehave("busy")
    assert run("models", "b", engines={"b": (hostile_server.url, "openai")}) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "busy or still loading (503)" in err


def test_bad_engine_url_flag(run, capsys: pytest.CaptureFixture[str]):
    assert run("engines", "--engine", "ftp://somewhere") == 1
    assert "is not an engine URL" in capsys.readouterr().err


def test_unknown_server_is_listed_with_its_error(run, capsys: pytest.CaptureFixture[str],
                                                 hostile_server: HostileServer):
    hostile_server.route("GET", "/", Reply(body=b"<html>a wiki</html>", content_type="text/html"))
    assert run("engines", "--json", "--engine", hostile_server.url) == 0
    [row] = json.loads(capsys.readouterr().out)["engines"]
    assert (row["kind"], row["health"]) == (None, "down")
    assert "nothing I know answers" in row["error"]


def test_hostile_error_body_is_neutralised(run, capsys: pytest.CaptureFixture[str], hostile_server: HostileServer):
    evil = b'{"error": {"message": "boom \\u001b]52;c;ZXZpbA==\\u0007 \\u001b[2J gone"}}'
    hostile_server.route("GET", "/v1/models", Reply(status=500, body=evil))
    assert run("models", "h", engines={"h": (hostile_server.url, "openai")}) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "boom" in err and err.count("\n") == 1


def test_truncated_first_token_stream_rolls_back_swap(run, capsys: pytest.CaptureFixture[str],
                                                      hostile_server: HostileServer):
    """An LM Studio whose chat stream breaks off before a token: the swap fails and the old model returns."""
    models = {"models": [{"key": "old", "loaded_instances": [{"id": "old", "config": {}}]},
                         {"key": "new", "loaded_instances": []}]}
    hostile_server.route("GET", "/api/v1/models", Reply(body=json.dumps(models).encode()))
    hostile_server.route("POST", "/api/v1/models/unload", Reply(body=b'{"instance_id": "old"}'))
    hostile_server.route("POST", "/api/v1/models/load", Reply(body=b'{"instance_id": "x", "status": "loaded"}'))
    # The stream stops after the role-only chunk: no first token ever comes.
    hostile_server.route(*CHAT, Reply(chunks=sse(chunk("", role="assistant"), done=False),
                                      content_type="text/event-stream"))
    assert run("swap", "lms", "old", "new", engines={"lms": (hostile_server.url, "lmstudio")}) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stream ended early" in err and "old is loaded again" in err
    loads = [s.json()["model"] for s in hostile_server.requests_to("/api/v1/models/load")]
    assert loads == ["new", "old"]
