"""The dashboard's findings line: one line at 80x24, one line per finding on a tall terminal, hidden when there is
nothing to say. The demo engines hold gemma3:4b 3 of 5 GiB in VRAM (partly on the CPU)."""

from __future__ import annotations

from textual.widgets import Static

from console.engines.base import LoadedModel
from tests.ui.fixtures import GIB, StubEngine, demo_app, settle


def findings_line(app) -> Static:
    return app.screen.query_one("#findings-line", Static)


async def test_collapsed_to_one_line_at_80x24(tmp_path):
    app = demo_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, until=lambda: bool(findings_line(app).display))
        text = str(findings_line(app).render())
        assert text.startswith("1 finding: gemma3:4b on ollama-a is 40% on the CPU")
        assert "\n" not in text.strip()


async def test_listed_with_evidence_on_a_tall_terminal(tmp_path):
    app = demo_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot, until=lambda: bool(findings_line(app).display))
        text = str(findings_line(app).render())
        assert "WARN gemma3:4b on ollama-a is 40% on the CPU" in text
        assert "in GPU memory 3.0 GB vs model size 5.0 GB" in text.replace("GiB", "GB")


async def test_hidden_when_everything_agrees(tmp_path):
    whole = StubEngine("ollama-a", "ollama", loaded=[LoadedModel("llama3.2:1b", size=2 * GIB, size_vram=2 * GIB)])
    app = demo_app(tmp_path, engines=[whole])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await settle(pilot)
        assert app.screen._samples > 0  # telemetry (and so the findings check) ran
        assert not findings_line(app).display
