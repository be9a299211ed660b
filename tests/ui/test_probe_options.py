"""The probe screen's options (`o`) driven by keys as a person would: the open loop with two rates, bisection and
the noise guard with the point verdict, bad values refused on one line with nothing run, two open-loop runs
compared by rate (and a closed-loop run against an open one refused), and every field reachable at 80×24."""

from __future__ import annotations

import re

from textual.widgets import Checkbox, DataTable, Input, Select, Static

from tests.ui.fixtures import settle
from tests.ui.test_probe_screen import app_for, open_probe, rows


def dialog(app):
    return app.screen if type(app.screen).__name__ == "ProbeOptionsDialog" else None


async def open_options(pilot) -> None:
    """o on the probe screen, waiting for the dialog (its first field, the loop, has focus)."""
    await pilot.press("o")
    await settle(pilot, until=lambda: dialog(pilot.app) is not None)
    assert pilot.app.focused is dialog(pilot.app).query_one("#opt-loop")


async def choose_in_select(pilot, label: str) -> None:
    """enter opens the focused select's menu; arrows to the entry whose text starts with `label`; enter picks."""
    select = pilot.app.focused
    assert isinstance(select, Select)
    await pilot.press("enter")
    await pilot.pause()
    labels = [str(prompt) for prompt, _ in select._options]
    current = labels.index(next(str(p) for p, v in select._options if v == select.value))
    target = next(i for i, text in enumerate(labels) if text.startswith(label))
    await pilot.press(*(["down"] * (target - current) if target >= current else ["up"] * (current - target)))
    await pilot.press("enter")
    await pilot.pause()


async def retype(pilot, text: str) -> None:
    """Replace the focused text field's value, as a person does: to the end, delete everything left, type."""
    await pilot.press("end", "ctrl+u", *text)


async def tab_to(pilot, widget_id: str) -> None:
    for _ in range(12):
        if pilot.app.focused is not None and pilot.app.focused.id == widget_id:
            return
        await pilot.press("tab")
    raise AssertionError(f"tab never reached #{widget_id}")


async def set_open_loop(pilot, rates: str) -> None:
    await open_options(pilot)
    await choose_in_select(pilot, "open")
    await tab_to(pilot, "opt-rates")
    await retype(pilot, rates)
    await pilot.press("enter")
    await settle(pilot, until=lambda: dialog(pilot.app) is None)


async def run_and_wait(pilot) -> None:
    before = pilot.app.screen._view
    await pilot.press("r")
    await settle(pilot, until=lambda: pilot.app.screen._view is not before and not pilot.app.screen.running,
                 timeout_s=60)


def headers(app, table_id="#levels-table") -> list[str]:
    return [str(c.label) for c in app.screen.query_one(table_id, DataTable).columns.values()]


