"""The dashboard, driven headless: fixed engines and telemetry, the Ollama contract server, the real llama.cpp
router, no engine at all, and a dead engine that must not freeze the others."""

from __future__ import annotations

import re
from dataclasses import replace

import httpx
import pytest
from textual.widgets import DataTable, Static

from console.config import EngineConfig, UIConfig
from console.engines.poll import FirstPoll
from console.ui.start import first_rows_frame
from tests.fakes.ollama_server import FakeOllama
from tests.ui.fixtures import (
    GIB,
    HOST,
    LONG_GGUF,
    LONG_OLLAMA,
    NO_GPU,
    EngineDeckApp,
    FixedGpu,
    FixedHost,
    StubEngine,
    StubRegistry,
    TestContext,
    demo_app,
    demo_engines,
    fixed_processes,
    long_name_engines,
    make_config,
    screen_text,
    settle,
)


def rows(app: EngineDeckApp, table_id: str) -> list[list[str]]:
    """The table's rows; none before the table is mounted (it is, with the first engine to show)."""
    found = app.screen.query(f"#{table_id}")
    if not found:
        return []
    table = found.only_one(DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(app: EngineDeckApp, widget_id: str) -> str:
    return str(app.screen.query_one(f"#{widget_id}", Static).render())


async def test_engines_loaded_models_gpu_and_host(tmp_path):
    app = demo_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        assert app.screen.__class__.__name__ == "DashboardScreen"
        assert rows(app, "engines") == [
            ["ollama-a", "ok", "ollama", "0.12.6", "<10 ms", "—", "—"],
            ["vllm-a", "ok", "vllm", "0.11.0", "<10 ms", "3/1", "42%"],
        ]
        assert rows(app, "loaded") == [
            ["ollama-a", "llama3.2:1b", "100% GPU", "2.0 GB", "forever", "4096"],
            ["ollama-a", "gemma3:4b", "40%/60% CPU/GPU", "5.0 GB", "forever", "8192"],
            ["vllm-a", "Qwen/Qwen3-8B", "—", "—", "loaded", "32768"],
        ]
        gpu = text_of(app, "gpu-text")
        assert "0 NVIDIA H100 80GB HBM3  63%  41.0 GB/80.0 GB  54°C  312/700 W" in gpu
        assert "pid 4242 38.0 GB → vllm-a" in gpu  # the GPU process maps to the engine that owns it
        host = text_of(app, "host-text")
        assert "ram 21.0 GB/64.0 GB" in host and "/srv/models 800.0 GB free" in host
        assert "4242 vllm-a rss 3.0 GB up 2h00m :8000" in host
        shown = screen_text(app)
        assert "enginedeck" in shown.splitlines()[0]  # the header names the app
        assert "12% of 16" in shown


async def test_no_gpu_says_so_and_the_rest_works(tmp_path):
    app = demo_app(tmp_path, gpu=NO_GPU)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        assert "no NVIDIA GPU / NVML not available" in text_of(app, "gpu-text")
        assert app.screen.query_one("#sparks").shown_keys() == ["cpu"]  # no empty GPU sparklines without a GPU
        assert len(rows(app, "engines")) == 2 and "12% of 16" in screen_text(app)


async def test_real_nvml_on_this_box_reports_no_gpu(tmp_path, ollama_server: FakeOllama):
    """Real telemetry (NVML, psutil, /proc) against the Ollama contract server: the CI box has no NVIDIA GPU."""
    async with httpx.AsyncClient() as client:
        load = {"model": "llama3.2:1b", "keep_alive": "10m"}
        (await client.post(f"{ollama_server.url}/api/generate", json=load)).raise_for_status()
    config = make_config(tmp_path, engines=[EngineConfig(name="fake-ollama", url=ollama_server.url, kind="ollama")])
    app = EngineDeckApp(TestContext(config))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, until=lambda: bool(rows(app, "loaded")))
        assert rows(app, "engines")[0][:4] == ["fake-ollama", "ok", "ollama", "0.12.6"]
        engine, model, where, _size, expires, ctx = rows(app, "loaded")[0]
        assert (engine, model, where, ctx) == ("fake-ollama", "llama3.2:1b", "100% GPU", "4096")
        assert expires.startswith(("9m", "10m"))  # keep-alive of 10 minutes, counting down
        gpu = text_of(app, "gpu-text")
        assert "no NVIDIA GPU / NVML not available" in gpu or "NVML not available" in gpu
        assert "ram " in text_of(app, "host-text")


