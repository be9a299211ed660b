import hashlib
import hmac
import json
import os

import pytest

from console.cli import main

KEY = "proxy-key"


def _signed(obj):
    body = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return json.dumps({**obj, "signature": hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()})


@pytest.fixture
def files(tmp_path):
    key = tmp_path / "key"
    key.write_text(KEY + "\n")
    key.chmod(0o600)
    signed = tmp_path / "proxy.jsonl"
    good = [_signed({"ts": i, "path": "/v1/chat/completions", "status": 200}) for i in range(4)]
    signed.write_text("\n".join(good) + "\n")
    return key, signed, good


def test_valid_file_exits_0(files, capsys):
    key, signed, _ = files
    assert main(["audit", "verify", str(signed), "--key-file", str(key)]) == 0
    out = capsys.readouterr().out
    assert "4 valid, 0 invalid, 0 unsigned" in out and "compact" in out


def test_tampered_file_names_the_lines_and_exits_1(files, capsys, monkeypatch):
    key, signed, good = files
    lines = [good[0], good[1].replace("200", "500"), json.dumps({"ts": 9}), good[3].replace("/v1", "/v2")]
    signed.write_text("\n".join(lines) + "\n")
    assert main(["audit", "verify", str(signed), "--key-file", str(key)]) == 1
    out = capsys.readouterr().out
    assert "line 2: INVALID" in out and "line 4: INVALID" in out and "unsigned lines: 3" in out
    monkeypatch.setenv("PROXY_KEY", KEY)
    assert main(["audit", "verify", str(signed), "--key-env", "PROXY_KEY", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["invalid_lines"] == [2, 4] and doc["unsigned_lines"] == [3] and doc["ok"] is False


def test_group_readable_key_file_is_refused(files, capsys):
    key, signed, _ = files
    os.chmod(key, 0o640)
    assert main(["audit", "verify", str(signed), "--key-file", str(key)]) == 1
    assert "readable by group or others" in capsys.readouterr().err


def test_own_trail_verify_and_list(tmp_path, capsys):
    import asyncio

    from console.audit.trail import AuditTrail
    from console.services import Context

    assert main(["audit", "verify"]) == 1
    assert "no audit trail" in capsys.readouterr().err

    async def record():
        ctx = Context.from_args(type("A", (), {})())
        trail: AuditTrail = await ctx.audit()
        for model in ("a", "b", "c"):
            await trail.record("unload", engine="ollama", target=model, params={}, result="ok", duration_s=0.1)
        await ctx.aclose()
        return trail.path

    path = asyncio.run(record())
    assert main(["audit", "verify"]) == 0
    assert "3 records" in capsys.readouterr().out
    assert main(["audit", "list", "--json"]) == 0
    assert [e["target"] for e in json.loads(capsys.readouterr().out)] == ["c", "b", "a"]

    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[2])
    assert main(["audit", "verify", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    kinds = {i["kind"] for i in doc["issues"]}
    assert "deleted" in kinds and "database-mismatch" in kinds and doc["ok"] is False


@pytest.mark.parametrize("extra", [(), ("--json",)])
def test_a_failed_verification_exits_1_when_the_reader_goes_away(files, extra):
    """`enginedeck audit verify FILE | head -1`: the pipe closes before the verdict is printed; the exit status
    is still the verdict's, and nothing is said about the pipe."""
    import subprocess
    import sys
    from pathlib import Path

    key, signed, good = files
    signed.write_text("\n".join([good[0].replace("200", "500")] * 3000) + "\n")
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen([sys.executable, "-m", "console", "audit", "verify", str(signed), "--key-file", str(key),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(root)})
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 1
    assert "Broken pipe" not in err and "Exception ignored" not in err and "pipe closed" not in err
