"""The probe screen against the synthetic engine: run a ladder from the form, watch the table fill, see the
verdict and plots, find the run in the history, compare two runs, cancel one midway, and read-only mode."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Input, Static, TabbedContent

from console.config import EngineConfig
from console.ui.app import EngineDeckApp
from tests.ui.fixtures import TestContext, make_config, settle


def app_for(tmp_path, sim, *, read_only=False) -> EngineDeckApp:
    config = make_config(tmp_path, engines=[EngineConfig(name="sim", url=sim.url, kind="openai")],
                         read_only=read_only)
    return EngineDeckApp(TestContext(config))


async def open_probe(pilot, *, levels="1,2", requests="4", max_tokens="8") -> None:
    await settle(pilot, until=lambda: pilot.app.store is not None and pilot.app.engines_ready)
    await pilot.press("4")
    await settle(pilot, until=lambda: pilot.app.screen.query_one("#engine").value == "sim")
    screen = pilot.app.screen
    screen.query_one("#model", Input).value = "synthetic"
    screen.query_one("#levels", Input).value = levels
    screen.query_one("#requests", Input).value = requests
    screen.query_one("#max-tokens", Input).value = max_tokens
    screen.query_one("#slo", Input).value = "ttft_p90=1s,decode_p10=10,errors=1%"
    screen.query_one("#levels-table", DataTable).focus()
    await pilot.pause()


def rows(app, table_id) -> int:
    return app.screen.query_one(table_id, DataTable).row_count


async def run_and_wait(pilot, n_levels: int) -> None:
    """Press r and wait until this run's result is on screen (a new view, not the previous one)."""
    before = pilot.app.screen._view
    await pilot.press("r")
    await settle(pilot, until=lambda: pilot.app.screen._view is not before and not pilot.app.screen.running,
                 timeout_s=60)
    assert rows(pilot.app, "#levels-table") == n_levels


async def test_run_history_and_compare(tmp_path, synthetic_engine):
    sim = synthetic_engine(ttft_s=0.02, itl_s=0.004, tokens=8)
    app = app_for(tmp_path, sim)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_probe(pilot)
        await run_and_wait(pilot, 2)
        screen = app.screen
        verdict = str(screen.query_one("#verdict", Static).render())
        assert "Max usable concurrency: 2" in verdict and "complete" in verdict
        assert screen._view is not None and [f.concurrency for f in screen._view.levels] == [1, 2]

        runs = await app.store.probes.recent()
        assert len(runs) == 1 and runs[0].status == "complete"
        assert len((await app.store.probes.get(runs[0].id)).levels) == 2

        await run_and_wait(pilot, 2)  # a second run to compare with
        await pilot.press("h")
        await settle(pilot, until=lambda: rows(app, "#history") == 2)
        assert screen.query_one("#tabs", TabbedContent).active == "tab-history"
        await pilot.press("m")
        await pilot.press("down")
        await pilot.press("m")
        await settle(pilot, until=lambda: rows(app, "#compare") == 2)
        assert screen.query_one("#tabs", TabbedContent).active == "tab-compare"
        head = str(screen.query_one("#compare-head", Static).render())
        assert "A = run" in head and "B = run" in head

        await pilot.press("h")  # back to the history; enter opens the run under the cursor
        await pilot.press("enter")
        await settle(pilot, until=lambda: screen.query_one("#tabs", TabbedContent).active == "tab-levels")
        assert rows(app, "#levels-table") == 2


async def test_cancel_keeps_completed_levels(tmp_path, synthetic_engine):
    sim = synthetic_engine(ttft_s=0.05, itl_s=0.02, tokens=20)
    app = app_for(tmp_path, sim)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_probe(pilot, levels="1,2,4,8", requests="4", max_tokens="20")
        await pilot.press("r")
        await settle(pilot, until=lambda: rows(app, "#levels-table") >= 1, timeout_s=30)
        await pilot.press("c")
        await settle(pilot, until=lambda: not app.screen.running, timeout_s=30)
        await settle(pilot)
        runs = await app.store.probes.recent()
        assert runs[0].status == "cancelled"
        stored = await app.store.probes.get(runs[0].id)
        assert 1 <= len(stored.levels) < 4
        assert "cancelled" in str(app.screen.query_one("#verdict", Static).render())


@pytest.mark.parametrize("read_only", [True])
async def test_read_only_refuses_to_run(tmp_path, synthetic_engine, read_only):
    sim = synthetic_engine()
    app = app_for(tmp_path, sim, read_only=read_only)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_probe(pilot)
        await pilot.press("r")
        await pilot.pause()
        assert not app.screen.running
        assert app.screen.check_action("run", ()) is None
        assert await app.store.probes.recent() == []