async def test_no_engine_tells_how_to_point_at_one(tmp_path):
    app = EngineDeckApp(TestContext(make_config(tmp_path), StubRegistry([])))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        message = text_of(app, "status-line")
        assert message.startswith("No engine found.")
        assert "enginedeck --engine http://HOST:PORT" in message and "[[engines]]" in message
        assert "--no-discover" in message  # this config has discovery off, and the message says so
        assert not app.screen.query("#engines")  # no table until there is an engine to show


async def test_a_dead_engine_does_not_freeze_polling(tmp_path):
    """One engine never answers. The other keeps being polled and shown; the dead one is marked down once its
    deadline (1 s at a 0.2 s interval) passes, while its poll is still outstanding."""
    alive = StubEngine("alive", "ollama")
    dead = StubEngine("dead", "ollama", hang=True)
    polls = 0
    original = alive.loaded_models

    async def counting_loaded():
        nonlocal polls
        polls += 1
        return await original()

    alive.loaded_models = counting_loaded  # type: ignore[method-assign]
    ui = UIConfig(theme="dark", poll_interval_s=0.2, telemetry_interval_s=3600)
    ctx = TestContext(make_config(tmp_path, ui=ui), StubRegistry([alive, dead]))
    app = EngineDeckApp(ctx, gpu_monitor=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, until=lambda: bool(rows(app, "engines")))
        assert rows(app, "engines")[0][:4] == ["alive", "ok", "ollama", "0.12.6"]  # shown before "dead" answers
        await settle(pilot, until=lambda: len(rows(app, "engines")) == 2, timeout_s=8)
        assert rows(app, "engines")[1][:4] == ["dead", "down", "ollama", "—"]
        assert "dead: no answer within 1 s" in text_of(app, "engine-problems")
        seen = polls
        await settle(pilot, until=lambda: polls >= seen + 3, timeout_s=8)


async def test_refresh_key_rediscovers(tmp_path):
    registry = StubRegistry([StubEngine("one")])
    app = EngineDeckApp(TestContext(make_config(tmp_path), registry))
    async with app.run_test() as pilot:
        await settle(pilot)
        assert registry.refreshes == 1
        registry.engines.append(StubEngine("two"))
        await pilot.press("r")
        await settle(pilot, until=lambda: len(rows(app, "engines")) == 2)
        assert registry.refreshes == 2 and [r[0] for r in rows(app, "engines")] == ["one", "two"]


@pytest.mark.llama
async def test_real_llama_router(tmp_path, router):
    """The real llama-server in router mode: its models and their router status reach the dashboard."""
    async with httpx.AsyncClient(timeout=60) as client:
        (await client.post(router.url + "/models/load", json={"model": "smol-a"})).raise_for_status()
    config = make_config(tmp_path, engines=[EngineConfig(name="router", url=router.url, kind="llamacpp")],
                         ui=UIConfig(poll_interval_s=0.5, telemetry_interval_s=3600))
    app = EngineDeckApp(TestContext(config))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, until=lambda: any(r[1] == "smol-a" and r[4] == "loaded" for r in rows(app, "loaded")),
                     timeout_s=60)
        assert rows(app, "engines")[0][:3] == ["router", "ok", "llamacpp"]


async def test_long_names_are_elided_to_fit_80_columns_and_whole_when_wide(tmp_path):
    app = demo_app(tmp_path, engines=long_name_engines())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        engines, loaded = rows(app, "engines"), rows(app, "loaded")
        assert [r[0][:8] for r in engines] == ["gpu-node"] * 2 and all("…" in r[0] for r in engines)
        assert engines[0][0].endswith("ollama") and engines[1][0].endswith("a100")  # both ends kept
        assert all("…" in r[1] for r in loaded)
        shown = screen_text(app)
        for header in ("health", "KV", "where", "expires/status"):  # the verdict columns are in view
            assert header in shown, header
        await pilot.resize_terminal(160, 40)
        await settle(pilot, until=lambda: rows(app, "engines")[0][0] == LONG_OLLAMA)
        assert rows(app, "loaded")[0][1] == LONG_GGUF


