"""Every headless command a lab engine supports, through the installed `enginedeck` entry point, against the real
llama-server (single-model and router mode) and the real vLLM: engines, models, ps, load, unload, swap and its
rollback, chat, probe, doctor; plus two enginedeck processes acting on one engine, and ctrl+c during a swap.

Each test runs `enginedeck` as a user does (tests/entry_point.py): a subprocess from a directory outside the
checkout, with its own config file and data dir. Runs are kept small: this CI box has 2 cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from console.store.db import Store
from tests.entry_point import Installed
from tests.lab_fixtures import LabRouter, LabServer, LabVllmServer

ROUTER_LOAD_S = 120  # the command's own bound on a router load is load_timeout_s; this only bounds a broken test
CHAT_ARGS = ("Say hello in three words.", "--max-tokens", "8", "--temperature", "0")
PROBE_ARGS = ("--levels", "1,2", "--requests", "2", "--max-tokens", "4", "--prompt-tokens", "16", "--json")


@pytest.fixture
def deck(tmp_path: Path) -> Installed:
    return Installed(tmp_path, "connect_timeout = 3.0\nrequest_timeout = 60.0\n")


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def failed(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failure prints on stderr."""
    assert result.returncode == 1, f"exit {result.returncode}: {result.stdout} {result.stderr}"
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("enginedeck: "), result.stderr
    return result.stderr


def name_of(url: str) -> str:
    return "llamacpp@" + url.removeprefix("http://")


def router_states(url: str) -> dict[str, str]:
    with urllib.request.urlopen(url + "/models", timeout=10) as resp:
        return {m["id"]: m["status"]["value"] for m in json.load(resp)["data"]}


def resident(deck: Installed, url: str) -> list[tuple[str, str | None]]:
    doc = json.loads(ok(deck.run("ps", url, "--no-discover", "--json")))
    return [(m["name"], m["status"]) for m in doc["loaded"]]


def recorded(deck: Installed) -> tuple[list, list]:
    """(model events, audit events) the commands wrote, oldest first."""
    async def read() -> tuple[list, list]:
        store = await Store.open(deck.data / "enginedeck.db")
        try:
            return list(reversed(await store.model_events.recent())), await store.audit.all()
        finally:
            await store.close()

    return asyncio.run(read())


# -- llama-server, single-model mode -------------------------------------------------------------------------------

@pytest.mark.llama
def test_single_engines_models_ps(deck: Installed, llama_server: LabServer):
    url = llama_server.url
    doc = json.loads(ok(deck.run("engines", "--engine", url, "--no-discover", "--json")))
    (row,) = doc["engines"]
    assert (row["name"], row["kind"], row["health"]) == (name_of(url), "llamacpp", "ok") and row["version"]
    table = ok(deck.run("engines", "--engine", url, "--no-discover"))
    assert name_of(url) in table and " ok " in table

    doc = json.loads(ok(deck.run("models", url, "--no-discover", "--json")))
    [model] = doc["models"]
    assert model["name"] == llama_server.model and model["size"] and model["context_length"]
    assert llama_server.model in ok(deck.run("models", url, "--no-discover"))

    assert resident(deck, url) == [(llama_server.model, "loaded")]
    assert llama_server.model in ok(deck.run("ps", url, "--no-discover"))


@pytest.mark.llama
@pytest.mark.parametrize("args", [("load", "other"), ("unload", "smollm2"), ("swap", "smollm2", "other")])
def test_single_refuses_model_actions_and_says_why(deck: Installed, llama_server: LabServer, args: tuple[str, ...]):
    err = failed(deck.run(args[0], llama_server.url, *args[1:], "--no-discover"))
    assert "llama-server started with -m serves one model; start it in router mode (--models-dir)" in err


@pytest.mark.llama
def test_single_chat_text_and_json(deck: Installed, llama_server: LabServer):
    out = ok(deck.run("chat", llama_server.url, llama_server.model, *CHAT_ARGS, "--no-discover"))
    assert out.strip()
    doc = json.loads(ok(deck.run("chat", llama_server.url, llama_server.model, *CHAT_ARGS, "--json",
                                 "--no-discover")))
    assert doc["status"] == "complete" and doc["reply"] and doc["tokens_out"] and doc["token_source"]
    history = json.loads(ok(deck.run("history", "list", "--json")))
    assert len(history["sessions"] if isinstance(history, dict) else history) == 2


@pytest.mark.llama
def test_single_probe_small(deck: Installed, llama_server: LabServer):
    doc = json.loads(ok(deck.run("probe", llama_server.url, llama_server.model, *PROBE_ARGS, "--no-discover",
                                 timeout=600)))
    text = json.dumps(doc)
    assert doc["status"] == "complete", text[:2000]
    assert [level["concurrency"] for level in doc["levels"]] == [1, 2], text[:2000]


