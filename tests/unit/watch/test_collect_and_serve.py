"""A collection is bounded by its deadline, and so is a scrape of the exporter: a hung engine reads as down."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest

from console.engines.base import LoadedModel, MetricsSnapshot
from console.errors import ConfigError
from console.watch.collect import Collector
from console.watch.exporter import parse_listen, serve
from tests.unit.watch.fakes import StubEngine, StubRegistry


async def test_a_hung_engine_costs_the_deadline_and_reads_as_down():
    registry = StubRegistry([StubEngine("ok", loaded=[LoadedModel("m")],
                                        metrics=MetricsSnapshot(taken_at=0, running=2, waiting=7)),
                             StubEngine("hung", hang=True)])
    collector = Collector(registry, deadline_s=0.5)
    started = time.monotonic()
    snap = await collector.collect()
    assert time.monotonic() - started < 3.0  # generous: the deadline is 0.5 s
    by_name = {s.name: s for s in snap.engines}
    assert by_name["ok"].loaded == (LoadedModel("m"),)
    assert by_name["hung"].error and "no answer within" in by_name["hung"].error
    assert snap.pressure["ok"].waiting == 7 and snap.pressure["hung"].running is None


async def test_an_engine_slow_in_every_call_costs_its_own_row_not_the_part():
    # Each call within the per-call deadline, the whole poll past the collection's: only this engine is late.
    slow = StubEngine("slow", hang_models=0.35, metrics=MetricsSnapshot(taken_at=0))
    slow.metrics = lambda: asyncio.sleep(0.35, MetricsSnapshot(taken_at=0))  # type: ignore[method-assign]
    collector = Collector(StubRegistry([StubEngine("ok"), slow]), deadline_s=0.5)
    snap = await collector.collect()
    assert snap.late == ()
    by_name = {s.name: s for s in snap.engines}
    assert by_name["ok"].error is None and "no answer within 0.4 s" in (by_name["slow"].error or "")


async def test_a_part_past_the_deadline_is_named_late_and_the_rest_still_arrives():
    class SlowFindings:
        async def findings(self):
            await asyncio.sleep(30)
            return []

    collector = Collector(StubRegistry([StubEngine("ok")]), deadline_s=0.3, findings=SlowFindings())
    snap = await collector.collect()
    assert snap.late == ("findings",) and [s.name for s in snap.engines] == ["ok"]


async def test_concurrent_callers_share_one_collection():
    calls = 0

    class Counting(StubRegistry):
        async def refresh(self, on_entry=None):
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return await super().refresh()

    collector = Collector(Counting([StubEngine("ok")]), deadline_s=1)
    a, b = await asyncio.gather(collector.collect(), collector.collect())
    assert calls == 1 and a is b


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=20) as resp:
        return resp.read().decode()


async def test_the_exporter_answers_a_scrape_within_the_deadline_with_a_hung_engine():
    registry = StubRegistry([StubEngine("ok", loaded=[LoadedModel("llama3")]), StubEngine("hung", hang=True)])
    collector = Collector(registry, deadline_s=0.5)
    server, thread = serve(collector, asyncio.get_running_loop(), host="127.0.0.1", port=0, host_name="box-a")
    try:
        started = time.monotonic()
        text = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.server_port}/metrics")
        assert time.monotonic() - started < 5.0  # generous: 0.5 s deadline
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert 'enginedeck_engine_up{engine="ok",kind="vllm"} 1.0' in text
    assert 'enginedeck_engine_up{engine="hung",kind="vllm"} 0.0' in text
    assert 'enginedeck_model_loaded{engine="ok",model="llama3"} 1.0' in text
    assert 'enginedeck_exporter_info{host="box-a",version="' in text


@pytest.mark.parametrize("bad", ["9464", "host:", ":9464", "127.0.0.1:99999", "127.0.0.1:http"])
def test_a_bad_listen_address_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        parse_listen(bad)


def test_listen_forms():
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)


async def test_probe_results_are_the_newest_finished_run_per_engine_and_model(store):
    async def opener():
        return store

    for usable in (4, 8):
        run = await store.probes.start(engine="e", engine_kind="vllm", engine_version="1", model="m", params={},
                                       slo={})
        await store.probes.finish(run, "complete", {"max_usable_concurrency": usable, "knee": usable - 1})
    await store.probes.start(engine="e", engine_kind="vllm", engine_version="1", model="m", params={}, slo={})
    snap = await Collector(StubRegistry([]), store=opener, deadline_s=2).collect()
    (result,) = snap.probes
    assert (result.engine, result.model, result.max_usable_concurrency, result.knee) == ("e", "m", 8, 7)
