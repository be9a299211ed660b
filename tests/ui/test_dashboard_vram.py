"""The dashboard's loaded-models row of an engine that does not report VRAM (vLLM here) shows the NVML memory of
the process that serves it, once the telemetry has mapped that process to the engine (docs/fit.md)."""

from __future__ import annotations

from textual.widgets import DataTable

from console.config import UIConfig
from tests.ui.fixtures import NO_GPU, demo_app, settle

FAST_TELEMETRY = UIConfig(theme="dark", poll_interval_s=3600.0, telemetry_interval_s=0.2)


def loaded(app) -> list[list[str]]:
    found = app.screen.query("#loaded")
    if not found:
        return []
    table = found.only_one(DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_vllm_row_gets_its_process_vram(tmp_path):
    app = demo_app(tmp_path, ui=FAST_TELEMETRY)
    async with app.run_test(size=(160, 48)) as pilot:
        vllm = ["vllm-a", "Qwen/Qwen3-8B", "GPU 38.0 GB", "—", "loaded", "32768"]
        await settle(pilot, until=lambda: vllm in loaded(app))
        rows = loaded(app)
        assert vllm in rows  # pid 4242, the vLLM process, holds 38 GiB on GPU 0
        assert ["ollama-a", "llama3.2:1b", "100% GPU", "2.0 GB", "forever", "4096"] in rows  # Ollama's own figure


async def test_without_a_gpu_the_row_says_nothing(tmp_path):
    app = demo_app(tmp_path, gpu=NO_GPU, ui=FAST_TELEMETRY)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot, until=lambda: len(loaded(app)) == 3)
        await pilot.pause(0.5)  # a few telemetry samples
        assert ["vllm-a", "Qwen/Qwen3-8B", "—", "—", "loaded", "32768"] in loaded(app)
