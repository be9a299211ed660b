"""The dashboard in front of a proxy that echoes the Authorization header in its error bodies: the engine's
problem line says what the proxy answered, with the configured key redacted."""

from __future__ import annotations

import pytest

from console.config import EngineConfig
from tests.fakes.ollama_server import ollama_contract_server
from tests.ui.fixtures import EngineDeckApp, TestContext, make_config, screen_text, settle

KEY = "sk-proxy-4Hq&9/Zx+Lm2Rt7WvB"


async def test_dashboard_error_text_shows_no_key(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ED_PROXY_KEY", KEY)
    with ollama_contract_server(echo_auth=401) as fake:
        engine = EngineConfig(name="p", url=fake.url, kind="ollama", api_key_env="ED_PROXY_KEY")
        app = EngineDeckApp(TestContext(make_config(tmp_path, engines=[engine])), gpu_monitor=None)
        async with app.run_test(size=(200, 40)) as pilot:
            problems = app.screen.query_one("#engine-problems")
            await settle(pilot, until=lambda: "request headers" in str(problems.render()))
            shown = str(problems.render())
            assert "Authorization: Bearer [redacted]" in shown
            assert any(r.headers.get("authorization") == f"Bearer {KEY}" for r in fake.requests)
            assert KEY[:10] not in shown and KEY[:10] not in screen_text(app)
