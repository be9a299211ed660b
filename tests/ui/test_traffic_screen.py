"""The traffic screen by keys: `6` opens it on a real gateway's live socket, a stream shows in flight and then in
the last finished with its log line's figures, 80x24; with no gateway it says how to start one; hidden it stops
following (no worker), shown again it catches up; no repaint while nothing flows."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import httpx

from console.config import GatewayConfig
from console.ui.app import EngineDeckApp
from console.ui.screens.traffic import TrafficScreen
from tests.fakes.ollama_server import FakeOllama, slow
from tests.ui.fixtures import StubRegistry, TestContext, make_config, screen_text, settle
from tests.unit.gateway.conftest import start_gateway


def _app(tmp_path: Path, log_dir: Path | None = None) -> EngineDeckApp:
    config = make_config(tmp_path)
    if log_dir is not None:
        config = replace(config, gateways=(GatewayConfig(name="front", listen="127.0.0.1:0", upstream="x",
                                                         log_dir=log_dir),))
    return EngineDeckApp(TestContext(config, StubRegistry([])))


def _chat(url: str) -> None:
    httpx.post(f"{url}/api/chat", timeout=30, json={"model": "llama3.2:1b",
                                                     "messages": [{"role": "user", "content": "hi"}]})


async def test_no_gateway_says_how_to_start_one(tmp_path: Path) -> None:
    async with _app(tmp_path).run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        await settle(pilot, until=lambda: isinstance(pilot.app.screen, TrafficScreen))
        await pilot.pause()
        text = screen_text(pilot.app)
        assert "no gateway running" in text and "enginedeck gateway" in text
        assert "Next gateway" in text and "Look again" in text  # the key bar


async def test_live_requests_by_keys(tmp_path: Path, ollama_server: FakeOllama) -> None:
    ollama_server.queue(slow(0.15))
    gw = start_gateway(ollama_server.url, tmp_path)
    try:
        async with _app(tmp_path, gw.log_dir).run_test(size=(80, 24)) as pilot:
            await pilot.press("6")
            screen = pilot.app.screen
            assert isinstance(screen, TrafficScreen)
            await settle(pilot, until=lambda: "0 in flight" in screen_text(pilot.app))
            client = threading.Thread(target=_chat, args=(gw.url,))
            client.start()
            await settle(pilot, until=lambda: "streaming" in screen_text(pilot.app))
            text = screen_text(pilot.app)
            assert "1 in flight" in text and "llama3.2:1b" in text and "anonymous" in text
            client.join(30)
            (rec,) = gw.wait_records(1)
            await settle(pilot, until=lambda: "0 in flight" in screen_text(pilot.app)
                         and " ok " in screen_text(pilot.app))
            text = screen_text(pilot.app)
            assert f"{rec['tokens_in']}/{rec['tokens_out']}" in text and "200" in text
            assert "requests in the last minute: anonymous 1" in text
            assert all(len(line) <= 80 for line in text.splitlines())
            # Nothing flows: no repaint.
            before = screen.repaints
            await pilot.pause(1.0)
            assert screen.repaints == before
            # Hidden: it stops following; shown again, it follows again (a fresh snapshot).
            await pilot.press("1")
            await pilot.pause()
            assert not [w for w in screen.workers if w.group == "traffic" and w.is_running]
            await pilot.press("6")
            await settle(pilot, until=lambda: any(w.group == "traffic" and w.is_running for w in screen.workers))
            await settle(pilot, until=lambda: " ok " in screen_text(pilot.app))
    finally:
        gw.stop()
