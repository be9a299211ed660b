"""An engine that attacks at the HTTP level, on the dashboard: its row says which limit it passed, the other engine
keeps being shown, and the app keeps answering keys."""

from __future__ import annotations

import pytest

from console.config import MIB, EngineConfig, Timeouts, UIConfig, WireLimits
from console.engines.registry import build_engine
from tests.fakes.wire_attacks import attack_server
from tests.ui.fixtures import EngineDeckApp, StubEngine, StubRegistry, TestContext, make_config, screen_text, settle
from tests.ui.test_dashboard import rows, text_of

LIMITS = WireLimits(props_bytes=MIB, models_bytes=MIB, ps_bytes=MIB)


@pytest.mark.parametrize("attack, words", [
    ("endless_json", "GET /: the answer passed 1 MiB (limits.props)"),
    ("gzip_bomb", "GET /: the answer passed 1 MiB (limits.props)"),
    ("huge_line", "GET /: the answer passed 1 MiB (limits.props)"),
])
async def test_the_row_names_the_limit_and_the_app_keeps_running(tmp_path, attack, words):
    with attack_server(attack) as url:
        cfg = EngineConfig(name="hostile", url=url, kind="ollama", timeouts=Timeouts.within(2.0), limits=LIMITS)
        hostile = build_engine(cfg, "ollama")
        alive = StubEngine("alive", "ollama")
        ui = UIConfig(theme="dark", poll_interval_s=0.5, telemetry_interval_s=3600)
        app = EngineDeckApp(TestContext(make_config(tmp_path, ui=ui), StubRegistry([alive, hostile])),
                            gpu_monitor=None)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, until=lambda: len(rows(app, "engines")) == 2, timeout_s=15)
            table = {row[0]: row for row in rows(app, "engines")}
            assert table["alive"][:4] == ["alive", "ok", "ollama", "0.12.6"]
            assert table["hostile"][1] == "down"
            await settle(pilot, until=lambda: words in text_of(app, "engine-problems"), timeout_s=15)
            await pilot.press("question_mark")  # the app still answers keys: help opens and closes
            await settle(pilot, until=lambda: app.screen.__class__.__name__ == "HelpScreen")
            await pilot.press("escape")
            await settle(pilot, until=lambda: app.screen.__class__.__name__ == "DashboardScreen")
            assert "hostile" in screen_text(app)
