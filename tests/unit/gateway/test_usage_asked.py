"""The gateway asks vLLM, SGLang and Ollama for their token counts on a client's OpenAI stream and cuts the usage
event it asked for back out (console/gateway/usage.py): the record has the engine's counts, the client's stream is
what it would have been."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from console.gateway.usage import UsageCut, with_usage_asked
from tests.fakes.ollama_server import FakeOllama
from tests.unit.gateway.conftest import verify

CHAT = b"/v1/chat/completions"
USAGE = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3}}\n\n'
DELTA = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
DONE = b"data: [DONE]\n\n"


def _asked(body: bytes, path: bytes = CHAT) -> bytes | None:
    return with_usage_asked(path, body, json.loads(body))


def test_the_option_is_added_only_to_streams_that_did_not_say() -> None:
    body = b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "\xc3\xa9}"}]}\n'
    asked = _asked(body)
    assert asked is not None
    assert json.loads(asked)["stream_options"] == {"include_usage": True}
    assert asked.startswith(body[:-2])  # every byte of the client's body, the option before its closing brace
    assert _asked(b'{"model": "m", "prompt": "x", "stream": true}', b"/v1/completions") is not None
    for unchanged in (b'{"model": "m", "stream": false}', b'{"model": "m"}',
                      b'{"model": "m", "stream": true, "stream_options": {"include_usage": false}}',
                      b'{"model": "m", "stream": true, "stream_options": {}}'):
        assert _asked(unchanged) is None
    assert _asked(b'{"model": "m", "stream": true}', b"/api/chat") is None
    assert _asked(b'{"model": "m", "stream": true}', b"/v1/embeddings") is None
    assert with_usage_asked(CHAT, b"[1]", [1]) is None


def test_only_the_usage_event_is_cut_however_the_reads_fall() -> None:
    stream = DELTA + DELTA.replace(b'"hi"', b'"there"') + USAGE + DONE
    for size in (1, 7, 64, len(stream)):
        cut = UsageCut()
        out = b"".join(cut.feed(stream[i:i + size]) for i in range(0, len(stream), size)) + cut.end()
        assert out == DELTA + DELTA.replace(b'"hi"', b'"there"') + DONE, size
    # usage on a chunk that has choices (an engine's own choice) stays; so does a stream with CRLF framing
    own = b'data: {"choices":[{"index":0,"delta":{}}],"usage":{"prompt_tokens":1}}\n\n'
    cut = UsageCut()
    assert cut.feed(own + DONE) == own + DONE
    crlf = DELTA.replace(b"\n\n", b"\r\n\r\n") + USAGE.replace(b"\n\n", b"\r\n\r\n")
    cut = UsageCut()
    assert cut.feed(crlf) + cut.end() == DELTA.replace(b"\n\n", b"\r\n\r\n")


def _stream(url: str, model: str, **extra) -> list[openai.types.chat.ChatCompletionChunk]:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    return list(client.chat.completions.create(model=model, messages=[{"role": "user", "content": "why?"}],
                                               stream=True, max_tokens=16, **extra))


def test_ollama_openai_stream_gets_counted_and_the_client_sees_no_usage(ollama_server: FakeOllama,
                                                                         gateway) -> None:
    gw = gateway(ollama_server.url)
    assert any(e["event"] == "engine_kind" and e["kind"] == "ollama" and e["ask_usage"] for e in gw.events())
    through = _stream(gw.url, "llama3.2:1b")
    direct = _stream(ollama_server.url, "llama3.2:1b")
    assert all(c.usage is None and c.choices for c in through)  # nothing the client did not ask for
    assert [c.choices[0].delta.content for c in through] == [c.choices[0].delta.content for c in direct]
    asked = _stream(ollama_server.url, "llama3.2:1b", stream_options={"include_usage": True})
    usage = next(c.usage for c in asked if c.usage is not None)
    # The client's own question is passed on as it is, and answered.
    own = _stream(gw.url, "llama3.2:1b", stream_options={"include_usage": True})
    assert next(c.usage for c in own if c.usage is not None) == usage
    first, second = gw.wait_records(2)
    assert (first["tokens_in"], first["tokens_out"]) == (usage.prompt_tokens, usage.completion_tokens)
    assert (second["tokens_in"], second["tokens_out"]) == (usage.prompt_tokens, usage.completion_tokens)
    assert first["outcome"] == "ok" and first["bytes_out"] < second["bytes_out"]  # the usage event was not sent
    verify(gw)


def test_no_ask_usage_and_unknown_engines_leave_the_stream_alone(ollama_server: FakeOllama, synthetic_engine,
                                                                 gateway) -> None:
    off = gateway(ollama_server.url, "--no-ask-usage")
    assert all(c.usage is None for c in _stream(off.url, "llama3.2:1b"))
    (rec,) = off.wait_records(1)
    assert rec["tokens_out"] is None  # the stream said none: nothing is estimated
    eng = synthetic_engine(ttft_s=0.001, itl_s=0.001)  # an OpenAI-compatible server of no known kind
    other = gateway(eng.url)
    assert any(e["event"] == "engine_kind" and not e["ask_usage"] for e in other.events())
    body = {"model": "synthetic", "stream": True, "max_tokens": 4, "messages": [{"role": "user", "content": "x"}]}
    answer = httpx.post(f"{other.url}/v1/chat/completions", json=body, timeout=10)
    assert answer.status_code == 200 and b"[DONE]" in answer.content
    assert b'"usage"' not in answer.content  # it would answer with usage had the gateway asked
    assert other.wait_records(1)[0]["tokens_out"] is None


@pytest.mark.vllm
def test_vllm_stream_without_usage_is_counted(vllm_server, gateway) -> None:
    gw = gateway(vllm_server.url)
    through = _stream(gw.url, vllm_server.model, temperature=0)
    asked = _stream(vllm_server.url, vllm_server.model, temperature=0, stream_options={"include_usage": True})
    usage = next(c.usage for c in asked if c.usage is not None)
    assert all(c.usage is None and c.choices for c in through)
    (rec,) = gw.wait_records(1)
    assert (rec["tokens_in"], rec["tokens_out"]) == (usage.prompt_tokens, usage.completion_tokens)
    verify(gw)
