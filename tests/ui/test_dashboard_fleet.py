"""The dashboard in fleet mode ([fleet] prometheus_url): a fake fleet source with two hosts stands for Prometheus
(console/ui/fleet_rows.py's read_fleet is swapped for it), so what is tested is the screen: the host column, the
host filter on its key, a failed read that keeps the last rows and says so, and 80x24."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from console.config import FleetConfig, UIConfig
from console.engines.prometheus import Series
from console.errors import EngineDeckError
from console.watch.fleet import FleetView, build_view
from tests.ui.fixtures import (
    NO_GPU,
    QUIET,
    EngineDeckApp,
    TestContext,
    demo_app,
    make_config,
    screen_text,
    settle,
)
from tests.ui.test_dashboard import rows, text_of

LONG_HOST = "gpu-node-rack-17-row-4-eu-west-datacenter-b.internal.example"


def series(instance: str, host: str, *, engine: str, model: str, up: float = 1) -> list[Series]:
    base = {"instance": instance, "job": "enginedeck"}
    return [
        Series({**base, "__name__": "enginedeck_exporter_info", "host": host}, 1),
        Series({**base, "__name__": "enginedeck_engine_up", "engine": engine, "kind": "ollama"}, up),
        Series({**base, "__name__": "enginedeck_engine_info", "engine": engine, "version": "0.12.6",
                "health": "ok" if up else "down"}, 1),
        Series({**base, "__name__": "enginedeck_engine_requests_running", "engine": engine}, 2),
        Series({**base, "__name__": "enginedeck_engine_requests_waiting", "engine": engine}, 1),
        Series({**base, "__name__": "enginedeck_engine_kv_cache_usage_ratio", "engine": engine}, 0.42),
        Series({**base, "__name__": "enginedeck_model_loaded", "engine": engine, "model": model}, 1),
        Series({**base, "__name__": "enginedeck_model_size_bytes", "engine": engine, "model": model}, 4 << 30),
        Series({**base, "__name__": "enginedeck_gpu_utilization_ratio", "gpu": "0", "name": "NVIDIA H100"}, 0.71),
    ]


def two_hosts(first: str = "gpu-a") -> FleetView:
    return build_view("http://127.0.0.1:9090", [*series("10.0.0.1:9464", first, engine="ollama", model="qwen3:8b"),
                                                *series("10.0.0.2:9464", "gpu-b", engine="vllm", model="llama")],
                      node=[Series({"__name__": "node_load1", "instance": "10.0.0.2:9100"}, 2.5)],
                      alerts=[Series({"__name__": "ALERTS", "alertname": "EngineDown", "alertstate": "firing",
                                      "instance": "10.0.0.2:9464"}, 1)])


class FakeFleet:
    """What Prometheus answers, read after read: a FleetView, or an error to raise."""

    def __init__(self, *answers: FleetView | Exception) -> None:
        self.answers = list(answers)
        self.reads = 0

    def __call__(self, config: object) -> FleetView:
        answer = self.answers[min(self.reads, len(self.answers) - 1)]
        self.reads += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


def fleet_app(tmp_path, monkeypatch, fleet: Callable[[object], FleetView], ui: UIConfig = QUIET) -> EngineDeckApp:
    monkeypatch.setattr("console.ui.fleet_rows.read_fleet", fleet)
    return demo_app(tmp_path, gpu=NO_GPU, ui=ui, processes=(),
                    fleet=FleetConfig(prometheus_url="http://127.0.0.1:9090"))


async def test_every_host_has_its_rows_and_the_host_key_filters_them(tmp_path, monkeypatch):
    app = fleet_app(tmp_path, monkeypatch, FakeFleet(two_hosts()))
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot, until=lambda: len(rows(app, "engines")) == 2)
        assert rows(app, "engines") == [["gpu-a", "ollama", "ok", "ollama", "0.12.6", "—", "2/1", "42%"],
                                        ["gpu-b", "vllm", "ok", "ollama", "0.12.6", "—", "2/1", "42%"]]
        assert [r[:3] for r in rows(app, "loaded")] == [["gpu-a", "ollama", "qwen3:8b"], ["gpu-b", "vllm", "llama"]]
        assert "gpu-b: alert EngineDown firing" in text_of(app, "engine-problems")
        assert "2 host(s) from http://127.0.0.1:9090" in text_of(app, "fleet-line")
        assert app.screen._statuses == {}  # the local engines are not polled: the fleet is the source
        assert text_of(app, "fleet-hosts").splitlines() == [
            "gpu-a", "  GPU 0 NVIDIA H100  71%  —  —  —", "gpu-b  load 2.5", "  GPU 0 NVIDIA H100  71%  —  —  —"]
        await pilot.press("h")
        await settle(pilot, until=lambda: len(rows(app, "engines")) == 1)
        assert [r[0] for r in rows(app, "engines") + rows(app, "loaded")] == ["gpu-a", "gpu-a"]
        assert "h: gpu-a" in text_of(app, "fleet-line")
        assert not app.screen.query_one("#engine-problems").display  # gpu-b's alert is filtered out with it
        assert text_of(app, "fleet-hosts").splitlines() == ["gpu-a", "  GPU 0 NVIDIA H100  71%  —  —  —"]
        await pilot.press("h")
        await settle(pilot, until=lambda: [r[0] for r in rows(app, "engines")] == ["gpu-b"])
        await pilot.press("h")  # past the last host: all again
        await settle(pilot, until=lambda: len(rows(app, "engines")) == 2)
        assert "h: all hosts" in text_of(app, "fleet-line")


async def test_a_failed_read_keeps_the_last_rows_and_says_they_are_stale(tmp_path, monkeypatch):
    down = FleetView("http://127.0.0.1:9090", hosts=[], errors=["up: cannot reach Prometheus at 127.0.0.1:9090"])
    fleet = FakeFleet(two_hosts(), down, EngineDeckError("Prometheus answered 503"), two_hosts())
    app = fleet_app(tmp_path, monkeypatch, fleet)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot, until=lambda: len(rows(app, "engines")) == 2)
        before = rows(app, "engines")
        for expected in ("cannot reach Prometheus", "Prometheus answered 503"):
            await pilot.press("r")  # read again now
            await settle(pilot, until=lambda e=expected: e in text_of(app, "fleet-line"))
            line = text_of(app, "fleet-line")
            assert line.startswith("fleet read failed:") and "stale" in line and "\n" not in line
            assert rows(app, "engines") == before
            assert app.screen.query_one("#engines-panel").border_title == "Engines (stale)"
        await pilot.press("r")
        await settle(pilot, until=lambda: "failed" not in text_of(app, "fleet-line"))
        assert app.screen.query_one("#engines-panel").border_title == "Engines"


async def test_a_first_read_that_fails_says_so_and_shows_no_rows(tmp_path, monkeypatch):
    app = fleet_app(tmp_path, monkeypatch, FakeFleet(OSError("connection refused")))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, until=lambda: "failed" in text_of(app, "fleet-line"))
        assert text_of(app, "fleet-line") == "fleet read failed: connection refused"
        assert rows(app, "engines") == []


async def test_the_fleet_fits_80_by_24_with_long_host_names_elided_in_the_middle(tmp_path, monkeypatch):
    app = fleet_app(tmp_path, monkeypatch, FakeFleet(two_hosts(LONG_HOST)))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, until=lambda: len(rows(app, "engines")) == 2)
        long_row = rows(app, "engines")[1]  # hosts in name order: gpu-b first
        assert "…" in long_row[0] and long_row[0].startswith("gpu-node") and long_row[0].endswith("example")
        shown = screen_text(app)
        for header in ("host", "health", "run/wait", "where"):  # the verdict columns are in view
            assert header in shown, header
        assert all(len(line.rstrip()) <= 80 for line in shown.splitlines())
        await pilot.press("h")  # the filter's key is live in fleet mode, and the footer names it
        await settle(pilot, until=lambda: len(rows(app, "engines")) == 1)


async def test_without_prometheus_url_the_host_key_does_nothing(tmp_path):
    from tests.ui.fixtures import demo_app

    app = demo_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        assert not app.screen.query("#fleet-line")
        assert app.screen.check_action("fleet_host", ()) is False
        before = rows(app, "engines")
        await pilot.press("h")
        await settle(pilot)
        assert rows(app, "engines") == before and len(before[0]) == 7  # no host column


async def test_the_fleet_is_not_read_while_the_dashboard_is_hidden(tmp_path, monkeypatch):
    """Calm when hidden: another screen shown, no read starts; back on the dashboard, one comes at once."""
    monkeypatch.setattr("console.ui.fleet_rows.FLEET_MIN_INTERVAL_S", 0.02)
    app = fleet_app(tmp_path, monkeypatch, fleet := FakeFleet(two_hosts()), replace(QUIET, poll_interval_s=0.02))
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot, until=lambda: fleet.reads >= 3)  # read again and again at the (shortened) interval
        await pilot.press("2")
        await settle(pilot, until=lambda: app.screen.__class__.__name__ == "ModelsScreen")
        await pilot.pause(0.1)
        hidden = fleet.reads
        await pilot.pause(0.3)
        assert fleet.reads == hidden  # at most the read in flight when it was hidden, then none
        await pilot.press("1")
        await settle(pilot, until=lambda: fleet.reads > hidden)


def test_a_short_name_leaves_its_room_to_a_long_one():
    from console.ui.engine_rows import fit_names
    from console.ui.fleet_rows import FLEET_ENGINE_COLUMNS

    row = (LONG_HOST, "ollama", "ok", "ollama", "0.12.6", "—", "2/1", "—")
    fitted = fit_names([row], FLEET_ENGINE_COLUMNS, (0, 1, 4), 74)[0]
    assert fitted[1:] == row[1:]  # the short names are whole
    widths = [max(len(h), len(c)) for h, c in zip(FLEET_ENGINE_COLUMNS, fitted, strict=True)]
    assert sum(widths) + 2 * len(widths) == 74  # the host name takes all the room the others leave


def test_a_read_hung_on_prometheus_does_not_hold_the_quit(monkeypatch):
    """The console's loop joins its default executor when it ends: a read there would hold the quit for up to its
    deadline. read_in_thread's daemon thread is left behind instead."""
    import asyncio
    import threading
    import time

    from console.ui import fleet_rows

    release = threading.Event()
    monkeypatch.setattr(fleet_rows, "read_fleet", lambda config: release.wait(10) and two_hosts())

    async def dashboard_goes_away() -> None:
        read = asyncio.ensure_future(fleet_rows.read_in_thread(make_config_for_fleet()))
        await asyncio.sleep(0.05)
        read.cancel()

    started = time.monotonic()
    try:
        asyncio.run(dashboard_goes_away())
        assert time.monotonic() - started < 5
    finally:
        release.set()


