"""Real clients through a real gateway process: the official `ollama` client against the Ollama contract server,
the official `openai` client against the synthetic engine (and the real llama-server when the lab is built);
every record checked against what the client saw, every log verified with `enginedeck audit verify`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import ollama
import openai
import pytest

from tests.fakes.ollama_server import FakeOllama, slow
from tests.unit.gateway.conftest import ROOT, verify


def test_ollama_client_stream_and_whole(ollama_server: FakeOllama, gateway) -> None:
    gw = gateway(ollama_server.url)
    client = ollama.Client(host=gw.url)
    messages = [{"role": "user", "content": "why is the sky blue?"}]
    parts = list(client.chat(model="llama3.2:1b", messages=messages, stream=True))
    streamed = "".join(p.message.content or "" for p in parts)
    last = parts[-1]
    whole = client.chat(model="llama3.2:1b", messages=messages)
    tags = client.list()
    assert streamed and whole.message.content == streamed and tags.models
    recs = gw.wait_records(3)
    chat_stream, chat_whole, listed = recs
    assert chat_stream["path"] == "/api/chat" and chat_stream["stream"] is True and chat_stream["outcome"] == "ok"
    assert (chat_stream["tokens_in"], chat_stream["tokens_out"]) == (last.prompt_eval_count, last.eval_count)
    assert chat_whole["stream"] is False
    assert (chat_whole["tokens_in"], chat_whole["tokens_out"]) == (whole.prompt_eval_count, whole.eval_count)
    assert listed["path"] == "/api/tags" and listed["status_code"] == 200 and listed["tokens_out"] is None
    assert all(r["model"] == "llama3.2:1b" for r in (chat_stream, chat_whole))
    assert all(r["client"] == "anonymous" and r["client_ip"] == "127.0.0.1" for r in recs)
    assert all(r["ttft_ms"] is not None and r["ttft_ms"] <= r["latency_ms"] for r in recs)
    verify(gw)


def test_ollama_error_reaches_the_client_unchanged(ollama_server: FakeOllama, gateway) -> None:
    gw = gateway(ollama_server.url)
    body = {"model": "no-such-model", "prompt": "x"}
    direct = httpx.post(f"{ollama_server.url}/api/generate", json=body)
    through = httpx.post(f"{gw.url}/api/generate", json=body)
    assert (through.status_code, through.content) == (direct.status_code, direct.content) == (404, direct.content)
    with pytest.raises(ollama.ResponseError) as err:
        ollama.Client(host=gw.url).generate(model="no-such-model", prompt="x")
    assert err.value.status_code == 404
    recs = gw.wait_records(2)
    assert [r["outcome"] for r in recs] == ["upstream_error", "upstream_error"]
    assert [r["status_code"] for r in recs] == [404, 404]
    verify(gw)


def _openai_figures(client: openai.OpenAI, model: str, *, whole_too: bool = True
                    ) -> tuple[str, tuple[int, int], str, tuple[int, int] | None]:
    messages = [{"role": "user", "content": "Say hello."}]
    chunks = list(client.chat.completions.create(model=model, messages=messages, max_tokens=8, stream=True,
                                                 stream_options={"include_usage": True}))
    usage = next(c.usage for c in chunks if c.usage is not None)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    if not whole_too:
        return text, (usage.prompt_tokens, usage.completion_tokens), "", None
    whole = client.chat.completions.create(model=model, messages=messages, max_tokens=8)
    assert whole.usage is not None
    return (text, (usage.prompt_tokens, usage.completion_tokens), whole.choices[0].message.content or "",
            (whole.usage.prompt_tokens, whole.usage.completion_tokens))


def _check_openai_records(gw, seen: tuple[str, tuple[int, int], str, tuple[int, int] | None]) -> None:
    recs = gw.wait_records(1 if seen[3] is None else 2)
    stream = recs[0]
    assert stream["stream"] is True
    assert (stream["tokens_in"], stream["tokens_out"]) == seen[1]
    if seen[3] is not None:
        whole = recs[1]
        assert whole["stream"] is False and (whole["tokens_in"], whole["tokens_out"]) == seen[3]
    assert {r["outcome"] for r in recs} == {"ok"} and {r["status_code"] for r in recs} == {200}
    assert all(r["path"] == "/v1/chat/completions" for r in recs)
    verify(gw)


def test_openai_client_against_the_synthetic_engine(synthetic_engine, gateway) -> None:
    eng = synthetic_engine(ttft_s=0.02, itl_s=0.005)
    gw = gateway(eng.url)
    seen = _openai_figures(openai.OpenAI(base_url=f"{gw.url}/v1", api_key="sk-client-key-0123456789"), "synthetic",
                           whole_too=False)
    assert seen[0] and seen[1][1] == 8
    _check_openai_records(gw, seen)
    # Without gateway keys, the client's own key is recorded as a fingerprint, never as itself.
    recs = gw.records()
    assert all(r["client"].startswith("key:") and "sk-client" not in str(r) for r in recs)


@pytest.mark.llama
def test_openai_client_against_llama_server(llama_server, gateway) -> None:
    gw = gateway(llama_server.url)
    seen = _openai_figures(openai.OpenAI(base_url=f"{gw.url}/v1", api_key="none", max_retries=0), llama_server.model)
    _check_openai_records(gw, seen)


KILLED_CLIENT = """
import sys, httpx
with httpx.stream("POST", sys.argv[1] + "/api/chat", json={"model": "llama3.2:1b",
        "messages": [{"role": "user", "content": "hi"}]}, timeout=30) as r:
    for line in r.iter_lines():
        print(line, flush=True)
"""


def test_a_killed_client_cancels_the_engine_request(ollama_server: FakeOllama, gateway) -> None:
    ollama_server.queue(slow(0.2))
    gw = gateway(ollama_server.url)
    client = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, gw.url], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    assert client.stdout is not None
    assert '"done":false' in client.stdout.readline()
    assert ollama_server.active == 1
    client.send_signal(signal.SIGKILL)
    client.wait(5)
    deadline = time.monotonic() + 5
    while ollama_server.active and time.monotonic() < deadline:  # the engine notices its connection closed
        time.sleep(0.05)
    assert ollama_server.active == 0
    (rec,) = gw.wait_records(1)
    assert rec["outcome"] == "client_disconnect" and rec["status_code"] == 200 and rec["stream"] is True
    assert rec["latency_ms"] < 4000  # the generation would have taken 20 tokens x 0.2 s
    verify(gw)


def test_an_upstream_killed_mid_stream_cuts_the_client_short(synthetic_engine, gateway) -> None:
    eng = synthetic_engine(ttft_s=0.01, itl_s=0.05)
    gw = gateway(eng.url)
    got = []
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", timeout=10,
                      json={"model": "synthetic", "max_tokens": 200, "stream": True,
                            "messages": [{"role": "user", "content": "x"}]}) as r:
        assert r.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):  # a cut-short chunked body, never a complete one
            for line in r.iter_lines():
                got.append(line)
                if len(got) == 6:
                    eng.procs[0].kill()
    (rec,) = gw.wait_records(1)
    assert rec["outcome"] == "upstream_error" and rec["status_code"] == 200
    assert "broke" in rec["error"]
    verify(gw)


@pytest.mark.vllm
def test_openai_client_against_vllm(vllm_server, gateway) -> None:
    gw = gateway(vllm_server.url)
    seen = _openai_figures(openai.OpenAI(base_url=f"{gw.url}/v1", api_key="none", max_retries=0), vllm_server.model)
    _check_openai_records(gw, seen)
