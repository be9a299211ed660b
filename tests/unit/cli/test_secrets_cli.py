"""A proxy in front of an engine echoes the Authorization header in every error body: the configured API key must
never reach a command's output or any file under the data dir (database, WAL, audit trail), whether enginedeck
runs in-process or as the real `python -m console`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.fakes.ollama_server import FakeOllama, ollama_contract_server

ROOT = Path(__file__).resolve().parents[3]
# & is escaped by Go's JSON encoder (the Ollama fake writes like Go), / and + are percent-encoded in URLs.
KEY = "sk-proxy-4Hq&9/Zx+Lm2Rt7WvB"
FORMS = (KEY, json.dumps(KEY)[1:-1], KEY.replace("&", "\\u0026"), quote(KEY, safe=""))
COMMANDS = (
    ("chat", "proxied", "llama3.2:1b", "hello"),
    ("chat", "proxied", "llama3.2:1b", "hello", "--json"),
    ("ps",),
    ("ps", "proxied", "--json"),
    ("engines",),
    ("engines", "--json"),
    ("models", "--json"),
    ("load", "proxied", "llama3.2:1b"),
    ("load", "proxied", "llama3.2:1b", "--json"),
    ("doctor",),
    ("doctor", "--json"),
)


@pytest.fixture(params=[401, 502], ids=["401", "502"])
def echoing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOllama]:
    monkeypatch.setenv("ED_PROXY_KEY", KEY)
    with ollama_contract_server(echo_auth=request.param) as fake:
        yield fake


def engine_toml(fake: FakeOllama) -> str:
    return f'[[engines]]\nname = "proxied"\nurl = "{fake.url}"\nkind = "ollama"\napi_key_env = "ED_PROXY_KEY"\n'


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [form for form in FORMS if form.encode() in data]


def files_under(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def assert_sent_and_echoed(fake: FakeOllama, output: str) -> None:
    """The test means something: the key went out, came back in the body, and what came back was redacted."""
    assert any(r.headers.get("authorization") == f"Bearer {KEY}" for r in fake.requests)
    assert "Bearer [redacted]" in " ".join(output.split()), output  # a table at 80 columns may fold it


def test_in_process_no_output_and_no_file_holds_the_key(echoing, cli, capsys, tmp_path):
    for command in COMMANDS:
        cli(*command, extra=engine_toml(echoing))
        out = capsys.readouterr()
        assert not leaks(out.out + out.err), (command, out)
        if command[0] != "models":  # `models` asks nothing that fails here: no echo to see
            assert_sent_and_echoed(echoing, out.out + out.err)
    stored = files_under(tmp_path / "data")
    assert {"enginedeck.db", "audit.jsonl"} <= stored.keys()
    for name, data in stored.items():
        assert not leaks(data), name
    trail = (tmp_path / "data" / "audit.jsonl").read_text()
    # Both loads failed with the echo, and so did the read-back of what is loaded after each: recorded without the key.
    assert trail.count("Bearer [redacted]") == 4


def test_subprocess_no_output_and_no_file_holds_the_key(echoing, write_config, tmp_path):
    if echoing.echo_auth != 502:
        pytest.skip("one status is enough for the real process")
    write_config(extra=engine_toml(echoing))
    for command in (("chat", "proxied", "llama3.2:1b", "hello"), ("ps", "--json"), ("engines", "--json"),
                    ("load", "proxied", "llama3.2:1b"), ("doctor",)):
        proc = subprocess.run([sys.executable, "-m", "console", *command, "--no-discover"], cwd=ROOT,
                              env=dict(os.environ), capture_output=True, text=True, timeout=60)
        assert "Traceback" not in proc.stderr
        assert not leaks(proc.stdout + proc.stderr), (command, proc.stdout, proc.stderr)
        assert_sent_and_echoed(echoing, proc.stdout + proc.stderr)
    for name, data in files_under(tmp_path / "data").items():
        assert not leaks(data), name


def test_history_of_a_failed_chat_keeps_the_error_without_the_key(echoing, cli, capsys):
    cli("chat", "proxied", "llama3.2:1b", "hello", extra=engine_toml(echoing))
    capsys.readouterr()
    cli("history", "list", "--json", extra=engine_toml(echoing))
    (session,) = json.loads(capsys.readouterr().out)
    cli("history", "show", str(session["id"]), "--json", extra=engine_toml(echoing))
    shown = capsys.readouterr().out
    assert "Bearer [redacted]" in shown and not leaks(shown)
