"""NVML's per-process memory given to the model an engine serves, with its source named; never a guess."""

import os

import pytest

from console.engines.base import LoadedModel
from console.fit.attribute import attribute, attribute_engine, names_in
from console.fit.measure import local_url, measure_engine
from console.telemetry.gpu import GpuProcess, GpuSample, GpuSnapshot
from console.telemetry.processes import EngineProcess

GIB = 2**30


def proc(pid: int, engine: str | None, name: str = "llama-server") -> EngineProcess:
    return EngineProcess(pid=pid, name=name, kind="llamacpp", engine=engine, cmdline=name, rss=0, uptime_s=1.0,
                         listening=(), egress=())


def snapshot(*procs: tuple[int, int | None]) -> GpuSnapshot:
    gpu = GpuSample(0, "NVIDIA H100", "GPU-0", 0.0, 0.0, 10 * GIB, 80 * GIB, 30.0, 100.0, 700.0,
                    processes=tuple(GpuProcess(pid, used, "compute") for pid, used in procs))
    return GpuSnapshot(available=True, gpus=(gpu,))


def test_single_model_engine_gets_its_process_memory():
    loaded = [LoadedModel("smollm2", size=96_576_768, status="loaded")]
    out = attribute_engine("llama", loaded, snapshot((1234, 3 * GIB), (999, GIB)), [proc(1234, "llama")])
    assert out[0].size_vram == 3 * GIB and out[0].size_vram_source == "nvml:pid 1234"


def test_engine_figure_is_kept_and_labelled():
    loaded = [LoadedModel("llama3.2:1b", size=2 * GIB, size_vram=GIB)]
    out = attribute(loaded, {1234: 5 * GIB})
    assert out[0].size_vram == GIB and out[0].size_vram_source == "engine"


def test_lora_adapters_share_their_base():
    loaded = [LoadedModel("smollm2", status="loaded"),
              LoadedModel("lora-a", status="loaded", details={"parent": "smollm2"})]
    out = attribute(loaded, {10: 2 * GIB, 11: GIB})
    assert out[0].size_vram == 3 * GIB and out[0].size_vram_source == "nvml:pid 10+11"
    assert out[1].size_vram is None


def test_router_children_by_command_line():
    loaded = [LoadedModel("smol-a", status="loaded"), LoadedModel("smol-b", status="loaded"),
              LoadedModel("smol-c", status="unloaded")]
    argv = {21: ["llama-server", "-m", "/models/smol-a.gguf", "--port", "1"],
            22: ["llama-server", "--alias", "smol-b", "-m", "/m/x.gguf"]}
    out = attribute(loaded, {21: GIB, 22: 2 * GIB}, cmdlines=argv)
    assert [(m.size_vram, m.size_vram_source) for m in out] == [
        (GIB, "nvml:pid 21"), (2 * GIB, "nvml:pid 22"), (None, None)]


def test_several_models_in_one_process_stay_unknown():
    loaded = [LoadedModel("a", status="loaded"), LoadedModel("b", status="loaded")]
    out = attribute(loaded, {5: GIB}, cmdlines={5: ["vllm", "serve"]})
    assert all(m.size_vram is None for m in out)


def test_no_gpu_or_nvml_blind_process():
    loaded = [LoadedModel("smollm2", status="loaded")]
    assert attribute_engine("llama", loaded, GpuSnapshot(available=False, reason="no GPU"),
                            [proc(1, "llama")])[0].size_vram is None
    assert attribute_engine("llama", loaded, snapshot((1, None)), [proc(1, "llama")])[0].size_vram is None
    assert attribute_engine("other", loaded, snapshot((1, GIB)), [proc(1, "llama")])[0].size_vram is None


def test_names_in():
    assert names_in(["llama-server", "-m", "/a/b/SmolLM2.Q4.gguf", "-a", "x,y"]) == {"SmolLM2.Q4", "x", "y"}


@pytest.mark.parametrize(("url", "local"), [("http://127.0.0.1:8080", True), ("http://localhost:1", True),
                                           ("http://[::1]:8000", True), ("http://10.0.0.5:8080", False),
                                           ("http://gpu-box:8080", False), ("http://[bad", False)])
def test_local_url(url, local):
    assert local_url(url) is local


def test_measure_falls_back_to_rss_of_the_tree():
    me = os.getpid()
    m = measure_engine("me", GpuSnapshot(available=False), [proc(me, "me", "python")])
    assert m is not None and m.memory == "host" and m.bytes > 0 and m.source.startswith(f"rss:pid {me}")
    assert measure_engine("nobody", GpuSnapshot(available=False), [proc(me, "me")]) is None
    gpu = measure_engine("me", snapshot((me, GIB)), [proc(me, "me")])
    assert gpu is not None and (gpu.bytes, gpu.memory, gpu.source) == (GIB, "gpu", f"nvml:pid {me}")
