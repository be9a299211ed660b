"""`enginedeck load | unload | swap | pull | delete`, in-process against the contract servers, and through the
installed entry point where a signal or a second process is part of the test."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import time
from pathlib import Path

import pytest

from console.engine_lock import EngineLock, Holder
from console.store.db import Store
from tests.entry_point import Installed
from tests.fakes.hostile_server import HostileServer
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_family import ChatScenario, FakeLMStudio, FakeSGLang
from tests.unit.engines.test_openai_llamacpp import FakeRouter

QWEN, LLAMA = "qwen2.5-7b-instruct", "llama-3.2-1b-instruct"


class _Stdin(io.StringIO):
    def __init__(self, text: str, tty: bool) -> None:
        super().__init__(text)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_load_then_unload_lmstudio(cli, capsys: pytest.CaptureFixture[str], lmstudio_server: FakeLMStudio):
    assert cli("load", lmstudio_server.url, QWEN) == 0
    assert capsys.readouterr().out.startswith(f"loaded {QWEN} on lmstudio@127.0.0.1:")
    assert lmstudio_server.loaded_keys() == [QWEN]
    assert cli("unload", lmstudio_server.url, QWEN, "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["action"], doc["model"], doc["ok"]) == ("unload", QWEN, True)
    assert isinstance(doc["seconds"], float) and doc["warnings"] == []
    assert lmstudio_server.loaded_keys() == []


def test_load_failure_is_one_line_exit_1(cli, capsys: pytest.CaptureFixture[str], lmstudio_server: FakeLMStudio):
    assert cli("load", lmstudio_server.url, "broken-model") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not enough memory" in err and "Traceback" not in err
    assert err.rstrip().endswith("; verified afterwards: broken-model is not loaded")


def test_swap_prints_the_three_timings(cli, capsys: pytest.CaptureFixture[str], lmstudio_server: FakeLMStudio):
    lmstudio_server._load(QWEN)
    assert cli("swap", lmstudio_server.url, QWEN, LLAMA) == 0
    out = capsys.readouterr().out
    assert f"swapped {QWEN} → {LLAMA}" in out and "unload" in out and "load" in out and "first token" in out
    assert lmstudio_server.loaded_keys() == [LLAMA]


def test_failed_swap_exits_1_and_says_old_is_back(cli, capsys: pytest.CaptureFixture[str],
                                                  lmstudio_server: FakeLMStudio):
    lmstudio_server._load(QWEN)
    assert cli("swap", lmstudio_server.url, QWEN, "broken-model", "--json") == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert (doc["ok"], doc["rolled_back"]) == (False, True)
    assert (doc["verified"], doc["loaded_now"]) == (f"loaded now: {QWEN}", [QWEN])
    assert f"{QWEN} is loaded again (verified afterwards: loaded now: {QWEN})" in captured.err
    assert captured.err.count("\n") == 1
    assert lmstudio_server.loaded_keys() == [QWEN]


def test_swap_whose_first_token_stream_breaks_rolls_back(cli, capsys: pytest.CaptureFixture[str],
                                                         lmstudio_server: FakeLMStudio):
    lmstudio_server._load(QWEN)
    lmstudio_server.queue(ChatScenario(drop_after=0))
    assert cli("swap", lmstudio_server.url, QWEN, LLAMA) == 1
    err = capsys.readouterr().err
    assert f"{QWEN} is loaded again" in err and "Traceback" not in err
    assert QWEN in lmstudio_server.loaded_keys()


def test_unsupported_action_says_why(cli, capsys: pytest.CaptureFixture[str], sglang_server: FakeSGLang):
    assert cli("load", sglang_server.url, "other") == 1
    assert "one per process" in capsys.readouterr().err


def test_read_only_refuses(cli, capsys: pytest.CaptureFixture[str], lmstudio_server: FakeLMStudio):
    assert cli("load", lmstudio_server.url, QWEN, "--read-only") == 1
    assert "--read-only" in capsys.readouterr().err
    assert lmstudio_server.loaded_keys() == []


def test_pull_progress_on_stderr_then_result(cli, capsys: pytest.CaptureFixture[str], ollama_server: FakeOllama):
    assert cli("pull", ollama_server.url, "tinyllama:latest", "--json") == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert (doc["action"], doc["ok"], doc["status"]) == ("pull", True, "success")
    lines = captured.err.splitlines()
    assert lines and lines[-1] == "success" and "\r" not in captured.err
    assert any("%" in line for line in lines)


def test_pull_progress_on_a_terminal_is_one_line_rewritten(cli, capsys: pytest.CaptureFixture[str],
                                                           ollama_server: FakeOllama, monkeypatch):
    # The inert writer lets through enginedeck's own rewrite-the-line code, and nothing else.
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert cli("pull", ollama_server.url, "tinyllama:latest") == 0
    err = capsys.readouterr().err
    assert err.count("\r\x1b[2K") > 1 and err.replace("\r\x1b[2K", "").count("\x1b") == 0
    assert err.endswith("success\n")


def test_pull_unknown_model_exits_1(cli, capsys: pytest.CaptureFixture[str], ollama_server: FakeOllama):
    assert cli("pull", ollama_server.url, "no-such-model:latest") == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("enginedeck: ollama@") and "file does not exist" in last and "Traceback" not in err


def test_delete_needs_yes_without_a_terminal(cli, capsys: pytest.CaptureFixture[str], ollama_server: FakeOllama,
                                             monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("sys.stdin", _Stdin("", tty=False))
    assert cli("delete", ollama_server.url, "llama3.2:1b") == 1
    assert "needs --yes" in capsys.readouterr().err
    assert ollama_server.resolve("llama3.2:1b") is not None
    assert cli("delete", ollama_server.url, "llama3.2:1b", "--yes") == 0
    assert ollama_server.resolve("llama3.2:1b") is None


@pytest.mark.parametrize(("answer", "deleted"), [("y\n", True), ("\n", False)])
def test_delete_asks_on_a_terminal(cli, capsys: pytest.CaptureFixture[str], ollama_server: FakeOllama,
                                   monkeypatch: pytest.MonkeyPatch, answer: str, deleted: bool):
    monkeypatch.setattr("sys.stdin", _Stdin(answer, tty=True))
    assert cli("delete", ollama_server.url, "gemma3:4b") == (0 if deleted else 1)
    err = capsys.readouterr().err
    assert "Delete gemma3:4b from ollama@127.0.0.1:" in err and "[y/N]" in err
    assert (ollama_server.resolve("gemma3:4b") is None) is deleted


def test_delete_read_only_refuses_before_asking(cli, capsys: pytest.CaptureFixture[str], ollama_server: FakeOllama,
                                                monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("sys.stdin", _Stdin("y\n", tty=True))
    assert cli("delete", ollama_server.url, "gemma3:4b", "--read-only") == 1
    err = capsys.readouterr().err
    assert "[y/N]" not in err and "--read-only" in err


def test_keep_alive_numbers_are_seconds(cli, ollama_server: FakeOllama):
    assert cli("load", ollama_server.url, "llama3.2:1b", "--keep-alive", "-1") == 0
    body = ollama_server.requests_to("/api/generate")[-1].body
    assert body["keep_alive"] == -1


def test_missing_arguments_is_usage_exit_2(cli, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exc:
        cli("swap", "x", "old")
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


# -- capabilities settled, one action per engine, ctrl+c ---------------------------------------------------------

def test_load_and_swap_on_a_router_nothing_polled_first(cli, capsys: pytest.CaptureFixture[str],
                                                        hostile_server: HostileServer):
    """Issue 11, point 2: each command is a fresh process, so the router was never probed before the check."""
    router = FakeRouter(hostile_server)
    assert cli("load", hostile_server.url, "smol-a") == 0, capsys.readouterr().err
    assert router.status["smol-a"] == "loaded"
    assert cli("swap", hostile_server.url, "smol-a", "smol-b") == 0, capsys.readouterr().err
    assert (router.status["smol-a"], router.status["smol-b"]) == ("unloaded", "loaded")
    assert cli("unload", hostile_server.url, "smol-b") == 0
    assert router.status["smol-b"] == "unloaded"


def test_an_engine_busy_with_another_process_is_refused(cli, capsys: pytest.CaptureFixture[str],
                                                        hostile_server: HostileServer, isolated: Path):
    router = FakeRouter(hostile_server)
    lock_dir = isolated.parent / "data" / "locks"
    with EngineLock.acquire(lock_dir, hostile_server.url, Holder("swap", "smol-b", "lab", 4242, time.time())):
        assert cli("load", hostile_server.url, "smol-a") == 1
    err = capsys.readouterr().err
    assert "is busy with swap of smol-b (pid 4242, running for 0 s)" in err and err.count("\n") == 1
    assert router.status["smol-a"] == "unloaded" and not hostile_server.requests_to("/models/load")
    assert cli("load", hostile_server.url, "smol-a") == 0  # the lock went with its holder


async def test_ctrl_c_cancels_the_action_and_says_what_the_engine_holds(tmp_path: Path,
                                                                       hostile_server: HostileServer):
    FakeRouter(hostile_server, stuck=("slow",))  # its load never ends
    run = Installed(tmp_path, "connect_timeout = 2.0\nrequest_timeout = 5.0\n")
    proc = run.start("load", hostile_server.url, "slow", "--no-discover")
    deadline = time.monotonic() + 60
    while not hostile_server.requests_to("/models/load"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        await asyncio.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)  # the fake runs on its own thread: blocking here is fine
    assert proc.returncode == 130, err
    url = hostile_server.url.removeprefix("http://")
    assert err == f"enginedeck: load of slow on llamacpp@{url} cancelled; verified afterwards: slow is loading\n"
    store = await Store.open(run.data / "enginedeck.db")
    try:
        (event,) = await store.model_events.recent()
        (audit,) = await store.audit.all()
    finally:
        await store.close()
    assert (event.op, event.model, event.error, event.outcome) == ("load", "slow", "cancelled", "loading")
    assert audit.result == "cancelled; verified: loading"
