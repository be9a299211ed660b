"""The traffic screen shows the engine's own queue beside the gateway's in-flight list: TGI's running/waiting
from its /metrics; for Ollama, which has none, the reason. The engine is read through the gateway's upstream
config, never added to the app's registry."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from console.config import EngineConfig, GatewayConfig
from console.gateway.live import SOCKET, Live
from console.ui.app import EngineDeckApp
from console.ui.screens.traffic import TrafficScreen
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_family import FakeTGI
from tests.ui.fixtures import StubRegistry, TestContext, make_config, screen_text, settle


async def _queue_line(tmp_path: Path, engine: EngineConfig) -> tuple[str, StubRegistry]:
    log_dir = tmp_path / "gw"
    log_dir.mkdir()
    config = replace(make_config(tmp_path, engines=[engine]), gateways=(
        GatewayConfig(name="front", listen="127.0.0.1:0", upstream=engine.name, log_dir=log_dir),))
    server = await Live("front", engine.url).serve(log_dir / SOCKET)
    registry = StubRegistry([])
    try:
        async with EngineDeckApp(TestContext(config, registry)).run_test(size=(100, 30)) as pilot:
            await pilot.press("6")
            assert isinstance(pilot.app.screen, TrafficScreen)
            await settle(pilot, until=lambda: f"engine {engine.name} (" in screen_text(pilot.app))
            (line,) = [x for x in screen_text(pilot.app).splitlines() if f"engine {engine.name} (" in x]
            return line, registry
    finally:
        server.close()
        await server.wait_closed()


async def test_tgi_queue_beside_the_in_flight_list(tmp_path: Path, tgi_server: FakeTGI) -> None:
    line, registry = await _queue_line(tmp_path, EngineConfig(name="tgi-a", url=tgi_server.url, kind="tgi"))
    assert "engine tgi-a (tgi): running 4 · waiting 3" in line  # tgi_batch_current_size, tgi_queue_size
    assert registry.entries == []  # read on the side, not added to the app's engines


async def test_ollama_says_it_has_no_queue_of_its_own(tmp_path: Path, ollama_server: FakeOllama) -> None:
    line, _ = await _queue_line(tmp_path, EngineConfig(name="local", url=ollama_server.url))
    assert "engine local (ollama): no queue of its own to show" in line and "no /metrics" in line