@pytest.mark.llama
def test_doctor_sees_the_engine(deck: Installed, llama_server: LabServer):
    result = deck.run("doctor", "--engine", llama_server.url, "--no-discover", "--json")
    doc = json.loads(result.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    engine = checks[f"engine {name_of(llama_server.url)}"]
    assert engine["status"] == "ok" and "llamacpp" in engine["detail"]
    assert checks["database"]["status"] == "ok"
    assert result.returncode == (0 if doc["ok"] else 1) and "Traceback" not in result.stderr


# -- llama-server, router mode -------------------------------------------------------------------------------------

@pytest.mark.llama
def test_router_load_ps_swap_unload(deck: Installed, router: LabRouter):
    """Issue 11, point 2: `enginedeck load URL smol-a` on a router, each command a fresh process."""
    url, (a, b) = router.url, router.models
    doc = json.loads(ok(deck.run("models", url, "--no-discover", "--json")))
    assert sorted(m["name"] for m in doc["models"]) == sorted(router.models)

    assert re.fullmatch(rf"loaded {a} on {name_of(url)} in \d+\.\d\d s\n",
                        ok(deck.run("load", url, a, "--no-discover", timeout=ROUTER_LOAD_S)))
    assert resident(deck, url) == [(a, "loaded")]
    out = ok(deck.run("swap", url, a, b, "--no-discover", timeout=ROUTER_LOAD_S))
    assert re.fullmatch(rf"swapped {a} → {b} on {name_of(url)}: unload \d+\.\d\d s, load \d+\.\d\d s, "
                        r"first token \d+\.\d\d s\n", out), out
    assert resident(deck, url) == [(b, "loaded")]
    doc = json.loads(ok(deck.run("unload", url, b, "--no-discover", "--json", timeout=ROUTER_LOAD_S)))
    assert (doc["action"], doc["model"], doc["ok"], doc["warnings"]) == ("unload", b, True, [])
    assert resident(deck, url) == []

    events, audit = recorded(deck)
    assert [(e.op, e.model, e.ok) for e in events] == [("load", a, True), ("swap", b, True), ("unload", b, True)]
    assert [(x.action, x.target, x.result) for x in audit] == [("load", a, "ok"), ("swap", b, "ok"),
                                                                ("unload", b, "ok")]
    assert "OK: every record is intact" in ok(deck.run("audit", "verify"))


@pytest.mark.llama
def test_router_engines_chat_probe_doctor(deck: Installed, router: LabRouter):
    url, a = router.url, router.models[0]
    (row,) = json.loads(ok(deck.run("engines", "--engine", url, "--no-discover", "--json")))["engines"]
    assert (row["kind"], row["health"]) == ("llamacpp", "ok")
    refused = deck.run("chat", url, a, *CHAT_ARGS, "--no-discover")  # --no-models-autoload: load it first
    assert refused.returncode == 1 and "model is not loaded" in refused.stderr, refused.stderr
    ok(deck.run("load", url, a, "--no-discover", timeout=ROUTER_LOAD_S))
    reply = json.loads(ok(deck.run("chat", url, a, *CHAT_ARGS, "--json", "--no-discover")))
    assert reply["status"] == "complete" and reply["reply"] and reply["model"] == a
    probe = json.loads(ok(deck.run("probe", url, a, *PROBE_ARGS, "--no-discover", timeout=600)))
    assert probe["status"] == "complete" and [lv["concurrency"] for lv in probe["levels"]] == [1, 2]
    doctor = json.loads(deck.run("doctor", "--engine", url, "--no-discover", "--json").stdout)
    assert {c["name"]: c["status"] for c in doctor["checks"]}[f"engine {name_of(url)}"] == "ok"


@pytest.mark.llama
def test_router_swap_to_a_model_that_fails_restores_the_old_one_and_says_so(deck: Installed,
                                                                                  router: LabRouter):
    url, a = router.url, router.models[0]
    ok(deck.run("load", url, a, "--no-discover", timeout=ROUTER_LOAD_S))
    result = deck.run("swap", url, a, "no-such-model", "--no-discover", "--json", timeout=ROUTER_LOAD_S)
    err = failed(result)
    doc = json.loads(result.stdout)
    assert (doc["ok"], doc["rolled_back"], doc["verified"], doc["loaded_now"]) == (
        False, True, f"loaded now: {a}", [a])
    assert "no-such-model" in doc["error"]
    assert err.rstrip().endswith(f"; {a} is loaded again (verified afterwards: loaded now: {a})"), err
    assert resident(deck, url) == [(a, "loaded")]
    events, audit = recorded(deck)
    assert (events[-1].op, events[-1].ok, events[-1].outcome) == ("swap", False, f"loaded now: {a}")
    assert audit[-1].result.endswith(f"; verified: loaded now: {a}")


@pytest.mark.llama
def test_two_processes_on_one_engine_the_second_is_refused(deck: Installed, router: LabRouter):
    """The first command is stopped (SIGSTOP) once it holds the engine, so the overlap is certain, not timed."""
    url, (a, b) = router.url, router.models
    first = deck.start("load", url, a, "--no-discover")
    try:
        locks = deck.data / "locks"
        deadline = time.monotonic() + 60
        while not (locks.exists() and any(p.stat().st_size for p in locks.iterdir())):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGSTOP)
        err = failed(deck.run("unload", url, b, "--no-discover"))
        assert f"{name_of(url)} is busy with load of {a} (pid {first.pid}, running for" in err, err
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=ROUTER_LOAD_S)
    assert first.returncode == 0, err
    assert out.startswith(f"loaded {a} on ")
    events, _ = recorded(deck)
    assert [(e.op, e.model, e.ok) for e in events] == [("load", a, True)]  # the refused one changed nothing


