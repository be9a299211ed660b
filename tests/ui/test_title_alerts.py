"""Firing alert rules (`[alerts] rules_file`) in the title bar of every screen, and gone once resolved."""

from __future__ import annotations

from console.config import AlertsConfig
from console.telemetry.gpu import GpuSample, GpuSnapshot
from tests.ui.fixtures import (
    FixedGpu,
    demo_app,
    screen_text,
    settle,
)


def hot(temp: float) -> GpuSnapshot:
    return GpuSnapshot(available=True, gpus=(GpuSample(0, "H100", "GPU-1", 10.0, 1.0, 1, 100, temp, 100.0, 700.0),))


async def test_a_firing_rule_shows_in_the_title_bar_and_goes_when_resolved(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('interval = 0.1\n[[rule]]\nname = "gpu-hot"\nmetric = "gpu_temperature"\nabove = 80\n')
    gpu = FixedGpu(hot(91))
    app = demo_app(tmp_path, gpu=gpu, alerts=AlertsConfig(rules_file=rules))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, until=lambda: app.firing_alerts == ("gpu-hot",))
        await pilot.pause()
        assert "⚠ 1 alert: gpu-hot" in screen_text(app).splitlines()[0]
        await pilot.press("2")  # another screen's title bar says it too
        await settle(pilot)
        assert "1 alert: gpu-hot" in screen_text(app).splitlines()[0]
        gpu.snapshot = hot(60)
        await settle(pilot, until=lambda: app.firing_alerts == ())
        await pilot.pause()
        assert "alert" not in screen_text(app).splitlines()[0]


async def test_a_broken_rules_file_is_one_notice(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "x"\nmetric = "nope"\n')
    notes = []
    app = demo_app(tmp_path, gpu=hot(50), alerts=AlertsConfig(rules_file=rules))
    hook = lambda m: notes.append(m.notification) if type(m).__name__ == "Notify" else None  # noqa: E731
    async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
        await settle(pilot, until=lambda: any(n.title == "Alerts" for n in notes))
        (note,) = [n for n in notes if n.title == "Alerts"]
        assert "Alerts are off" in note.message and "rules.toml:3" in note.message
