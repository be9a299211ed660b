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

from tests.fakes.hostile_server import CHAT, HostileServer, Reply, chunk, sse

ROOT = Path(__file__).resolve().parents[3]


def enginedeck(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m console ARGS --no-discover` in the test's isolated environment (see conftest.py)."""
    return subprocess.run([sys.executable, "-m", "console", *args, "--no-discover"], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=60)


def assert_one_line_failure(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("enginedeck: ")
    for needle in needles:
        assert needle in proc.stderr


def test_garbage_json_subprocess(write_config, hostile_server: HostileServer):
    hostile_server.misbehave("garbage_models")
    write_config({"junk": f"{hostile_server.url}=openai"})
    proc = enginedeck("models", "junk")
    assert proc.stdout == ""
    assert_one_line_failure(proc, "junk: ", "not JSON")


def test_401_subprocess_names_the_fix(write_config, hostile_server: HostileServer):
    hostile_server.misbehave("unauthorized_vllm")
    write_config({"locked": f"{hostile_server.url}=vllm"})
    assert_one_line_failure(enginedeck("ps", "locked", "--json"), "401", "api_key_env")


def test_unreachable_url_subprocess(write_config):
    write_config()
    assert_one_line_failure(enginedeck("models", "http://127.0.0.1:9"), "cannot connect")


def test_stalled_engine_subprocess_times_out(write_config, hostile_server: HostileServer):
    hostile_server.misbehave("stall")
    write_config({"slow": f"{hostile_server.url}=openai"})
    assert_one_line_failure(enginedeck("models", "slow", "--timeout", "1"), "slow: ")


def test_usage_error_exits_2():
    proc = enginedeck("load", "only-an-engine")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "usage:" in proc.stderr


def test_busy_engine_is_one_line(cli, capsys: pytest.CaptureFixture[str], hostile_server: HostileServer):
    hostile_server.misbehave("busy")
    assert cli("models", "b", engines={"b": f"{hostile_server.url}=openai"}) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "busy or still loading (503)" in err


def test_bad_engine_url_flag(cli, capsys: pytest.CaptureFixture[str]):
    assert cli("engines", "--engine", "ftp://somewhere") == 1
    assert "is not an engine URL" in capsys.readouterr().err


def test_unknown_server_is_listed_with_its_error(cli, capsys: pytest.CaptureFixture[str],
                                                 hostile_server: HostileServer):
    hostile_server.route("GET", "/", Reply(body=b"<html>a wiki</html>", content_type="text/html"))
    assert cli("engines", "--json", "--engine", hostile_server.url) == 0
    [row] = json.loads(capsys.readouterr().out)["engines"]
    assert (row["kind"], row["health"]) == (None, "down")
    assert "nothing I know answers" in row["error"]


def test_hostile_error_body_is_neutralised(cli, capsys: pytest.CaptureFixture[str], hostile_server: HostileServer):
    evil = b'{"error": {"message": "boom \\u001b]52;c;ZXZpbA==\\u0007 \\u001b[2J gone"}}'
    hostile_server.route("GET", "/v1/models", Reply(status=500, body=evil))
    assert cli("models", "h", engines={"h": f"{hostile_server.url}=openai"}) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "boom" in err and err.count("\n") == 1


def test_truncated_first_token_stream_rolls_back_swap(cli, capsys: pytest.CaptureFixture[str],
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
    assert cli("swap", "lms", "old", "new", engines={"lms": f"{hostile_server.url}=lmstudio"}) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stream ended early" in err and "old is loaded again" in err
    loads = [s.json()["model"] for s in hostile_server.requests_to("/api/v1/models/load")]
    assert loads == ["new", "old"]