async def test_unchanged_answers_repaint_nothing_and_a_changed_figure_repaints_its_cell(tmp_path):
    """Ten engines polled every second must not send every row to the terminal again each time: a poll whose
    answers are the same touches no table, and one changed figure repaints that cell, not the table."""
    engines = demo_engines()
    polls = 0
    original = engines[0].loaded_models

    async def counting_loaded():
        nonlocal polls
        polls += 1
        return await original()

    engines[0].loaded_models = counting_loaded  # type: ignore[method-assign]
    app = demo_app(tmp_path, engines=engines, ui=UIConfig(theme="dark", poll_interval_s=0.05,
                                                          telemetry_interval_s=3600))
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot, until=lambda: len(rows(app, "loaded")) == 3)
        await pilot.pause()
        tables = {t.id: t for t in app.screen.query(DataTable)}
        calls: list[tuple[str, str]] = []

        def spy(table: DataTable, method: str) -> None:
            real = getattr(table, method)

            def call(*args, **kwargs):
                calls.append((table.id, method if method != "refresh" or not args else "refresh-cell"))
                return real(*args, **kwargs)

            setattr(table, method, call)

        for table in tables.values():
            for method in ("clear", "add_rows", "refresh"):
                spy(table, method)
        seen = polls
        await settle(pilot, until=lambda: polls >= seen + 5)
        await pilot.pause()
        assert calls == []  # five polls with the same answers: no table was touched

        engines[0].loaded[1] = replace(engines[0].loaded[1], size_vram=5 * GIB)  # gemma3 now all on the GPU
        await settle(pilot, until=lambda: rows(app, "loaded")[1][2] == "100% GPU")
        assert set(calls) == {("loaded", "refresh-cell")}  # one cell, in place
        assert rows(app, "loaded")[0] == ["ollama-a", "llama3.2:1b", "100% GPU", "2.0 GB", "forever", "4096"]


async def test_the_engines_polled_before_the_app_are_in_its_first_frame_and_not_polled_again(tmp_path,
                                                                                             ollama_server):
    """`enginedeck` polls the engines before it imports Textual (console/ui/start.py); the app takes that poll
    over: the rows are there as soon as the dashboard is, and neither the registry nor the engine is asked
    again before the poll interval."""
    config = make_config(tmp_path, engines=[EngineConfig(name="fake-ollama", url=ollama_server.url, kind="ollama")])
    ctx = TestContext(config)
    first = FirstPoll(ctx.registry(), deadline_s=2)
    assert await first.wait(5)
    asked = len(ollama_server.requests)
    app = EngineDeckApp(ctx, first_poll=first, gpu_monitor=FixedGpu(NO_GPU), host_monitor=FixedHost(HOST),
                        scan_processes=fixed_processes())
    async with app.run_test(size=(80, 24)) as pilot:
        assert rows(app, "engines")[0][:4] == ["fake-ollama", "ok", "ollama", "0.12.6"]
        await settle(pilot)
        assert app.engines_ready and rows(app, "engines")[0][:4] == ["fake-ollama", "ok", "ollama", "0.12.6"]
        assert len(ollama_server.requests) == asked


@pytest.mark.parametrize(("ascii_mode", "many"), [(False, False), (True, False), (False, True)])
async def test_the_rows_written_before_textual_are_where_the_dashboard_draws_them(tmp_path, ascii_mode, many):
    """console/ui/start.py writes the first rows itself, before Textual is imported; when the dashboard's first
    frame replaces them, the text must not move: the same lines, long names elided the same way, and room for the
    scrollbar when the dashboard will need one."""
    engines = [*demo_engines(), *long_name_engines()] if many else demo_engines()[:1]
    app = demo_app(tmp_path, engines=engines, ascii_mode=ascii_mode)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        statuses = [app.screen._statuses[name] for name in app.screen._order]
        drawn = [re.sub("[▁-▐━]", " ", line).rstrip() for line in screen_text(app).splitlines()]  # scrollbars
        first = [line.rstrip() for line in first_rows_frame(statuses, 80, 24, ascii_mode=ascii_mode)]
        assert drawn[: len(first)] == first
