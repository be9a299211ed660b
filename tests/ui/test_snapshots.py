"""SVG snapshots of the dashboard at 80x24 and 160x48, in the dark and light themes.

Deterministic by construction: stub engines with fixed figures, fixed GPU/host/process snapshots passed into
the app, poll intervals of an hour (one poll, no ticks), keep-alive "forever" (no clock), no cursor blink.
Update with `pytest tests/ui/test_snapshots.py --snapshot-update` and look at the SVGs before committing.
"""

from __future__ import annotations

import pytest

from tests.ui.fixtures import demo_app, settle


async def _settled(pilot) -> None:
    await settle(pilot)
    await settle(pilot)  # telemetry arrives from a thread: one more turn for its repaint


@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_dashboard(snap_compare, tmp_path, theme, size):
    """Engines (Ollama and vLLM with run/wait and KV), three loaded models with their VRAM split, two H100s
    with a process mapped to vllm-a, and the host panel. At 80x24 the panels stack and the body scrolls."""
    assert snap_compare(demo_app(tmp_path, theme=theme), terminal_size=size, run_before=_settled)
