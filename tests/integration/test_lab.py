"""The engine lab's fixtures start real engines that answer (scripts/lab.py builds them)."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from tests.lab_fixtures import LabRouter, LabServer, LabVllmServer, unload_router_models


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200
        return json.load(resp)


def router_states(router: LabRouter) -> dict[str, str]:
    return {m["id"]: m["status"]["value"] for m in get_json(router.url + "/models")["data"]}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.llama
def test_llama_server_is_healthy_and_serves_smollm2(llama_server: LabServer):
    assert get_json(llama_server.url + "/health") == {"status": "ok"}
    assert [m["id"] for m in get_json(llama_server.url + "/v1/models")["data"]] == ["smollm2"]
    assert get_json(llama_server.url + "/props")["total_slots"] == 4
    assert alive(llama_server.pid)
    assert llama_server.log_path.exists()


@pytest.mark.llama
def test_llama_server_np1_has_one_slot(llama_server_np1: LabServer):
    assert get_json(llama_server_np1.url + "/health") == {"status": "ok"}
    assert get_json(llama_server_np1.url + "/props")["total_slots"] == 1


@pytest.mark.llama
def test_llama_server_chats(llama_server: LabServer):
    body = {"model": llama_server.model, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4}
    req = urllib.request.Request(llama_server.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        answer = json.load(resp)
    assert answer["usage"]["completion_tokens"] >= 1
    assert answer["timings"]["predicted_n"] >= 1


@pytest.mark.llama
def test_router_lists_both_models_unloaded(router: LabRouter):
    assert router_states(router) == {"smol-a": "unloaded", "smol-b": "unloaded"}
    assert router.models == ("smol-a", "smol-b")


@pytest.mark.llama
def test_router_clean_up_unloads_a_loaded_model(router: LabRouter):
    req = urllib.request.Request(router.url + "/models/load", data=b'{"model":"smol-a"}',
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert json.load(resp) == {"success": True}
    assert router_states(router)["smol-a"] in ("loading", "loaded")
    unload_router_models(router)
    assert router_states(router) == {"smol-a": "unloaded", "smol-b": "unloaded"}


@pytest.mark.vllm
def test_vllm_server_answers(vllm_server: LabVllmServer):
    assert get_json(vllm_server.url + "/version") == {"version": "0.32.0"}
    models = get_json(vllm_server.url + "/v1/models")["data"]
    assert [m["id"] for m in models] == ["smollm2"]
    assert models[0]["max_model_len"] == 2048
    assert (vllm_server.lora_path / "adapter_config.json").exists()
    assert get_json(vllm_server.url + "/is_sleeping") == {"is_sleeping": False}


@pytest.mark.vllm
def test_vllm_server_loads_the_lab_lora_adapter_at_runtime(vllm_server: LabVllmServer):
    def post(path: str, body: dict[str, str]) -> str:
        req = urllib.request.Request(vllm_server.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            assert resp.status == 200
            return resp.read().decode()

    assert "added successfully" in post("/v1/load_lora_adapter",
                                        {"lora_name": "lab-lora", "lora_path": str(vllm_server.lora_path)})
    try:
        listed = {m["id"]: m.get("parent") for m in get_json(vllm_server.url + "/v1/models")["data"]}
        assert listed == {"smollm2": None, "lab-lora": "smollm2"}
    finally:
        assert "removed successfully" in post("/v1/unload_lora_adapter", {"lora_name": "lab-lora"})
