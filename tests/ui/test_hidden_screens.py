"""A screen that is not shown costs nothing: the dashboard polls no engine and samples no telemetry while another
screen is shown, and polls at once when it comes back (fresh rows, not the ones from before); the probe screen's
progress-bar clock stops while hidden."""

from __future__ import annotations

from console.config import UIConfig
from console.engines.base import LoadedModel
from console.ui.app import EngineDeckApp
from console.ui.textual_compat import running_timers
from tests.ui.fixtures import HOST, NO_GPU, FixedGpu, FixedHost, StubEngine, StubRegistry, TestContext, make_config
from tests.ui.fixtures import settle as settle_


class CountingHost(FixedHost):
    def __init__(self) -> None:
        super().__init__(HOST)
        self.samples = 0

    def sample(self):
        self.samples += 1
        return super().sample()


def app_with(tmp_path, engine: StubEngine, host: CountingHost, *, interval: float) -> EngineDeckApp:
    ui = UIConfig(theme="dark", poll_interval_s=interval, telemetry_interval_s=interval)
    ctx = TestContext(make_config(tmp_path, ui=ui), StubRegistry([engine]))
    return EngineDeckApp(ctx, gpu_monitor=FixedGpu(NO_GPU), host_monitor=host, scan_processes=lambda _p: [])


def counting(engine: StubEngine) -> list[int]:
    polls = [0]
    original = engine.loaded_models

    async def loaded():
        polls[0] += 1
        return await original()

    engine.loaded_models = loaded  # type: ignore[method-assign]
    return polls


async def test_the_dashboard_polls_nothing_while_hidden(tmp_path):
    engine = StubEngine("one")
    polls, host = counting(engine), CountingHost()
    app = app_with(tmp_path, engine, host, interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle_(pilot, until=lambda: polls[0] >= 3 and host.samples >= 3)
        await pilot.press("5")  # the logs screen asks no engine anything
        await settle_(pilot, until=lambda: app.current_mode == "logs")
        await pilot.pause(0.3)  # a poll or sample that was in flight ends
        seen = polls[0], host.samples
        await pilot.pause(1.0)  # ten intervals
        assert (polls[0], host.samples) == seen
        await pilot.press("1")
        await settle_(pilot, until=lambda: polls[0] > seen[0] and host.samples > seen[1])


async def test_the_dashboard_shows_fresh_rows_when_it_comes_back(tmp_path):
    """An interval of an hour: without the poll on return, the dashboard would show the first poll's rows."""
    engine = StubEngine("one")
    polls, host = counting(engine), CountingHost()
    app = app_with(tmp_path, engine, host, interval=3600)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle_(pilot)
        assert polls[0] == 1 and not app.screen.query_one("#loaded").row_count
        await pilot.press("5")
        await settle_(pilot, until=lambda: app.current_mode == "logs")
        engine.loaded = [LoadedModel("qwen3:4b", size=2**30, size_vram=2**30, context_length=4096)]
        await pilot.press("1")
        await settle_(pilot, until=lambda: app.screen.query_one("#loaded").row_count == 1)
        assert polls[0] == 2


async def test_the_probe_screen_stops_its_clock_while_hidden(tmp_path):
    app = app_with(tmp_path, StubEngine("one"), CountingHost(), interval=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle_(pilot)
        await pilot.press("4")
        await settle_(pilot, until=lambda: app.current_mode == "probe")
        probe = app.screen

        def running() -> list:
            return [t for w in probe.walk_children() for t in running_timers(w)]

        assert running()  # the progress bar's clock ticks every second
        await pilot.press("1")
        await settle_(pilot, until=lambda: app.current_mode == "dashboard")
        assert not running()
        await pilot.press("4")
        await settle_(pilot, until=lambda: app.screen is probe)
        assert running()
