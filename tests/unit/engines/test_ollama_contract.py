"""The contract server answers as shared/reference/ollama-api.md says (raw HTTP, no adapter in between)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.fakes.ollama_server import (
    BUSY,
    BUSY_BODY,
    FakeModel,
    FakeOllama,
    Scenario,
    go_json,
    go_time,
    ollama_contract_server,
    parse_keep_alive,
)


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with ollama_contract_server() as server:
        yield server


@pytest.fixture
def http(fake: FakeOllama) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, trust_env=False, timeout=10) as client:
        yield client


def ndjson(resp: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in resp.text.splitlines() if line]


def test_root_and_version(http: httpx.Client) -> None:
    root = http.get("/")
    assert (root.status_code, root.text) == (200, "Ollama is running")
    assert root.headers["content-type"].startswith("text/plain")
    head = http.head("/")
    assert head.status_code == 200 and head.content == b""
    assert http.get("/api/version").json() == {"version": "0.12.6"}


def test_gin_plain_text_404_and_405(http: httpx.Client) -> None:
    missing = http.get("/api/nope")
    assert (missing.status_code, missing.text) == (404, "404 page not found")
    assert missing.headers["content-type"].startswith("text/plain")
    wrong = http.post("/api/tags")
    assert (wrong.status_code, wrong.text) == (405, "405 method not allowed")


def test_tags_newest_first_with_details(http: httpx.Client) -> None:
    models = http.get("/api/tags").json()["models"]
    stamps = [datetime.fromisoformat(m["modified_at"]) for m in models]
    assert stamps == sorted(stamps, reverse=True)
    first = models[0]
    assert first["name"] == first["model"]
    assert len(first["digest"]) == 64 and not first["digest"].startswith("sha256:")
    assert {"family", "families", "parameter_size", "quantization_level", "format"} <= set(first["details"])


def test_load_is_one_json_object_and_shows_in_ps(http: httpx.Client) -> None:
    resp = http.post("/api/generate", json={"model": "llama3.2:1b"})
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["done"] is True and body["done_reason"] == "load" and body["response"] == ""
    ps = http.get("/api/ps").json()["models"]
    assert [m["name"] for m in ps] == ["llama3.2:1b"]
    entry = ps[0]
    assert {"size", "size_vram", "expires_at", "context_length", "digest", "details"} <= set(entry)
    left = datetime.fromisoformat(entry["expires_at"]) - datetime.now(UTC)
    assert timedelta(minutes=4) < left <= timedelta(minutes=5)  # default keep_alive 5m


def test_keep_alive_forms(http: httpx.Client) -> None:
    http.post("/api/generate", json={"model": "llama3.2:1b", "keep_alive": "10m"})
    http.post("/api/generate", json={"model": "gemma3:4b", "keep_alive": -1})
    http.post("/api/generate", json={"model": "qwen3:4b", "keep_alive": 30})
    ps = http.get("/api/ps").json()["models"]
    assert [m["name"] for m in ps] == ["gemma3:4b", "llama3.2:1b", "qwen3:4b"]  # expires_at descending
    forever = datetime.fromisoformat(ps[0]["expires_at"]) - datetime.now(UTC)
    assert forever > timedelta(days=365 * 20)
    bare = http.post("/api/generate", json={"model": "llama3.2:1b", "keep_alive": "3600"})
    assert bare.status_code == 400 and bare.json() == {"error": 'time: missing unit in duration "3600"'}


def test_unload_answers_unload_and_leaves_ps(http: httpx.Client) -> None:
    http.post("/api/generate", json={"model": "llama3.2:1b"})
    resp = http.post("/api/chat", json={"model": "llama3.2:1b", "messages": [], "keep_alive": 0})
    assert resp.json()["done_reason"] == "unload" and resp.json()["message"] == {"role": "assistant", "content": ""}
    assert http.get("/api/ps").json() == {"models": []}


def test_chat_streams_ndjson_with_nanosecond_stats(http: httpx.Client) -> None:
    resp = http.post("/api/chat", json={"model": "llama3.2:1b", "messages": [{"role": "user", "content": "Hi"}]})
    assert resp.headers["content-type"] == "application/x-ndjson"
    assert resp.headers["transfer-encoding"] == "chunked"
    lines = ndjson(resp)
    assert all(line["done"] is False for line in lines[:-1])
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["eval_count"] == len(lines) - 1
    for key in ("total_duration", "prompt_eval_duration", "eval_duration", "load_duration"):
        assert isinstance(final[key], int) and final[key] > 0
    assert final["total_duration"] >= final["eval_duration"]
    assert "".join(line["message"]["content"] for line in lines) == FakeModel("x").reply


def test_generate_stream_false_is_one_object(http: httpx.Client) -> None:
    body = http.post("/api/generate", json={"model": "llama3.2:1b", "prompt": "Hi", "stream": False}).json()
    assert body["response"] == FakeModel("x").reply and body["done"] is True and "context" in body


def test_error_bodies(fake: FakeOllama, http: httpx.Client) -> None:
    missing = http.post("/api/chat", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert (missing.status_code, missing.json()) == (404, {"error": "model 'nope' not found"})
    assert http.post("/api/show", json={"model": "nope"}).json() == {"error": "model 'nope' not found"}
    empty = http.post("/api/generate", content=b"")
    assert (empty.status_code, empty.json()) == (400, {"error": "missing request body"})
    fake.queue(BUSY)
    busy = http.post("/api/chat", json={"model": "llama3.2:1b", "messages": [{"role": "user", "content": "x"}]})
    assert busy.status_code == 503
    assert busy.content == b'{"error":"server busy, please try again.  maximum pending requests exceeded"}'
    assert busy.json() == BUSY_BODY


def test_midstream_error_line_after_200(fake: FakeOllama, http: httpx.Client) -> None:
    fake.queue(Scenario(error_after=2))
    resp = http.post("/api/chat", json={"model": "llama3.2:1b", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 200
    lines = ndjson(resp)
    assert len(lines) == 3 and lines[-1] == {"error": "an error was encountered while running the model"}


def test_missing_stats_are_absent_not_zero(fake: FakeOllama, http: httpx.Client) -> None:
    fake.queue(Scenario(omit_stats=("prompt_eval_count", "load_duration")))
    final = ndjson(http.post("/api/generate", json={"model": "llama3.2:1b", "prompt": "x"}))[-1]
    assert "prompt_eval_count" not in final and "load_duration" not in final and final["eval_count"] > 0


def test_load_failure_is_500(http: httpx.Client) -> None:
    resp = http.post("/api/generate", json={"model": "broken:latest"})
    assert resp.status_code == 500 and "llama runner process has terminated" in resp.json()["error"]
    assert http.get("/api/ps").json() == {"models": []}


def test_pull_progress_and_unknown_model(fake: FakeOllama, http: httpx.Client) -> None:
    lines = ndjson(http.post("/api/pull", json={"model": "tinyllama"}))
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[-1] == {"status": "success"}
    layer = [x for x in lines if x.get("digest")]
    assert "completed" not in layer[0]  # nothing downloaded yet
    assert layer[0]["status"] == "pulling " + layer[0]["digest"][7:19]
    assert fake.resolve("tinyllama") is not None
    bad = ndjson(http.post("/api/pull", json={"model": "no-such-model"}))
    assert bad == [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]


def test_delete_empty_body_then_404(http: httpx.Client) -> None:
    ok = http.request("DELETE", "/api/delete", json={"model": "gemma3:4b"})
    assert (ok.status_code, ok.content) == (200, b"")
    again = http.request("DELETE", "/api/delete", json={"model": "gemma3:4b"})
    assert (again.status_code, again.json()) == (404, {"error": "model 'gemma3:4b' not found"})


def test_v1_models_null_when_empty() -> None:
    with ollama_contract_server(models=[]) as fake, httpx.Client(base_url=fake.url, trust_env=False) as http:
        assert http.get("/v1/models").json() == {"object": "list", "data": None}


def test_v1_chat_completions_sse(http: httpx.Client) -> None:
    resp = http.post("/v1/chat/completions", json={
        "model": "llama3.2:1b", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Hi"}],
    })
    assert resp.headers["content-type"] == "text/event-stream"
    events = [line.removeprefix("data: ") for line in resp.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    whole = http.post("/v1/chat/completions", json={"model": "llama3.2:1b", "messages": [{"role": "user",
                                                                                          "content": "Hi"}]})
    assert whole.json()["object"] == "chat.completion"  # stream defaults to false on /v1


def test_num_parallel_queues_instead_of_failing() -> None:
    with ollama_contract_server(num_parallel=1) as fake:
        fake.queue(Scenario(token_delay_s=0.01), times=3)

        def one() -> None:
            with httpx.Client(base_url=fake.url, trust_env=False, timeout=30) as http:
                assert http.post("/api/generate", json={"model": "llama3.2:1b", "prompt": "x"}).status_code == 200

        loaded = httpx.post(f"{fake.url}/api/generate", json={"model": "llama3.2:1b"}, trust_env=False)
        assert loaded.status_code == 200
        threads = [threading.Thread(target=one) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert fake.max_active == 1


def test_go_encoding_helpers() -> None:
    assert go_json({"a": "<b>&"}) == b'{"a":"\\u003cb\\u003e\\u0026"}'
    assert go_json({"c": "\x1b"}) == b'{"c":"\\u001b"}'
    assert go_time(datetime(2025, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == "2025-01-02T03:04:05.12Z"
    assert go_time(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2025-01-02T03:04:05Z"


@pytest.mark.parametrize(("value", "seconds"), [
    (30, 30), (1.5, 1.5), ("5m", 300), ("1h30m", 5400), ("300ms", 0.3), ("0", 0),
])
def test_parse_keep_alive(value: object, seconds: float) -> None:
    assert parse_keep_alive(value).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["3600", "abc", "5x", True, [1]])
def test_parse_keep_alive_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_keep_alive(value)


def test_negative_keep_alive_is_forever() -> None:
    assert parse_keep_alive(-1) > timedelta(days=365 * 200)
    assert parse_keep_alive("-1m") > timedelta(days=365 * 200)
