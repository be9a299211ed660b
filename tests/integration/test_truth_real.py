"""Findings and pressure against the real llama-server of the engine lab.

The lab box has no GPU, so "partly on the CPU" is given a GPU snapshot that says one is there; everything else
(the process's arguments, the GGUF file's layer count, /props, /slots) is read from the running server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.config import Config, EngineConfig, Timeouts
from console.engines.llamacpp import LlamaCppEngine
from console.engines.poll import poll_engine
from console.engines.pressure import pressure_of
from console.telemetry.gpu import GpuSample, GpuSnapshot
from console.telemetry.processes import engine_processes, ports_by_engine
from console.truth.findings import detect
from console.truth.gather import collect
from scripts import lab as labkit
from tests.lab_fixtures import THREADS, LabServer, _serve

pytestmark = pytest.mark.llama

A_GPU = GpuSnapshot(available=True, gpus=(GpuSample(0, "fake", "GPU-0", 0.0, 0.0, 0, 80 * 2**30, 40.0, 50.0, 700.0),))


@pytest.fixture(scope="module")
def llama_ngl3(lab: labkit.Manifest, lab_logs: Path) -> Iterator[LabServer]:
    """llama-server asked to put 3 of SmolLM2's 31 layers on the GPU (ignored on this CPU box, but asked)."""
    def make(port: int) -> labkit.Launch:
        launch = labkit.llama_launch(lab, port, parallel=1, ctx=2048, threads=THREADS)
        return dataclasses.replace(launch, argv=(*launch.argv, "-ngl", "3"))

    for launch, pid, log in _serve(make, lab_logs, "llama-server-ngl3"):
        yield LabServer(url=launch.url, model=labkit.SERVED_NAME, log_path=log, pid=pid)


async def findings_of(server: LabServer, gpu: GpuSnapshot | None = None) -> list:
    engine = LlamaCppEngine(EngineConfig(name="lab", url=server.url, kind="llamacpp",
                                         timeouts=Timeouts.within(60.0, connect_s=3.0)))
    async with engine:
        status = await poll_engine(engine, deadline_s=30)
    processes = engine_processes(ports_by_engine({"lab": server.url}))
    assert any(p.pid == server.pid and p.engine == "lab" for p in processes)
    inputs = await collect([status], Config(), gpu=gpu or GpuSnapshot(available=False, reason="none"),
                           processes=processes)
    return detect(inputs)


async def test_four_slots_share_the_context(llama_server: LabServer):
    """-np 4 -c 4096: each slot holds 1024 tokens; the finding says so, with both numbers' sources."""
    [f] = [f for f in await findings_of(llama_server) if f.kind == "context_short"]
    assert [e.value for e in f.evidence] == [4096, 1024]
    assert "-c 4096" in f.evidence[0].source and "/slots" in f.evidence[1].source


async def test_one_slot_holds_the_whole_context(llama_server_np1: LabServer):
    assert [f.kind for f in await findings_of(llama_server_np1)] == []


async def test_gpu_layers_below_the_model_layers(llama_ngl3: LabServer):
    [f] = [f for f in await findings_of(llama_ngl3, A_GPU) if f.kind == "partly_on_cpu"]
    assert [e.value for e in f.evidence] == [3, 31]  # SmolLM2-135M: 30 blocks + the output layer
    assert "-ngl 3" in f.evidence[0].source and "GGUF" in f.evidence[1].source


async def test_no_gpu_layer_flag_is_not_a_finding(llama_server_np1: LabServer):
    assert [f.kind for f in await findings_of(llama_server_np1, A_GPU)] == []


async def test_pressure_of_the_real_server(llama_server: LabServer):
    engine = LlamaCppEngine(EngineConfig(name="lab", url=llama_server.url, kind="llamacpp",
                                         timeouts=Timeouts.within(60.0, connect_s=3.0)))
    async with engine:
        status = await poll_engine(engine, deadline_s=30)
    p = pressure_of(status)
    assert p.value("slots_total") == 4 and p.value("slots_busy") is not None
    assert p.value("running") is not None and p.get("running").source == "llamacpp:requests_processing"
    assert p.get("kv_cache_pct").missing  # this build exports no KV-cache use, and says so


def test_findings_command_against_the_real_server(llama_server: LabServer, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """`enginedeck findings --json` as a user runs it: the real server's four slots share -c 4096."""
    import json

    from console.cli import main

    (tmp_path / "empty.toml").write_text("")
    monkeypatch.setenv("ENGINEDECK_CONFIG", str(tmp_path / "empty.toml"))
    monkeypatch.setenv("ENGINEDECK_DATA_DIR", str(tmp_path / "data"))
    assert main(["findings", "--json", "--engine", llama_server.url, "--no-discover"]) == 0
    found = json.loads(capsys.readouterr().out)["findings"]
    short = [f for f in found if f["kind"] == "context_short"]
    assert len(short) == 1 and [e["value"] for e in short[0]["evidence"]] == [4096, 1024]
