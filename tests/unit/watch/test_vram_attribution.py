"""The exporter's model VRAM for an engine that does not report it (vLLM, llama.cpp): NVML's memory of the
process that listens on the engine's port, here this test's own process behind a loopback socket."""

from __future__ import annotations

import os
import socket

from console.engines.base import LoadedModel
from console.telemetry.gpu import GpuProcess, GpuSample, GpuSnapshot
from console.watch.collect import Collector
from console.watch.exposition import families
from tests.unit.watch.fakes import StubEngine, StubRegistry

GIB = 2**30


class FixedGpu:
    def __init__(self, snapshot: GpuSnapshot) -> None:
        self.snapshot = snapshot

    def sample(self) -> GpuSnapshot:
        return self.snapshot


def on_gpu(pid: int, used: int) -> GpuSnapshot:
    return GpuSnapshot(available=True, gpus=(GpuSample(0, "NVIDIA H100", "GPU-0", 0.0, 0.0, 10 * GIB, 80 * GIB,
                                                       30.0, 100.0, 700.0, (GpuProcess(pid, used, "compute"),)),))


async def test_vllm_model_vram_is_its_process_memory():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        engine = StubEngine("vllm-a", loaded=[LoadedModel("Qwen/Qwen3-8B", status="loaded")])
        engine.base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        collector = Collector(StubRegistry([engine]), gpu=FixedGpu(on_gpu(os.getpid(), 38 * GIB)), deadline_s=5)
        snap = await collector.collect()
    (status,) = snap.engines
    (model,) = status.loaded
    assert (model.size_vram, model.size_vram_source) == (38 * GIB, f"nvml:pid {os.getpid()}")
    vram = {tuple(s.labels.values()): s.value for f in families(snap, host="box", folded_total={})
            for s in f.samples if s.name == "enginedeck_model_vram_bytes"}
    assert vram == {("vllm-a", "Qwen/Qwen3-8B"): 38 * GIB}


async def test_no_gpu_no_attribution():
    engine = StubEngine("vllm-a", loaded=[LoadedModel("m", status="loaded")])
    snap = await Collector(StubRegistry([engine]), gpu=FixedGpu(GpuSnapshot(available=False)), deadline_s=5).collect()
    assert snap.engines[0].loaded[0].size_vram is None
