"""The probe with an EnergyMeter: idle measured once before the run, each level's joules per output token kept
with the level's figures (and so in probe_levels.figures_json)."""

from __future__ import annotations

import pytest

from console.config import SLO, EngineConfig
from console.engines.registry import build_engine
from console.probe.figures import LevelFigures
from console.probe.ladder import Probe
from console.probe.params import ProbeParams
from console.telemetry.energy import COUNTER, EnergyMeter
from tests.fakes.ollama_server import FakeModel, ollama_contract_server, slow
from tests.unit.test_turn_energy import LiveBox


async def test_each_level_has_its_energy(store):
    box = LiveBox(50.0)
    meter = EnergyMeter(box, idle_s=0.1)
    idles: list[float] = []
    real_idle = meter.measure_idle

    def idle_then_load():  # the run's idle is measured at 50 W, then the engine "works" at 250 W
        idle = real_idle()
        idles.append(idle.watts)
        box.set(250.0)
        return idle

    meter.measure_idle = idle_then_load  # type: ignore[method-assign]
    with ollama_contract_server([FakeModel("llama3.2:1b", scenario=slow(0.01, 0.02))]) as fake:
        params = ProbeParams(levels=(1, 2), requests=4, max_tokens=8)
        engine = build_engine(EngineConfig(name="o", url=fake.url, kind="ollama"), "ollama",
                              max_connections=params.connections)
        run_id = await store.probes.start(engine="o", engine_kind="ollama", engine_version="x", model="llama3.2:1b",
                                          params={}, slo={})

        async def save(fig: LevelFigures) -> None:
            await store.probes.save_level(run_id, fig.concurrency, fig.to_dict())

        try:
            result = await Probe(engine, "llama3.2:1b", params, SLO(), on_level=save, energy=meter).run()
        finally:
            await engine.aclose()
    assert len(idles) == 1 and idles[0] == pytest.approx(50.0, rel=0.05)
    for fig in result.levels:
        e = fig.energy
        assert e is not None and e["method"] == COUNTER and e["tokens"] == fig.tokens_out_total > 0
        assert e["idle_w"] == pytest.approx(50.0, rel=0.05)
        assert e["net_j"] == pytest.approx(200.0 * e["window_s"], rel=0.2)
        assert e["j_per_token"] == pytest.approx(e["net_j"] / e["tokens"], rel=1e-3)
    saved = await store.probes.get(run_id)
    assert [lv["energy"]["j_per_token"] for lv in saved.levels] == [f.energy["j_per_token"] for f in result.levels]
    assert LevelFigures.from_dict(saved.levels[0]).energy == result.levels[0].energy


async def test_without_a_meter_levels_have_no_energy():
    with ollama_contract_server([FakeModel("llama3.2:1b")]) as fake:
        params = ProbeParams(levels=(1,), requests=2, max_tokens=4)
        engine = build_engine(EngineConfig(name="o", url=fake.url, kind="ollama"), "ollama")
        try:
            result = await Probe(engine, "llama3.2:1b", params, SLO()).run()
        finally:
            await engine.aclose()
    assert [f.energy for f in result.levels] == [None]
