"""Who may use the gateway, and what it never gives away: client keys, the engine's key, body bounds, exposure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.fakes.ollama_server import ollama_contract_server
from tests.unit.gateway.conftest import ROOT, forwarded, verify

ENGINE_KEY = "engine-secret-key-0123456789abcdef"
CLIENT_KEY = "team-a-key-0123456789abcdef"


def _keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.keys"
    path.write_text(f"# clients\nteam-a {CLIENT_KEY}\nteam-b other-key-0123456789abcdef\n")
    path.chmod(0o600)
    return path


def _engine_config(url: str) -> str:
    return f'[[engines]]\nname = "guarded"\nurl = "{url}"\napi_key_env = "GUARDED_KEY"\n'


def test_keys_401_and_the_engine_key_swapped_in(tmp_path: Path, gateway) -> None:
    with ollama_contract_server(require_token=ENGINE_KEY) as fake:
        gw = gateway("guarded", "--keys-file", str(_keys_file(tmp_path)), config=_engine_config(fake.url),
                     env={"GUARDED_KEY": ENGINE_KEY})
        no_key = httpx.get(f"{gw.url}/api/tags")
        bad_key = httpx.get(f"{gw.url}/api/tags", headers={"Authorization": "Bearer wrong-key-0123456789"})
        good = httpx.get(f"{gw.url}/api/tags", headers={"Authorization": f"Bearer {CLIENT_KEY}"})
        seen = fake.requests[-1]
    assert no_key.status_code == bad_key.status_code == 401
    assert good.status_code == 200 and good.json()["models"]
    # The engine got its own key from the config, never the client's; the client never sees the engine's.
    assert seen.headers["authorization"] == f"Bearer {ENGINE_KEY}"
    assert all(ENGINE_KEY not in r.text and ENGINE_KEY not in str(r.headers) for r in (no_key, bad_key, good))
    recs = gw.wait_records(3)
    assert [(r["outcome"], r["status_code"]) for r in recs] == [("rejected", 401), ("rejected", 401), ("ok", 200)]
    assert recs[0]["client"] == "anonymous" and recs[1]["client"].startswith("key:") and recs[2]["client"] == "team-a"
    text = "".join(p.read_text() for p in gw.log_dir.glob("*.jsonl")) + "".join(gw.stderr)
    assert CLIENT_KEY not in text and ENGINE_KEY not in text and "wrong-key" not in text
    verify(gw)


def test_keys_from_the_environment(tmp_path: Path, gateway, ollama_server) -> None:
    ci_key = "ci-key-0123456789abcdef"
    gw = gateway(ollama_server.url, "--keys-env", "GW_KEYS", env={"GW_KEYS": f"ops {CLIENT_KEY},ci {ci_key}"})
    assert httpx.get(f"{gw.url}/api/tags", headers={"Authorization": f"Bearer {ci_key}"}).status_code == 200
    assert gw.wait_records(1)[0]["client"] == "ci"


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "empty.toml").write_text("")
    return subprocess.run([sys.executable, "-m", "console", "--no-discover", "--config", str(tmp_path / "empty.toml"),
                           "gateway", *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ENGINEDECK_DATA_DIR": str(tmp_path / "data"), **(env or {})})


def test_no_loopback_without_keys_is_refused(tmp_path: Path) -> None:
    res = _run(tmp_path, "--listen", "0.0.0.0:0", "--upstream", "http://127.0.0.1:9")
    assert res.returncode == 1
    assert "without client keys" in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    cases = [
        (["--upstream", "http://127.0.0.1:9"], "needs --listen"),
        (["--listen", "127.0.0.1:0", "--upstream", "no-such-engine"], "neither a configured engine"),
        (["nameless"], "no gateway named 'nameless'"),
        (["--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9", "--keys-env", "UNSET_GW_VAR"], "not set"),
    ]
    for args, said in cases:
        res = _run(tmp_path, *args)
        assert res.returncode == 1, (args, res.stderr)
        assert said in res.stderr and "Traceback" not in res.stderr and res.stderr.count("\n") == 1
    weak = tmp_path / "weak.keys"
    weak.write_text(f"a {CLIENT_KEY}\n")
    weak.chmod(0o644)
    res = _run(tmp_path, "--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9", "--keys-file", str(weak))
    assert res.returncode == 1 and "readable by group or others" in res.stderr


def test_a_held_port_is_one_line(tmp_path: Path, gateway, ollama_server) -> None:
    gw = gateway(ollama_server.url)
    res = _run(tmp_path, "--listen", gw.url.removeprefix("http://"), "--upstream", ollama_server.url)
    assert res.returncode == 1 and "cannot listen on" in res.stderr and "Traceback" not in res.stderr


def test_request_bodies_are_bounded(tmp_path: Path, gateway, ollama_server) -> None:
    cfg = '[[gateways]]\nname = "small"\nlisten = "127.0.0.1:0"\nupstream = "x"\nmax_request_bytes = "4 KiB"\n'
    gw = gateway(ollama_server.url, "small", config=cfg)
    big = b"{" + b" " * 8192 + b"}"
    told = httpx.post(f"{gw.url}/api/chat", content=big)

    def chunks():  # no Content-Length: the body is counted as it comes
        for _ in range(8):
            yield b" " * 1024

    streamed = httpx.post(f"{gw.url}/api/chat", content=chunks())
    assert told.status_code == streamed.status_code == 413
    recs = gw.wait_records(2)
    assert [r["outcome"] for r in recs] == ["rejected", "rejected"]
    assert forwarded(ollama_server) == []  # nothing reached the engine
    verify(gw)


def test_stderr_lines_are_escape_safe(gateway, ollama_server) -> None:
    gw = gateway(ollama_server.url)
    httpx.post(f"{gw.url}/api/generate", json={"model": "evil\x1b]52;c;AAAA\x07\x1b[2J", "prompt": "x"})
    gw.wait_records(1)
    gw.stop()
    text = "".join(gw.stderr)
    assert "\x1b" not in text and "\x07" not in text
    events = [json.loads(line) for line in gw.stderr]
    assert any(e["event"] == "request" and e["outcome"] == "upstream_error" for e in events)