def make_config_for_fleet():
    from pathlib import Path

    return replace(make_config(Path("/nonexistent")), fleet=FleetConfig(prometheus_url="http://127.0.0.1:9"))


@pytest.mark.parametrize("fleet", [False, True])
async def test_in_fleet_mode_this_box_s_rows_are_not_painted_before_the_dashboard(tmp_path, fleet, ollama_server):
    import io

    from console.config import EngineConfig
    from console.ui.start import show_first_rows

    config = make_config(tmp_path, engines=[EngineConfig(name="fake-ollama", url=ollama_server.url, kind="ollama")])
    if fleet:
        config = replace(config, fleet=FleetConfig(prometheus_url="http://127.0.0.1:9090"))
    terminal = io.StringIO()
    first, painted = await show_first_rows(TestContext(config), terminal, ascii_mode=True, size=(80, 24))
    first.cancel()
    assert painted is not fleet and ("fake-ollama" in terminal.getvalue()) is not fleet


async def test_an_error_from_prometheus_reaches_the_screen_inert_and_an_unforeseen_one_keeps_the_loop(
        tmp_path, monkeypatch):
    fleet = FakeFleet(EngineDeckError("Prometheus said \x1b]0;owned\x07 no"), ValueError("odd answer"), two_hosts())
    app = fleet_app(tmp_path, monkeypatch, fleet)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, until=lambda: "failed" in text_of(app, "fleet-line"))
        assert "\x1b" not in text_of(app, "fleet-line") and "\x07" not in text_of(app, "fleet-line")
        await pilot.press("r")
        await settle(pilot, until=lambda: "ValueError: odd answer" in text_of(app, "fleet-line"))
        await pilot.press("r")  # the loop is still there
        await settle(pilot, until=lambda: len(rows(app, "engines")) == 2)