@pytest.mark.llama
def test_ctrl_c_during_a_swap_says_what_is_loaded_now(deck: Installed, router: LabRouter):
    url, (a, b) = router.url, router.models
    ok(deck.run("load", url, a, "--no-discover", timeout=ROUTER_LOAD_S))
    swap = deck.start("swap", url, a, b, "--no-discover")
    deadline = time.monotonic() + ROUTER_LOAD_S
    while router_states(url)[a] != "unloaded":  # the swap is past its unload: now it loads b
        assert swap.poll() is None and time.monotonic() < deadline, swap.communicate()
        time.sleep(0.02)
    swap.send_signal(signal.SIGINT)
    _, err = swap.communicate(timeout=60)
    assert swap.returncode == 130, err
    match = re.fullmatch(rf"enginedeck: swap of {b} on {name_of(url)} cancelled; verified afterwards: "
                         r"(loaded now: .*)\n", err)
    assert match, err
    said = match.group(1)
    assert said in (f"loaded now: {b}", f"loaded now: {b} (loading)", "loaded now: nothing"), said
    events, audit = recorded(deck)
    assert (events[-1].op, events[-1].error, events[-1].outcome) == ("swap", "cancelled", said)
    assert audit[-1].result == f"cancelled; verified: {said}"


# -- vLLM ------------------------------------------------------------------------------------------------------

@pytest.mark.vllm
def test_vllm_every_command(deck: Installed, vllm_server: LabVllmServer):
    url, model = vllm_server.url, vllm_server.model
    name = "vllm@" + url.removeprefix("http://")
    (row,) = json.loads(ok(deck.run("engines", "--engine", url, "--no-discover", "--json")))["engines"]
    assert (row["kind"], row["health"]) == ("vllm", "ok") and row["version"]
    doc = json.loads(ok(deck.run("models", url, "--no-discover", "--json")))
    assert [m["name"] for m in doc["models"]] == [model]
    assert resident(deck, url) == [(model, "loaded")]

    reply = json.loads(ok(deck.run("chat", url, model, *CHAT_ARGS, "--json", "--no-discover")))
    assert reply["status"] == "complete" and reply["reply"] and reply["token_source"] == "server usage"
    probe = json.loads(ok(deck.run("probe", url, model, *PROBE_ARGS, "--no-discover", timeout=600)))
    assert probe["status"] == "complete" and [lv["concurrency"] for lv in probe["levels"]] == [1, 2]
    doctor = json.loads(deck.run("doctor", "--engine", url, "--no-discover", "--json").stdout)
    assert {c["name"]: c["status"] for c in doctor["checks"]}[f"engine {name}"] == "ok"

    # vLLM serves one model per process: swap is refused before anything is sent, with the reason.
    assert "restart the server with another --model" in failed(deck.run("swap", url, model, "x", "--no-discover"))
    # The lab's CPU build has runtime LoRA (so unload is offered, for adapters) but no sleep mode: unloading the
    # base model fails, and the line says the model is still loaded, read back from the server.
    err = failed(deck.run("unload", url, model, "--no-discover"))
    assert "sleep" in err and err.rstrip().endswith(f"verified afterwards: {model} is loaded"), err
    events, _ = recorded(deck)
    assert [(e.op, e.ok, e.outcome) for e in events] == [("unload", False, "loaded")]
