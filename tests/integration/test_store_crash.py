"""`kill -9` of `enginedeck chat` mid-stream: the database stays sound and loses at most the last second.

A real `python -m console chat` process streams from the Ollama contract server (slow tokens); the test reads
what it printed, with the time of each piece, kills it, then opens the database.
"""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from console.store.db import Store
from tests.fakes.ollama_server import FakeModel, ollama_contract_server, slow

ROOT = Path(__file__).resolve().parents[2]
WORDS = [f"word{i:03d} " for i in range(200)]
TOKEN_DELAY_S = 0.04  # 200 tokens: 8 s of streaming
KILL_AFTER_CHARS = 60 * len(WORDS[0])  # kill once about 60 words (~2.4 s of stream) were printed
# The reply row is flushed at least once a second; allow as much again for a busy CI machine.
ALLOWED_LOSS_S = 2.0


def test_sigkill_mid_stream_loses_at_most_the_last_second(tmp_path):
    model = FakeModel("crash:latest", reply="".join(WORDS), scenario=slow(TOKEN_DELAY_S))
    with ollama_contract_server([model]) as fake:
        _, reply, kept = kill_mid_stream(tmp_path, fake.url, "crash:latest", "count for me", KILL_AFTER_CHARS)
    assert "".join(WORDS).startswith(reply.content), "the saved text is not what the engine sent"
    assert kept > 0  # the kill came late enough for the bound to mean something


@pytest.mark.llama
def test_sigkill_mid_stream_against_the_real_llama_server(tmp_path, llama_server):
    seen, reply, _ = kill_mid_stream(tmp_path, llama_server.url, llama_server.model,
                                     "Write a long, detailed essay about the history of lighthouses.", 400,
                                     extra=("--max-tokens", "1500", "--temperature", "0"))
    assert reply.content and seen.startswith(reply.content), "the saved text is not what was streamed"


def kill_mid_stream(tmp_path, url, model, prompt, kill_after_chars, extra=()):
    """Run `enginedeck chat`, SIGKILL it once `kill_after_chars` were printed, check the database; return
    (everything printed, the saved reply row, how many characters had to survive)."""
    config = tmp_path / "config.toml"
    config.write_text("")
    env = {**os.environ, "ENGINEDECK_CONFIG": str(config), "ENGINEDECK_DATA_DIR": str(tmp_path / "data"),
           "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "console", "--no-discover", "chat", url, model, prompt, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    printed: list[tuple[float, str]] = []  # (monotonic time, everything printed so far)
    seen = ""
    enough = threading.Event()

    def read() -> None:
        nonlocal seen
        while chunk := os.read(proc.stdout.fileno(), 4096):
            seen += chunk.decode(errors="replace")
            printed.append((time.monotonic(), seen))
            if len(seen) >= kill_after_chars:
                enough.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert enough.wait(120), f"the chat never streamed enough: {seen!r} {proc.stderr.read1(2000)!r}"
    finally:
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reader.join(5)
    assert proc.returncode == -signal.SIGKILL

    async def inspect():
        store = await Store.open(tmp_path / "data" / "enginedeck.db")
        try:
            problems = await store.integrity_check()
            sessions = await store.sessions.list()
            rows = await store.sessions.messages(sessions[0].id) if sessions else []
            return problems, sessions, rows
        finally:
            await store.close()

    problems, sessions, rows = asyncio.run(inspect())
    assert problems == []
    assert len(sessions) == 1
    user, reply = rows
    assert (user.role, user.content, user.status) == ("user", prompt, "complete")
    assert (reply.role, reply.status) == ("assistant", "partial")
    # Everything printed up to ALLOWED_LOSS_S before the kill is in the row.
    before = [text for t, text in printed if t <= killed_at - ALLOWED_LOSS_S]
    must_have = before[-1] if before else ""
    assert len(reply.content) >= len(must_have), (len(reply.content), len(must_have))
    assert reply.ttft_ms is not None
    return seen, reply, len(must_have)
