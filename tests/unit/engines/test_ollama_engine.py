"""OllamaEngine against the contract server: reading, load/unload/swap, pull/delete, and every error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from console.config import EngineConfig, Timeouts
from console.engines.base import ChatMessage, ChatRequest, EventKind, Health, Op
from console.engines.ollama import OllamaEngine, keep_alive_value, same_model
from console.errors import (
    AuthError,
    BadResponseError,
    BusyError,
    ConfigError,
    EngineTimeoutError,
    NotFoundError,
    StreamError,
    UnreachableError,
)
from tests.fakes.ollama_server import BUSY, FakeModel, FakeOllama, Scenario, ollama_contract_server


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with ollama_contract_server() as server:
        yield server


def make_engine(url: str, **cfg: object) -> OllamaEngine:
    return OllamaEngine(EngineConfig(name="box-ollama", url=url, kind="ollama", **cfg))  # type: ignore[arg-type]


@pytest.fixture
async def engine(fake: FakeOllama) -> AsyncIterator[OllamaEngine]:
    async with make_engine(fake.url) as eng:
        yield eng  # type: ignore[misc]


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- capabilities and info ---------------------------------------------------------------------------------------

def test_capabilities_say_why(engine: OllamaEngine) -> None:
    caps = engine.capabilities
    for op in (Op.LIST, Op.LOADED, Op.LOAD, Op.UNLOAD, Op.SWAP, Op.PULL, Op.DELETE, Op.SHOW, Op.CHAT):
        assert caps.supports(op), op
    assert "/metrics" in (caps.reason(Op.METRICS) or "")
    assert "sleep" in (caps.reason(Op.SLEEP) or "")
    assert "Modelfile" in (caps.reason(Op.LORA_LOAD) or "")
    assert engine.kind == "ollama"


async def test_info_ok(engine: OllamaEngine, fake: FakeOllama) -> None:
    info = await engine.info()
    assert (info.kind, info.version, info.health) == ("ollama", "0.12.6", Health.OK)
    assert info.base_url == fake.url and info.latency_ms is not None and info.latency_ms >= 0


async def test_info_down_when_unreachable() -> None:
    async with make_engine(closed_port_url()) as eng:
        info = await eng.info()
    assert info.health is Health.DOWN and "cannot connect" in info.reason and info.version is None


async def test_info_down_with_auth_reason() -> None:
    with ollama_contract_server(require_token="s3cret") as fake:
        async with make_engine(fake.url) as eng:
            info = await eng.info()
    assert info.health is Health.DOWN and "401" in info.reason and "api_key" in info.reason


# --- catalogue ---------------------------------------------------------------------------------------------------

async def test_list_models(engine: OllamaEngine, fake: FakeOllama) -> None:
    models = {m.name: m for m in await engine.list_models()}
    assert set(models) == set(fake.models)
    qwen = models["qwen3:4b"]
    assert qwen.size == 2_497_293_931 and qwen.digest == fake.models["qwen3:4b"].digest
    assert (qwen.family, qwen.quantization, qwen.parameter_size, qwen.context_length) == (
        "qwen3", "Q4_K_M", "4.0B", 40960)
    assert qwen.modified_at is not None and qwen.modified_at.tzinfo is not None
    assert "thinking" in qwen.details["capabilities"]


async def test_list_models_older_server_without_context_length() -> None:
    with ollama_contract_server([FakeModel("old:latest", context_length=None)]) as fake:
        async with make_engine(fake.url) as eng:
            (only,) = await eng.list_models()
    assert only.name == "old:latest" and only.context_length is None and "capabilities" not in only.details


async def test_show(engine: OllamaEngine, fake: FakeOllama) -> None:
    detail = await engine.show("llama3.2:1b")
    assert detail.digest == fake.models["llama3.2:1b"].digest
    assert detail.context_length == 131072 and detail.family == "llama" and detail.quantization == "Q8_0"
    assert "temperature" in (detail.parameters or "") and detail.template and detail.license
    assert detail.model_info["general.architecture"] == "llama"
    assert "tokenizer.ggml.tokens" not in detail.model_info  # null without verbose: dropped
    assert detail.capabilities == ("completion", "tools")


async def test_show_unknown_model_is_not_found(engine: OllamaEngine) -> None:
    with pytest.raises(NotFoundError) as err:
        await engine.show("nope")
    assert err.value.status == 404 and "model 'nope' not found" in str(err.value)


# --- load / unload / swap ----------------------------------------------------------------------------------------

async def test_load_then_loaded_models(engine: OllamaEngine) -> None:
    await engine.load("gemma3:4b", keep_alive="10m")
    (m,) = await engine.loaded_models()
    assert m.name == "gemma3:4b" and m.context_length == 4096
    assert m.size and m.size_vram and m.size_vram == int(m.size * 0.6)
    assert m.expires_at is not None and m.expires_at.tzinfo is not None
    left = m.expires_at - datetime.now(UTC)
    assert timedelta(minutes=9) < left <= timedelta(minutes=10)


async def test_load_accepts_untagged_name_and_numeric_string_keep_alive(engine: OllamaEngine,
                                                                         fake: FakeOllama) -> None:
    fake.add_model(FakeModel("phi:latest"))
    await engine.load("phi", keep_alive="3600")  # the server itself would reject the string "3600"
    assert fake.requests_to("/api/generate")[-1].body["keep_alive"] == 3600
    assert fake.loaded_names() == ["phi:latest"]


async def test_load_failure_is_typed(engine: OllamaEngine) -> None:
    with pytest.raises(BadResponseError) as err:
        await engine.load("broken:latest")
    assert err.value.status == 500 and "unable to allocate CUDA0 buffer" in str(err.value)


async def test_load_unknown_model(engine: OllamaEngine) -> None:
    with pytest.raises(NotFoundError):
        await engine.load("nope:1b")


async def test_load_with_keep_alive_zero_is_refused_clearly(engine: OllamaEngine) -> None:
    with pytest.raises(BadResponseError, match="done_reason='unload'"):
        await engine.load("llama3.2:1b", keep_alive=0)


async def test_unload_waits_until_ps_drops_it() -> None:
    with ollama_contract_server(unload_delay_s=0.4) as fake:
        async with make_engine(fake.url) as eng:
            await eng.load("llama3.2:1b")
            await eng.unload("llama3.2:1b")
            assert await eng.loaded_models() == []
            assert len(fake.requests_to("/api/ps")) >= 3  # load check, then polls while it was stopping


async def test_unload_times_out_with_a_clear_error() -> None:
    with ollama_contract_server(unload_delay_s=30) as fake:
        async with make_engine(fake.url) as eng:
            eng.unload_wait_s = 0.3
            await eng.load("llama3.2:1b")
            with pytest.raises(EngineTimeoutError, match=r"still lists it after 0\.3 s"):
                await eng.unload("llama3.2:1b")


async def test_unload_unknown_model(engine: OllamaEngine) -> None:
    with pytest.raises(NotFoundError):
        await engine.unload("nope")


async def test_swap(engine: OllamaEngine, fake: FakeOllama) -> None:
    await engine.load("llama3.2:1b")
    result = await engine.swap("llama3.2:1b", "gemma3:4b")
    assert result.ok and not result.rolled_back and result.error is None
    assert result.unload_s is not None and result.load_s is not None and result.first_token_s is not None
    assert fake.loaded_names() == ["gemma3:4b"]
    assert fake.requests_to("/api/chat")[-1].body["options"]["num_predict"] == 1


async def test_swap_to_a_model_that_fails_restores_the_old_one(engine: OllamaEngine, fake: FakeOllama) -> None:
    await engine.load("llama3.2:1b")
    result = await engine.swap("llama3.2:1b", "broken:latest")
    assert not result.ok and result.rolled_back
    assert result.error is not None and "unable to allocate CUDA0 buffer" in result.error
    assert fake.loaded_names() == ["llama3.2:1b"]


# --- pull / delete -----------------------------------------------------------------------------------------------

async def test_pull_reports_progress_then_lists_model(engine: OllamaEngine) -> None:
    events = [p async for p in engine.pull("tinyllama")]
    assert events[0].status == "pulling manifest" and events[-1].status == "success"
    layers = [p for p in events if p.digest]
    assert layers and layers[0].completed is None and layers[0].total
    assert any(p.completed == p.total for p in layers)
    assert all(p.t_ns > 0 for p in events)
    assert "tinyllama:latest" in {m.name for m in await engine.list_models()}


async def test_pull_unknown_model_is_a_stream_error(engine: OllamaEngine) -> None:
    seen = []
    with pytest.raises(StreamError, match="file does not exist"):
        async for p in engine.pull("no-such-model"):
            seen.append(p.status)
    assert seen == ["pulling manifest"]


async def test_delete(engine: OllamaEngine) -> None:
    await engine.delete("gemma3:4b")
    assert "gemma3:4b" not in {m.name for m in await engine.list_models()}
    with pytest.raises(NotFoundError, match="model 'gemma3:4b' not found"):
        await engine.delete("gemma3:4b")


# --- transport, auth and shape errors ----------------------------------------------------------------------------

async def test_every_call_is_unreachable_on_a_closed_port() -> None:
    async with make_engine(closed_port_url()) as eng:
        with pytest.raises(UnreachableError):
            await eng.list_models()
        with pytest.raises(UnreachableError):
            await eng.loaded_models()
        with pytest.raises(UnreachableError):
            await eng.show("x")
        with pytest.raises(UnreachableError):
            await eng.load("x")
        with pytest.raises(UnreachableError):
            await eng.delete("x")
        with pytest.raises(UnreachableError):
            _ = [p async for p in eng.pull("x")]


async def test_auth_error_and_configured_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with ollama_contract_server(require_token="s3cret") as fake:
        async with make_engine(fake.url) as eng:
            with pytest.raises(AuthError) as err:
                await eng.loaded_models()
            assert err.value.status == 401 and err.value.hint and "api_key" in err.value.hint
            with pytest.raises(AuthError):
                await eng.list_models()
        monkeypatch.setenv("BOX_OLLAMA_KEY", "s3cret")
        async with make_engine(fake.url, api_key_env="BOX_OLLAMA_KEY") as eng:
            assert (await eng.info()).health is Health.OK
            assert await eng.loaded_models() == []
        assert fake.requests[-1].headers["authorization"] == "Bearer s3cret"


async def test_ollama_api_key_from_environment_is_not_sent(monkeypatch: pytest.MonkeyPatch,
                                                           fake: FakeOllama) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "cloud-key-must-not-leak")
    async with make_engine(fake.url) as eng:
        await eng.loaded_models()
        await eng.list_models()
        await eng.show("llama3.2:1b")  # the official client, which adds that key to its own requests
        _ = [p async for p in eng.pull("tinyllama")]
        await eng.delete("tinyllama")
    assert {"/api/show", "/api/pull", "/api/delete"} <= {r.path for r in fake.requests}
    assert all("authorization" not in r.headers for r in fake.requests)


async def test_wrong_shape_from_ps_is_bad_response(engine: OllamaEngine, fake: FakeOllama,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fake, "ps", lambda: [{"name": "x", "size": "huge"}])
    with pytest.raises(BadResponseError, match="not Ollama's API"):
        await engine.loaded_models()


async def test_not_ollama_at_all(engine: OllamaEngine, fake: FakeOllama) -> None:
    fake.version = None  # type: ignore[assignment]
    info = await engine.info()
    assert info.health is Health.DOWN and "is this an Ollama server" in info.reason


async def test_busy_maps_to_busy_error(engine: OllamaEngine, fake: FakeOllama) -> None:
    fake.queue(BUSY)
    with pytest.raises(BusyError) as err:
        _ = [e async for e in engine.chat(ChatRequest("llama3.2:1b", (ChatMessage("user", "hi"),)))]
    assert err.value.status == 503 and "maximum pending requests exceeded" in str(err.value)


async def test_a_silent_pull_times_out_on_the_load_deadline_and_a_slow_load_is_not_cut_short() -> None:
    with ollama_contract_server([FakeModel("big:latest", load_delay_s=0.6)], pull_step_delay_s=1.2) as fake:
        timeouts = Timeouts.within(0.2, connect_s=1, load_s=0.9)
        cfg = EngineConfig(name="t", url=fake.url, kind="ollama", timeouts=timeouts)
        async with OllamaEngine(cfg) as eng:
            with pytest.raises(EngineTimeoutError, match=r"POST /api/pull: no new line within 0.9 s \(load_timeout\)"):
                _ = [p async for p in eng.pull("tinyllama")]
            await eng.load("big:latest")  # a load outlasts request_s: it gets load_s
            assert fake.loaded_names() == ["big:latest"]


async def test_the_official_clients_calls_go_out_through_the_engines_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """show, pull and delete go through the official client, which is handed the engine's pool through httpx's public
    `transport` keyword. An ollama release that stops passing that keyword on to httpx sends them on a pool of its
    own: with its own User-Agent and a new connection (and $OLLAMA_API_KEY, the next test); each fails here."""
    monkeypatch.setenv("BOX_OLLAMA_KEY", "s3cret")
    with ollama_contract_server(require_token="s3cret") as fake:
        async with make_engine(fake.url, api_key_env="BOX_OLLAMA_KEY") as eng:
            assert eng._http.trust_env is False
            await eng.list_models()
            assert (await eng.show("llama3.2:1b")).family == "llama"
            assert [p async for p in eng.pull("tinyllama")][-1].status == "success"
            await eng.delete("tinyllama")
            await eng.list_models()
    assert [r.path for r in fake.requests] == ["/api/tags", "/api/show", "/api/tags", "/api/pull", "/api/delete",
                                               "/api/tags"]
    assert all(r.headers["user-agent"] == "enginedeck" and r.headers["authorization"] == "Bearer s3cret"
               for r in fake.requests)
    assert len({r.peer for r in fake.requests}) == 1  # one kept connection, the pool's, for raw and official calls


async def test_max_connections_bounds_concurrent_streams() -> None:
    """Counted where the cap is: streams open at once in the client. (The fake's own count trails by a moment: its
    handler finishes its bookkeeping after the client has read the last byte and may have opened the next one.)"""
    with ollama_contract_server() as fake:
        fake.queue(Scenario(token_delay_s=0.02), times=4)
        async with OllamaEngine(EngineConfig(name="t", url=fake.url, kind="ollama"), max_connections=2) as eng:
            open_now = most = 0
            real_open = eng._streams.open

            @contextlib.asynccontextmanager
            async def counted_open(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                nonlocal open_now, most
                async with real_open(*args, **kwargs) as response:
                    open_now += 1
                    most = max(most, open_now)
                    try:
                        yield response
                    finally:
                        open_now -= 1

            eng._streams.open = counted_open  # type: ignore[method-assign]

            async def one() -> EventKind:
                return [e async for e in eng.chat(ChatRequest("llama3.2:1b", (ChatMessage("user", "hi"),)))][-1].kind

            assert await asyncio.gather(*(one() for _ in range(4))) == [EventKind.DONE] * 4
        assert most == 2 and fake.max_active >= 2


def test_unusable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="not a usable CA bundle"):
        make_engine("https://ollama.internal:11434", ca_file=bad)


# --- pure helpers ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b", "same"), [
    ("llama3.2", "llama3.2:latest", True), ("Llama3.2:1B", "llama3.2:1b", True),
    ("library/x", "library/x:latest", True), ("llama3.2:1b", "llama3.2:3b", False),
    ("host:5000/ns/m", "host:5000/ns/m:latest", True),
])
def test_same_model(a: str, b: str, same: bool) -> None:
    assert same_model(a, b) is same


@pytest.mark.parametrize(("given", "sent"), [
    ("3600", 3600), ("-1", -1), ("1.5", 1.5), ("5m", "5m"), (0, 0), (None, None), (-1, -1),
])
def test_keep_alive_value(given: object, sent: object) -> None:
    assert keep_alive_value(given) == sent  # type: ignore[arg-type]
