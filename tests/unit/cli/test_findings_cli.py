"""`enginedeck findings` and the findings in `doctor`, against the Ollama contract server and a real store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from console.store.db import Store
from tests.fakes.ollama_server import FakeOllama


def findings(cli, capsys: pytest.CaptureFixture[str], url: str) -> list[dict]:
    capsys.readouterr()
    assert cli("findings", "--json", engines={"o": url}) == 0
    return json.loads(capsys.readouterr().out)["findings"]


def test_partly_on_cpu_from_ollama_ps(cli, capsys: pytest.CaptureFixture[str], ollama_server: FakeOllama):
    ollama_server.load(ollama_server.resolve("llama3.2:1b"), None, None)  # all in VRAM
    assert [f for f in findings(cli, capsys, ollama_server.url) if f["kind"] == "partly_on_cpu"] == []
    ollama_server.load(ollama_server.resolve("gemma3:4b"), None, None)  # the fake keeps 60 % in VRAM
    [f] = [f for f in findings(cli, capsys, ollama_server.url) if f["kind"] == "partly_on_cpu"]
    assert (f["engine"], f["model"], f["severity"]) == ("o", "gemma3:4b", "warn")
    assert [e["source"] for e in f["evidence"]] == ["ollama /api/ps size_vram", "ollama /api/ps size"]
    assert f["evidence"][0]["value"] < f["evidence"][1]["value"]


async def _ask_context(data_dir: Path, engine: str, model: str, tokens: int) -> None:
    store = await Store.open(data_dir / "enginedeck.db")
    try:
        session = await store.sessions.create(engine=engine, model=model)
        await store.sessions.add_message(session.id, "assistant", "hi", engine=engine, model=model,
                                         params={"context_length": tokens})
    finally:
        await store.close()


def test_context_smaller_than_the_chat_asked(cli, capsys: pytest.CaptureFixture[str], ollama_server: FakeOllama,
                                             tmp_path: Path):
    model = ollama_server.resolve("llama3.2:1b")
    assert model is not None
    asyncio.run(_ask_context(tmp_path / "data", "o", "llama3.2:1b", 8192))
    ollama_server.load(model, None, 8192)
    assert [f for f in findings(cli, capsys, ollama_server.url) if f["kind"] == "context_short"] == []
    ollama_server.load(model, None, 2048)  # loaded again, smaller (as Ollama does to fit memory)
    [f] = [f for f in findings(cli, capsys, ollama_server.url) if f["kind"] == "context_short"]
    assert [e["value"] for e in f["evidence"]] == [8192, 2048]
    assert "enginedeck history" in f["evidence"][0]["source"]


def test_doctor_lists_findings(cli, capsys: pytest.CaptureFixture[str], ollama_server: FakeOllama):
    ollama_server.load(ollama_server.resolve("gemma3:4b"), None, None)
    capsys.readouterr()
    assert cli("doctor", "--json", engines={"o": ollama_server.url}) == 0  # a warning, not a failure
    checks = [c for c in json.loads(capsys.readouterr().out)["checks"] if c["name"] == "finding partly_on_cpu"]
    assert len(checks) == 1 and checks[0]["status"] == "warn" and "gemma3:4b" in checks[0]["detail"]


def test_findings_table_and_nothing_found(cli, capsys: pytest.CaptureFixture[str], ollama_server: FakeOllama):
    capsys.readouterr()
    assert cli("findings", engines={"o": ollama_server.url}) == 0
    assert "no findings" in capsys.readouterr().out


def test_what_could_not_be_checked_is_said(cli, capsys: pytest.CaptureFixture[str], ollama_server: FakeOllama,
                                           monkeypatch: pytest.MonkeyPatch):
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML: the GPU findings cannot be looked for
    capsys.readouterr()
    assert cli("findings", "--json", engines={"o": ollama_server.url}) == 0
    unchecked = json.loads(capsys.readouterr().out)["not_checked"]
    assert [u["kinds"].split(", ")[0] for u in unchecked] == ["gpu_throttled"]
    assert "nvidia-ml-py" in unchecked[0]["why"]
    assert cli("findings", engines={"o": ollama_server.url}) == 0
    assert "not checked: gpu_throttled" in capsys.readouterr().out