def test_a_costly_fleet_is_read_less_often_to_keep_its_cpu_share():
    """The pace: the poll interval, never under 5 s, and for a refresh that cost C seconds of CPU, C / 0.1 % apart
    (at most 60 s): a 100-host fleet's ~80 ms every 60 s instead of every 5 s (bench/fleet_idle.py)."""
    from console.ui.fleet_rows import FLEET_CPU_SHARE, FLEET_MAX_INTERVAL_S, FLEET_MIN_INTERVAL_S, fleet_interval

    assert FLEET_CPU_SHARE == 0.001 and FLEET_MIN_INTERVAL_S == 5.0 and FLEET_MAX_INTERVAL_S == 60.0
    assert fleet_interval(1.0) == fleet_interval(1.0, 0.002) == 5.0  # a small fleet: the floor
    assert fleet_interval(1.0, 0.02) == pytest.approx(20.0)
    assert fleet_interval(1.0, 0.08) == 60.0  # capped: the rows are never older than a minute
    assert fleet_interval(120.0, 0.08) == 120.0  # a slower poll interval still wins


async def test_the_fleet_line_says_when_a_costly_fleet_is_read_less_often(tmp_path, monkeypatch):
    """A read that takes CPU (as 100 hosts' parse does) spaces the next one and the line says how far; `r` still
    reads at once."""
    import time

    fleet = FakeFleet(two_hosts())

    def costly(config: object) -> FleetView:
        until = time.thread_time() + 0.03  # 30 ms of CPU in the reading thread: 30 s apart at 0.1 %
        while time.thread_time() < until:
            pass
        return fleet(config)

    app = fleet_app(tmp_path, monkeypatch, costly, replace(QUIET, poll_interval_s=1.0))
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot, until=lambda: "(every" in text_of(app, "fleet-line"))
        every = int(text_of(app, "fleet-line").split("(every ")[1].split(" s)")[0])
        assert 30 <= every <= 60, text_of(app, "fleet-line")
        await pilot.press("r")
        await settle(pilot, until=lambda: fleet.reads == 2)
