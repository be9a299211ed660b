"""Issue 15's figures in the exporter: pressure through console/engines/pressure.py (slots, prompt-cache hits) and
the GPU energy counter."""

from __future__ import annotations

from console.engines.base import EngineInfo, Health, LoadedModel, SlotState
from console.engines.metrics import parse_metrics
from console.engines.poll import EngineStatus
from console.telemetry.gpu import GpuSample, GpuSnapshot
from console.watch.collect import Snapshot, pressure_of
from tests.unit.watch.test_exposition import samples

LLAMA = "llamacpp:prompt_tokens_total 48\nllamacpp:prompt_tokens_cached_total 46\n" \
        "llamacpp:requests_processing 1\nllamacpp:requests_deferred 0\n"


def test_slots_hits_and_energy_are_exported():
    info = EngineInfo("llamacpp", "http://x", "b1", Health.OK)
    s = EngineStatus(name="l", url="http://x", kind="llamacpp", info=info, loaded=(LoadedModel("smol"),),
                     metrics=parse_metrics(LLAMA, "llamacpp"),
                     slots=(SlotState(0, 1024, True), SlotState(1, 1024, False)))
    p = pressure_of(s)
    assert (p.running, p.waiting, p.slots_busy, p.slots_total) == (1, 0, 1, 2)
    assert p.kv_cache_usage is None  # this build exports none: the reason is in ps --json
    gpu = GpuSnapshot(available=True, gpus=(GpuSample(0, "H100", "GPU-1", 50.0, 10.0, 2**30, 2**34, 61.0, 300.0,
                                                      700.0, energy_mj=123_456_789),))
    got = samples(Snapshot(taken_at=0, engines=(s,), pressure={"l": p}, gpus=gpu))
    assert got["enginedeck_engine_slots_busy"] == [({"engine": "l"}, 1.0)]
    assert got["enginedeck_engine_slots_total"] == [({"engine": "l"}, 2.0)]
    [(_, hit)] = got["enginedeck_engine_prompt_cache_hit_ratio"]
    assert abs(hit - 46 / 94) < 1e-3
    [(_, joules)] = got["enginedeck_gpu_energy_joules_total"]
    assert joules == 123_456.789


async def test_the_collector_carries_truth_findings_one_collection_behind(tmp_path):
    from console.config import Config
    from console.watch.collect import Collector
    from console.watch.truth_feed import TruthFindings
    from tests.unit.watch.fakes import StubEngine, StubRegistry

    half = StubEngine("o", loaded=[LoadedModel("gemma3:4b", size=10 * 2**30, size_vram=6 * 2**30)])
    collector = Collector(StubRegistry([half]), deadline_s=2.0, findings=TruthFindings(Config()))
    first = await collector.collect()
    assert first.findings == ()  # nothing judged yet: the findings read the collection before
    second = await collector.collect()
    assert [(f.kind, f.engine) for f in second.findings] == [("partly_on_cpu", "o")]
    got = samples(second)
    assert got["enginedeck_findings"] == [({"engine": "o", "kind": "partly_on_cpu"}, 1.0)]
    whole = StubEngine("o", loaded=[LoadedModel("gemma3:4b", size=10, size_vram=10)])
    collector = Collector(StubRegistry([whole]), deadline_s=2.0, findings=TruthFindings(Config()))
    await collector.collect()
    assert (await collector.collect()).findings == ()
