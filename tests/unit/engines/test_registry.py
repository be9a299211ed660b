"""The registry: configured engines, --engine URLs and discovery, deduplicated, resolvable by name or URL."""

from __future__ import annotations

import socket
import time

import pytest

from console.config import Config, EngineConfig, Timeouts
from console.engines.lmstudio import LMStudioEngine
from console.engines.registry import Registry, build_engine
from console.engines.sglang import SGLangEngine
from console.engines.tgi import TGIEngine
from console.errors import ConfigError, UnreachableError
from tests.fakes.hostile_server import HostileServer
from tests.fakes.openai_family import (
    FakeLMStudio,
    FakeSGLang,
    FakeTGI,
)

FAST = Timeouts.within(2.0, connect_s=0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def config(*engines: EngineConfig, discover: bool = False) -> Config:
    return Config(engines=engines, discover=discover, timeouts=FAST)


def test_build_engine_by_kind_and_unknown_kind():
    cfg = EngineConfig(name="x", url="http://127.0.0.1:1")
    assert isinstance(build_engine(cfg, "tgi"), TGIEngine)
    with pytest.raises(ConfigError, match="unknown kind 'nope'"):
        build_engine(cfg, "nope")


async def test_configured_kinds_build_without_network_and_auto_is_detected(
        sglang_server: FakeSGLang, tgi_server: FakeTGI):
    dead = f"http://127.0.0.1:{free_port()}"
    reg = Registry(config(
        EngineConfig("fixed", dead, kind="tgi", timeouts=FAST),
        EngineConfig("sg", sglang_server.url, timeouts=FAST),
        EngineConfig("gone", f"http://127.0.0.1:{free_port()}", timeouts=FAST),
    ), extra_urls=[tgi_server.url])
    try:
        entries = {e.name: e for e in await reg.refresh()}
        assert list(entries) == ["fixed", "sg", "gone", f"tgi@127.0.0.1:{port_of(tgi_server.url)}"]
        assert isinstance(entries["fixed"].engine, TGIEngine) and entries["fixed"].evidence is None
        assert isinstance(entries["sg"].engine, SGLangEngine) and entries["sg"].source == "config"
        gone = entries["gone"]
        assert (gone.engine, gone.kind, gone.source) == (None, None, "config")
        assert gone.error and "cannot connect" in gone.error
        flag = entries[f"tgi@127.0.0.1:{port_of(tgi_server.url)}"]
        assert (flag.kind, flag.source, flag.version) == ("tgi", "flag", "3.3.6")
        with pytest.raises(UnreachableError):
            await reg.resolve("gone")
    finally:
        await reg.aclose()


async def test_discovery_dedupes_against_config_and_flags(sglang_server: FakeSGLang, lmstudio_server: FakeLMStudio):
    sg_port, lms_port = port_of(sglang_server.url), port_of(lmstudio_server.url)
    localhost_url = f"http://localhost:{sg_port}"
    reg = Registry(config(EngineConfig("mine", localhost_url, kind="sglang", timeouts=FAST), discover=True),
                   extra_urls=[sglang_server.url], scan_ports=[sg_port, lms_port, free_port()])
    try:
        entries = await reg.refresh()
        assert [(e.name, e.source) for e in entries] == [
            ("mine", "config"), (f"lmstudio@127.0.0.1:{lms_port}", "discovered")]
        assert isinstance(entries[1].engine, LMStudioEngine)
    finally:
        await reg.aclose()


async def test_resolve_by_name_url_and_unique_kind(sglang_server: FakeSGLang, tgi_server: FakeTGI):
    reg = Registry(config(EngineConfig("sg", sglang_server.url, timeouts=FAST)), extra_urls=[tgi_server.url])
    try:
        await reg.refresh()
        sg = await reg.resolve("sg")
        assert await reg.resolve(sglang_server.url + "/") is sg
        assert await reg.resolve("sglang") is sg
        tgi = await reg.resolve(f"tgi@127.0.0.1:{port_of(tgi_server.url)}")
        assert isinstance(tgi, TGIEngine)
        with pytest.raises(ConfigError, match=r"no engine called 'nope' \(known: sg, tgi@"):
            await reg.resolve("nope")
    finally:
        await reg.aclose()


async def test_resolve_before_refresh_does_not_scan(sglang_server: FakeSGLang, tgi_server: FakeTGI):
    reg = Registry(config(EngineConfig("sg", sglang_server.url, timeouts=FAST), discover=True),
                   scan_ports=[port_of(tgi_server.url)])
    try:
        assert isinstance(await reg.resolve("sg"), SGLangEngine)
        assert isinstance(await reg.resolve(tgi_server.url), TGIEngine)
        assert tgi_server.requests_to("/info") and len(tgi_server.requests_to("/info")) == 1
        assert [e.source for e in reg.entries] == ["config", "flag"]
    finally:
        await reg.aclose()


async def test_ambiguous_kind_names_the_candidates(sglang_server: FakeSGLang):
    reg = Registry(config(EngineConfig("a", sglang_server.url, kind="sglang", timeouts=FAST),
                          EngineConfig("b", sglang_server.url, kind="sglang", timeouts=FAST)))
    try:
        await reg.refresh()
        with pytest.raises(ConfigError, match="2 engines are of kind 'sglang': a, b"):
            await reg.resolve("sglang")
    finally:
        await reg.aclose()


async def test_a_stalled_host_costs_only_its_own_timeout(hostile_server: HostileServer, sglang_server: FakeSGLang):
    hostile_server.misbehave("stall")  # /v1/models never answers
    reg = Registry(config(EngineConfig("stuck", hostile_server.url, timeouts=FAST),
                          EngineConfig("sg", sglang_server.url, timeouts=FAST)))
    try:
        t0 = time.perf_counter()
        entries = {e.name: e for e in await reg.refresh()}
        assert time.perf_counter() - t0 < 10  # the probe timeout is 1.5 s; the stall is 30 s
        assert entries["sg"].engine is not None
        assert entries["stuck"].engine is None and entries["stuck"].error
    finally:
        await reg.aclose()


async def test_refresh_reuses_engines_and_aclose_closes_them(sglang_server: FakeSGLang):
    reg = Registry(config(EngineConfig("sg", sglang_server.url, timeouts=FAST)))
    first = (await reg.refresh())[0].engine
    second = (await reg.refresh())[0].engine
    assert first is second and first is not None
    await reg.aclose()
    assert reg.entries == []
    assert first._client.is_closed  # type: ignore[attr-defined]


async def test_an_engine_resolved_by_url_survives_a_refresh(tgi_server: FakeTGI):
    reg = Registry(config())
    try:
        engine = await reg.resolve(tgi_server.url)
        entries = await reg.refresh()
        assert [e.engine for e in entries] == [engine]
        assert not engine._client.is_closed  # type: ignore[attr-defined]
    finally:
        await reg.aclose()


async def test_a_configured_engines_url_resolves_to_it_with_its_key(sglang_server: FakeSGLang,
                                                                    monkeypatch: pytest.MonkeyPatch):
    sglang_server.api_key = "k"
    monkeypatch.setenv("SG_KEY", "k")
    reg = Registry(config(EngineConfig("sg", sglang_server.url, api_key_env="SG_KEY", timeouts=FAST)))
    try:
        engine = await reg.resolve(sglang_server.url.replace("127.0.0.1", "localhost"))
        assert engine.name == "sg"
        assert [m.name for m in await engine.list_models()] == ["Qwen/Qwen2.5-0.5B-Instruct"]
    finally:
        await reg.aclose()
