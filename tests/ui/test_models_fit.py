"""The models screen's load dialog says whether the model will fit (console/fitting.py), and a load made there
leaves its fit record (predicted beside measured) in the store."""

from __future__ import annotations

import sys

from textual.widgets import Static

from tests.ui.fixtures import settle
from tests.ui.test_models_screen import app_for, choose, fake, open_models, press_for_dialog, select, state_of

assert fake  # the fixture, imported for this module's tests


def dialog_text(app) -> str:
    return "\n".join(str(s.render()) for s in app.screen.query(Static))


async def test_load_dialog_has_the_fit_line_and_the_load_is_recorded(tmp_path, fake, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no GPU: the need is judged against the host's RAM
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_models(pilot)
        await select(pilot, "llama3.2:1b")
        await press_for_dialog(pilot, "l")
        text = dialog_text(app)
        assert "memory: needs ≈" in text and "in host memory" in text and "fits" in text
        assert "[default]; 1 slot × 4096 tokens" in text  # Ollama's defaults, the overhead not fitted yet
        await choose(pilot, "30 minutes")
        await settle(pilot, until=lambda: state_of(app, "llama3.2:1b") == "loaded")
        store = await app.ctx.store()
        for _ in range(50):
            if rows := await store.fit_records.recent():
                break
            await pilot.pause(0.05)
        (row,) = rows
        assert (row.engine, row.model, row.measured_source) == ("fake", "llama3.2:1b", "ollama /api/ps")
        (ps,) = [m for m in fake.ps() if m["name"] == "llama3.2:1b"]  # what the engine says the model holds
        assert row.memory == "gpu" and row.measured == ps["size"] == ps["size_vram"] and row.slots == 1
        assert row.detail["shape"] == "ollama show" and row.predicted_model > fake.models["llama3.2:1b"].size
