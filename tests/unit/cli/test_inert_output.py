"""What `enginedeck` prints is inert wherever it goes: a pipe, a file, a terminal (a real pty).

A hostile model (the Ollama contract server's `hostile:latest`, whose reply carries a screen clear, OSC 52
clipboard write, OSC 8 hyperlink, BEL, an 8-bit CSI and backspaces) is asked through the installed entry point;
then every command that shows its text (chat, history show/search/export, logs, audit list) is run the same
three ways, and nothing a terminal would act on may come out, on stdout or stderr. `--json` stays valid JSON
with no raw control character, and the export keeps the text with its control characters escaped visibly.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from console.audit.trail import AuditTrail
from console.config import load_config
from console.store.db import Store
from tests.fakes.ollama_server import HOSTILE_REPLY, FakeOllama

ROOT = Path(__file__).resolve().parents[3]
MODES = ("pipe", "file", "pty")
# Anything a terminal acts on: C0 but newline, tab and carriage return (a pty turns \n into \r\n), DEL, C1.
ACTIVE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
OWN_CODES = ("\x1b[1m", "\x1b[0m")  # bold search hits on a terminal: the only codes enginedeck writes itself
HOSTILE_NAME = "evil\x1b]0;pwned\x07model\x9b2J"


def enginedeck(mode: str, *argv: str, tmp_path: Path) -> tuple[str, str, int]:
    """Run `python -m console ARGV --no-discover` with stdout on a pipe, a file or a pty: (stdout, stderr, code)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": "80"}
    env.pop("NO_COLOR", None)
    cmd = [sys.executable, "-m", "console", *argv, "--no-discover"]
    if mode == "pipe":
        done = subprocess.run(cmd, env=env, capture_output=True, timeout=60)
        return done.stdout.decode(), done.stderr.decode(), done.returncode
    if mode == "file":
        path = tmp_path / "out.txt"
        with path.open("wb") as out:
            done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.PIPE, timeout=60)
        return path.read_bytes().decode(), done.stderr.decode(), done.returncode
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
        os.close(slave)
        _, err = proc.communicate(timeout=60)
        reader.join(10)
    finally:
        os.close(master)
    return b"".join(chunks).decode(), err.decode(), proc.returncode


def active(text: str, *, own_codes: bool = False) -> list[str]:
    """The control characters left in `text` (our own bold codes allowed where asked)."""
    if own_codes:
        for code in OWN_CODES:
            text = text.replace(code, "")
    return ACTIVE.findall(text)


@pytest.fixture
def engine_url(ollama_server: FakeOllama) -> str:
    return ollama_server.url


@pytest.fixture
def hostile_history(engine_url: str, tmp_path: Path) -> None:
    """One chat with the hostile model, a log file of its reply, and an audit record naming a hostile model."""
    _, err, code = enginedeck("pipe", "chat", engine_url, "hostile:latest", "hi", tmp_path=tmp_path)
    assert code == 0, err
    (tmp_path / "hostile.log").write_text("".join(f"2026-01-01T00:00:00Z ERROR {line}\n"
                                                  for line in (HOSTILE_REPLY, "plain", HOSTILE_NAME)))

    async def audit() -> None:
        config = load_config(None)
        store = await Store.open(config.db_path)
        try:
            await AuditTrail.for_config(config, store.audit).record(
                "load", engine=HOSTILE_NAME, target=HOSTILE_NAME, params={}, result=f"error: {HOSTILE_NAME}",
                duration_s=0.1)
        finally:
            await store.close()

    asyncio.run(audit())


@pytest.mark.parametrize("mode", MODES)
def test_chat_with_a_hostile_model(mode, engine_url, tmp_path):
    out, err, code = enginedeck(mode, "chat", engine_url, "hostile:latest", "hi", tmp_path=tmp_path)
    assert code == 0, err
    assert "Plain start" in out and "end." in out and "TTFT" in err
    assert active(out) == [] and active(err) == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("argv", [
    ("history", "show", "1"),
    ("history", "search", "plain"),
    ("history", "export", "1"),
    ("logs", "{log}", "--no-follow"),
    ("audit", "list"),
], ids=["history-show", "history-search", "history-export", "logs", "audit-list"])
def test_every_view_of_hostile_text(mode, argv, hostile_history, tmp_path):
    argv = tuple(a.format(log=tmp_path / "hostile.log") for a in argv)
    out, err, code = enginedeck(mode, *argv, tmp_path=tmp_path)
    assert code == 0, err
    assert "Plain" in out or "evil" in out
    assert active(out, own_codes=mode == "pty" and argv[1] == "search") == [] and active(err) == []


@pytest.mark.parametrize("argv", [
    ("chat", "{url}", "hostile:latest", "hi"),
    ("history", "show", "1"),
    ("history", "search", "plain"),
    ("history", "export", "1"),
    ("audit", "list"),
], ids=["chat", "history-show", "history-search", "history-export", "audit-list"])
def test_json_is_valid_and_holds_no_raw_control_character(argv, hostile_history, engine_url, tmp_path):
    argv = tuple(a.format(url=engine_url) for a in argv)
    out, err, code = enginedeck("pipe", *argv, "--json", tmp_path=tmp_path)
    assert code == 0, err
    doc = json.loads(out)
    assert active(out) == []
    # The text itself is all there: JSON's escapes give back every byte the model sent.
    assert any(HOSTILE_REPLY in s or HOSTILE_NAME in s or "\x1b]52;" in s for s in strings(doc))


def strings(doc: object) -> list[str]:
    if isinstance(doc, str):
        return [doc]
    if isinstance(doc, dict):
        return [s for v in doc.values() for s in strings(v)]
    if isinstance(doc, list):
        return [s for v in doc for s in strings(v)]
    return []


def test_exports_keep_the_text_with_controls_escaped_visibly(hostile_history, tmp_path):
    md = tmp_path / "s.md"
    _, err, code = enginedeck("pipe", "history", "export", "1", "-o", str(md), tmp_path=tmp_path)
    assert code == 0, err
    text = md.read_text()
    assert active(text) == []
    assert "Plain start \\x1b[2J\\x1b[31mred\\x1b[0m \\x1b]52;c;ZXZpbA==\\x07 bell\\x07" in text

    exported = tmp_path / "s.json"
    _, err, code = enginedeck("pipe", "history", "export", "1", "--format", "json", "-o", str(exported),
                              tmp_path=tmp_path)
    assert code == 0, err
    assert active(exported.read_text()) == []
    assert json.loads(exported.read_text())["messages"][1]["content"] == HOSTILE_REPLY  # exactly the text


def test_raw_gives_the_bytes_to_whoever_asks(hostile_history, tmp_path):
    out, _, code = enginedeck("pipe", "history", "show", "1", "--raw", tmp_path=tmp_path)
    assert code == 0 and HOSTILE_REPLY in out


def test_raw_output_still_redacts_secrets():
    import io

    from console import secrets
    from console.commands.output import InertWriter

    secrets.remember("sk-raw-secret-123456")
    try:
        sink = io.StringIO()
        writer = InertWriter(sink, raw=True)
        writer.write("key \x1b[31msk-raw-secret-123456\x1b[0m\n")
        writer.finish()
        assert sink.getvalue() == "key \x1b[31m[redacted]\x1b[0m\n"
    finally:
        secrets.forget_all()
