"""`enginedeck engines | models | ps`, run in-process against the contract servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_family import FakeLMStudio, FakeSGLang, FakeTGI, LMModel

DEAD = "http://127.0.0.1:9"  # discard port: nothing listens there


def test_engines_with_nothing_found_says_how_to_point_at_one(cli, capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path):
    assert cli("engines") == 0
    out = capsys.readouterr().out
    assert "No engine found" in out and "--engine http://HOST:PORT" in out and str(tmp_path / "config.toml") in out
    assert cli("engines", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"engines": []}


def test_engines_json_lists_every_source_with_stable_keys(cli, capsys: pytest.CaptureFixture[str],
                                                          sglang_server: FakeSGLang, tgi_server: FakeTGI):
    code = cli("engines", "--json", "--engine", tgi_server.url, engines={"sg": sglang_server.url, "gone": DEAD})
    assert code == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["engines"]}
    keys = {"name", "url", "kind", "source", "version", "health", "reason", "latency_ms", "error"}
    assert all(set(r) == keys for r in rows.values())
    assert (rows["sg"]["kind"], rows["sg"]["version"], rows["sg"]["health"]) == ("sglang", "0.5.4", "ok")
    assert rows["sg"]["latency_ms"] is not None
    tgi = next(r for r in rows.values() if r["source"] == "flag")
    assert (tgi["kind"], tgi["version"], tgi["health"]) == ("tgi", "3.3.6", "ok")
    assert rows["gone"]["health"] == "down" and "cannot connect" in rows["gone"]["error"]


def test_engines_table_shows_loading_reason(cli, capsys: pytest.CaptureFixture[str], sglang_server: FakeSGLang):
    sglang_server.starting = True
    assert cli("engines", "--wide", engines={"sg": sglang_server.url + "=sglang"}) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["NAME", "URL", "KIND", "VERSION", "HEALTH", "LATENCY", "ERROR"]
    assert "loading" in out and "/health answered 503" in out


def test_models_of_all_engines_with_context_and_errors(cli, capsys: pytest.CaptureFixture[str],
                                                        sglang_server: FakeSGLang, tgi_server: FakeTGI,
                                                        lmstudio_server: FakeLMStudio):
    code = cli("models", "--json", engines={"sg": sglang_server.url, "tgi": tgi_server.url,
                                            "lms": lmstudio_server.url, "gone": DEAD + "=vllm"})
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    ctx = {(m["engine"], m["name"]): m["context_length"] for m in doc["models"]}
    assert ctx[("sg", "Qwen/Qwen2.5-0.5B-Instruct")] == 32768
    assert ctx[("tgi", "HuggingFaceTB/SmolLM2-360M-Instruct")] == 4096
    assert ctx[("lms", "llama-3.2-1b-instruct")] == 131072
    assert [e["engine"] for e in doc["errors"]] == ["gone"]


def test_models_text_and_per_engine_error_on_stderr(cli, capsys: pytest.CaptureFixture[str],
                                                    lmstudio_server: FakeLMStudio):
    assert cli("models", engines={"lms": lmstudio_server.url, "gone": DEAD + "=tgi"}) == 0
    captured = capsys.readouterr()
    assert "qwen2.5-7b-instruct" in captured.out and "Q4_K_M" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("enginedeck: gone: ")


def test_models_of_a_named_unreachable_engine_exits_1(cli, capsys: pytest.CaptureFixture[str]):
    assert cli("models", "gone", engines={"gone": DEAD + "=sglang"}) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "cannot connect" in captured.err


def test_when_every_engine_fails_exit_is_1(cli, capsys: pytest.CaptureFixture[str]):
    assert cli("ps", "--json", engines={"a": DEAD + "=tgi", "b": DEAD + "=lmstudio"}) == 1
    assert [e["engine"] for e in json.loads(capsys.readouterr().out)["errors"]] == ["a", "b"]


def test_unknown_engine_name_lists_known_ones(cli, capsys: pytest.CaptureFixture[str], tgi_server: FakeTGI):
    assert cli("ps", "nope", engines={"tgi": tgi_server.url}) == 1
    assert "no engine called 'nope' (known: tgi)" in capsys.readouterr().err


def test_ps_lmstudio_instance_context(cli, capsys: pytest.CaptureFixture[str], lmstudio_server: FakeLMStudio):
    lmstudio_server._load("qwen2.5-7b-instruct", context=8192)
    assert cli("ps", "lms", "--json", engines={"lms": lmstudio_server.url}) == 0
    loaded = json.loads(capsys.readouterr().out)["loaded"]
    assert [(m["engine"], m["kind"], m["name"], m["context_length"], m["status"]) for m in loaded] == [
        ("lms", "lmstudio", "qwen2.5-7b-instruct", 8192, "loaded")]
    assert {"size", "size_vram", "expires_at", "details"} <= set(loaded[0])


def test_ps_ollama_shows_vram_and_expiry(cli, capsys: pytest.CaptureFixture[str], ollama_server: FakeOllama):
    ollama_server.load(ollama_server.resolve("gemma3:4b"), None, None)
    assert cli("ps", "--engine", ollama_server.url) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "gemma3:4b" in line)
    assert "CPU/GPU" in row and "m" in row.split()[-1]  # 40%/60% split; expires in ~5m


def test_hostile_model_names_reach_the_terminal_inert(cli, capsys: pytest.CaptureFixture[str],
                                                      lmstudio_server: FakeLMStudio):
    lmstudio_server.models["evil"] = LMModel("evil\x1b]52;c;ZXZpbA==\x07\x1b[2Jname")
    assert cli("models", engines={"lms": lmstudio_server.url}) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "evilname" in out
