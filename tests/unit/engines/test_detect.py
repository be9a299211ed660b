"""Detection: the engine kind from cheap GETs (reference/engines-api.md §0), and the fast loopback scan."""

from __future__ import annotations

import socket
import time

import pytest

from console.config import EngineConfig
from console.engines.detect import (
    DEFAULT_PORTS,
    detect,
    scan_loopback,
    short_name,
    url_key,
)
from console.errors import AuthError, BadResponseError, ConfigError, UnreachableError
from tests.fakes.hostile_server import HostileServer, Reply
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_family import (
    FakeLMStudio,
    FakeSGLang,
    FakeTGI,
)


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_ollama_by_root_text_with_version(ollama_server: FakeOllama):
    d = await detect(ollama_server.url)
    assert (d.kind, d.version) == ("ollama", "0.12.6")
    assert "Ollama is running" in d.evidence


async def test_sglang_by_get_model_info(sglang_server: FakeSGLang):
    d = await detect(sglang_server.url)
    assert d.kind == "sglang" and "model_path" in d.evidence


async def test_sglang_with_key_by_401_while_health_is_open(sglang_server: FakeSGLang):
    sglang_server.api_key = "k"
    d = await detect(sglang_server.url)
    assert d.kind == "sglang" and "/health" in d.evidence


async def test_tgi_by_info_router(tgi_server: FakeTGI):
    d = await detect(tgi_server.url)
    assert (d.kind, d.version) == ("tgi", "3.3.6")


async def test_lmstudio_by_rest_v1_and_by_v0(lmstudio_server: FakeLMStudio):
    assert (await detect(lmstudio_server.url)).evidence == "GET /api/v1/models lists models with loaded_instances"
    lmstudio_server.rest_v1 = False
    d = await detect(lmstudio_server.url)
    assert d.kind == "lmstudio" and "/api/v0/models" in d.evidence


async def test_lmstudio_with_key_uses_configured_key(lmstudio_server: FakeLMStudio, monkeypatch: pytest.MonkeyPatch):
    lmstudio_server.api_key = "tok"
    with pytest.raises(AuthError):
        await detect(lmstudio_server.url)
    monkeypatch.setenv("LMS_KEY", "tok")
    cfg = EngineConfig(name="lms", url=lmstudio_server.url, api_key_env="LMS_KEY")
    assert (await detect(lmstudio_server.url, cfg=cfg)).kind == "lmstudio"


@pytest.mark.parametrize("status", [200, 401, 503])
async def test_llamacpp_by_server_header_on_any_status(hostile_server: HostileServer, status: int):
    hostile_server.route("GET", "/", Reply(status=status, body=b"{}", headers={"Server": "llama.cpp"}))
    assert (await detect(hostile_server.url)).kind == "llamacpp"


async def test_vllm_by_version_only(hostile_server: HostileServer):
    hostile_server.route("GET", "/version", Reply(body=b'{"version": "0.32.0"}'))
    d = await detect(hostile_server.url)
    assert (d.kind, d.version) == ("vllm", "0.32.0")


async def test_version_with_more_keys_is_not_vllm(hostile_server: HostileServer):
    hostile_server.route("GET", "/version", Reply(body=b'{"version": "1", "build": "x"}'))
    hostile_server.route("GET", "/v1/models", Reply(body=b'{"object":"list","data":[{"id":"m","owned_by":"me"}]}'))
    assert (await detect(hostile_server.url)).kind == "openai"


@pytest.mark.parametrize(("owned_by", "kind"), [("vllm", "vllm"), ("sglang", "sglang"), ("llamacpp", "llamacpp"),
                                                ("organization_owner", "lmstudio")])
async def test_fallback_on_owned_by(hostile_server: HostileServer, owned_by: str, kind: str):
    body = f'{{"object":"list","data":[{{"id":"m","object":"model","owned_by":"{owned_by}"}}]}}'
    hostile_server.route("GET", "/v1/models", Reply(body=body.encode()))
    assert (await detect(hostile_server.url)).kind == kind


async def test_unknown_server_is_a_clear_error(hostile_server: HostileServer):
    hostile_server.route("GET", "/", Reply(body=b"<html>grafana</html>", content_type="text/html"))
    with pytest.raises(BadResponseError, match="nothing I know answers at"):
        await detect(hostile_server.url)


async def test_garbage_json_everywhere_is_not_a_crash(hostile_server: HostileServer):
    for path in ("/info", "/version", "/get_model_info", "/api/v1/models", "/api/v0/models", "/v1/models"):
        hostile_server.route("GET", path, Reply(body=b'{"data": [{"id": "x"'))
    with pytest.raises(BadResponseError):
        await detect(hostile_server.url)


async def test_nothing_listening_is_unreachable():
    with pytest.raises(UnreachableError):
        await detect(f"http://127.0.0.1:{free_port()}")


async def test_scan_finds_listeners_and_is_fast_when_ports_are_closed(sglang_server: FakeSGLang,
                                                                      tgi_server: FakeTGI):
    closed = [free_port() for _ in range(4)]
    ports = [int(sglang_server.url.rsplit(":", 1)[1]), *closed, int(tgi_server.url.rsplit(":", 1)[1])]
    found = await scan_loopback(ports)
    assert [d.kind for d in found] == ["sglang", "tgi"]
    t0 = time.perf_counter()
    assert await scan_loopback(closed) == []
    assert time.perf_counter() - t0 < 3.0  # generous; bench figure is in the report (~ms)


async def test_scan_skips_known_urls(sglang_server: FakeSGLang):
    port = int(sglang_server.url.rsplit(":", 1)[1])
    assert await scan_loopback([port], skip_urls=frozenset({url_key(sglang_server.url)})) == []


def test_names_and_url_keys():
    assert DEFAULT_PORTS == (11434, 8000, 8080, 30000, 1234, 3000)
    assert short_name("ollama", "http://127.0.0.1:11434") == "ollama@127.0.0.1:11434"
    assert short_name("vllm", "https://gpu1.lan/v") == "vllm@gpu1.lan:443/v"
    assert url_key("http://LOCALHOST:8000/") == url_key("http://127.0.0.1:8000")
    assert url_key("http://h") == "http://h:80"


def test_require_url_refuses_non_urls():
    from console.engines.detect import require_url

    assert require_url("http://h:1/") == "http://h:1"
    for bad in ("ftp://h", "http://", "http://h:port"):
        with pytest.raises(ConfigError):
            require_url(bad)