def cells(app, table_id="#levels-table") -> list[list[str]]:
    table = app.screen.query_one(table_id, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(app, selector) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def test_open_loop_from_the_options_and_compare_by_rate(tmp_path, synthetic_engine):
    sim = synthetic_engine(ttft_s=0.02, itl_s=0.004, tokens=8)
    app = app_for(tmp_path, sim)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_probe(pilot)
        await set_open_loop(pilot, "5,10")
        assert text_of(app, "#options") == (
            "open loop 5,10/s · poisson · ≤ 256 in flight · verdict pessimistic · o: options")
        assert app.screen.query_one("#levels", Input).disabled  # the levels are not what runs
        await run_and_wait(pilot)

        cols = headers(app)
        assert cols[:6] == ["RATE", "SLO", "SLO MET 95%", "OFFERED", "ACHIEVED", "GOODPUT"]
        assert {"p90 95% CI", "p10 95% CI", "SEND LAG max"} <= set(cols)
        table = cells(app)
        assert [r[0] for r in table] == ["5/s", "10/s"]
        for row in table:
            by = dict(zip(cols, row, strict=True))
            for name in ("OFFERED", "ACHIEVED", "GOODPUT", "p90 95% CI", "SLO MET 95%"):
                assert by[name] != "—", (name, row)
            assert float(by["OFFERED"]) > 0 and "–" in by["p90 95% CI"]
        verdict = text_of(app, "#verdict")
        assert "Max sustainable rate" in verdict
        # the answer's figures with their intervals (the rate the verdict names)
        assert re.search(r"At (5|10)/s: achieved [\d.]+/s, goodput [\d.]+/s; TTFT p90 .* \(95% CI [\d.]+–", verdict)
        runs = await app.store.probes.recent()
        assert runs[0].params["rates"] == [5.0, 10.0] and runs[0].params["arrivals"] == "poisson"

        await set_open_loop(pilot, "5,20")  # a second open-loop run, sharing one rate with the first
        await run_and_wait(pilot)
        await pilot.press("h")
        await settle(pilot, until=lambda: rows(app, "#history") == 2)
        assert cells(app, "#history")[0][5] == "5/s,20/s"
        await pilot.press("m", "down", "m")
        await settle(pilot, until=lambda: rows(app, "#compare") == 3)
        assert headers(app, "#compare")[:5] == ["rate", "TTFT p90 A", "B", "Δ", "achieved A"]
        compared = cells(app, "#compare")
        assert [r[0] for r in compared] == ["5/s", "10/s", "20/s"]
        assert compared[0][4] != "—" and compared[0][5] != "—"  # 5/s in both runs: achieved A and B
        # A is the newest run (the history's first row): 10/s only in B (the first run), 20/s only in A
        assert compared[1][4] == "—" and compared[1][5] != "—" and compared[2][5] == "—"
        assert "max rate" in text_of(app, "#compare-head")

        # a closed-loop run against an open-loop one: one line, no rows
        await open_options(pilot)
        await choose_in_select(pilot, "closed")
        await tab_to(pilot, "opt-rates")
        await pilot.press("enter")
        await settle(pilot, until=lambda: dialog(app) is None)
        assert not app.screen.query_one("#levels", Input).disabled
        app.screen.query_one("#levels", Input).value = "1"
        await run_and_wait(pilot)
        assert headers(app)[0] == "C"
        await pilot.press("h")
        await settle(pilot, until=lambda: rows(app, "#history") == 3)
        await pilot.press("m", "down", "m")
        await settle(pilot, until=lambda: "closed loop" in text_of(app, "#compare-head"))
        assert rows(app, "#compare") == 0 and "open loop" in text_of(app, "#compare-head")


async def test_bisection_noise_guard_and_point_verdict(tmp_path, synthetic_engine):
    sim = synthetic_engine(ttft_s=0.05, itl_s=0.01, tokens=8, slots=2)  # c=3 queues a whole reply
    app = app_for(tmp_path, sim)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_probe(pilot, levels="1,4", requests="4")
        app.screen.query_one("#slo", Input).value = "ttft_p90=110ms,decode_p10=10,errors=1%"
        await open_options(pilot)
        await tab_to(pilot, "opt-precision")
        await retype(pilot, "1")
        await tab_to(pilot, "opt-verdict")
        await choose_in_select(pilot, "point")
        await tab_to(pilot, "opt-noise-guard")
        await pilot.press("space")
        assert dialog(app).query_one("#opt-noise-guard", Checkbox).value is True
        await tab_to(pilot, "opt-max-in-flight")
        await pilot.press("enter")
        await settle(pilot, until=lambda: dialog(app) is None)
        assert "bisection to 1" in text_of(app, "#options") and "noise guard" in text_of(app, "#options")
        await run_and_wait(pilot)

        labels = [r[0] for r in cells(app)]
        assert labels == ["1", "2 b", "3 b", "4", "1 again"], labels
        verdict = text_of(app, "#verdict")
        assert "Max usable concurrency: 2" in verdict
        assert re.search(r"At c=2: TTFT p90 [\d.]+ ms \(95% CI [\d.]+–[\d.]+ ms\), decode p10 [\d.]+ \([\d.]+–",
                         verdict)
        assert "Bisection after the ladder (1, 4): c=2, 3, marked b" in verdict
        assert "Noise guard: c=1 twice" in verdict and "on the point figures" in verdict
        run = (await app.store.probes.recent())[0]
        assert run.params["precision"] == 1 and run.params["noise_guard"] is True and run.params["verdict"] == "point"


async def test_bad_values_are_one_line_and_nothing_runs(tmp_path, synthetic_engine):
    sim = synthetic_engine()
    app = app_for(tmp_path, sim)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_probe(pilot)
        await open_options(pilot)
        await choose_in_select(pilot, "open")
        await tab_to(pilot, "opt-rates")
        await retype(pilot, "5,fast")
        await pilot.press("enter")
        await pilot.pause()
        assert dialog(app) is not None  # still open, saying why
        said = str(dialog(app).query_one("#opt-error", Static).render())
        assert said.startswith("--rates wants requests per second") and "\n" not in said
        await retype(pilot, "0")
        await pilot.press("enter")
        await pilot.pause()
        assert "rates must be above 0" in str(dialog(app).query_one("#opt-error", Static).render())
        await pilot.press("escape")  # cancelled: the options stay as they were
        await settle(pilot, until=lambda: dialog(app) is None)
        assert "closed ladder" in text_of(app, "#options")

        app.screen.query_one("#requests", Input).value = "many"
        await pilot.press("r")
        await pilot.pause()
        status = text_of(app, "#status")
        assert status == "probe --requests wants a whole number, not 'many'"
        assert not app.screen.running and await app.store.probes.recent() == []


async def test_every_field_reachable_at_80x24(tmp_path, synthetic_engine):
    sim = synthetic_engine()
    app = app_for(tmp_path, sim)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_probe(pilot)

        def on_screen(widget) -> bool:
            r = widget.region
            return r.width > 0 and r.height > 0 and r.right <= 80 and r.bottom <= 24

        await pilot.press("f")
        seen = set()
        for _ in range(8):
            focused = app.focused
            assert focused is not None and on_screen(focused), focused
            seen.add(focused.id)
            await pilot.press("tab")
        assert {"engine", "model", "levels", "requests", "max-tokens", "slo"} <= seen
        assert on_screen(app.screen.query_one("#options"))
        await pilot.press("escape")

        await open_options(pilot)
        wanted = ["opt-loop", "opt-rates", "opt-arrivals", "opt-max-in-flight", "opt-precision", "opt-verdict",
                  "opt-noise-guard", "opt-energy"]
        reached = []
        for _ in range(len(wanted)):
            focused = app.focused
            assert focused is not None and on_screen(focused), focused
            reached.append(focused.id)
            await pilot.press("tab")
        assert reached == wanted
        for selector in ("#opt-error", ".dialog-hint"):
            assert on_screen(dialog(app).query_one(selector))
        await pilot.press("escape")
        await settle(pilot, until=lambda: dialog(app) is None)


async def test_energy_on_a_box_without_a_gpu_is_one_line(tmp_path, synthetic_engine, monkeypatch):
    from console.errors import EngineDeckError
    from console.telemetry import energy

    asked = []

    async def no_gpu():
        asked.append(True)
        raise EngineDeckError("--energy: NVML is not available (no NVIDIA driver)")

    monkeypatch.setattr(energy, "box_meter", no_gpu)  # the box the test runs on may or may not have a GPU
    app = app_for(tmp_path, synthetic_engine())
    async with app.run_test(size=(80, 24)) as pilot:
        await open_probe(pilot)
        await open_options(pilot)
        await tab_to(pilot, "opt-energy")
        await pilot.press("space")
        await tab_to(pilot, "opt-precision")
        await pilot.press("enter")
        await settle(pilot, until=lambda: dialog(app) is None)
        assert text_of(app, "#options").endswith("energy · o: options")
        await pilot.press("r")
        await settle(pilot, until=lambda: bool(asked) and not app.screen.running)
        await settle(pilot)
        assert text_of(app, "#status") == "--energy: NVML is not available (no NVIDIA driver)"
        assert await app.store.probes.recent() == []
