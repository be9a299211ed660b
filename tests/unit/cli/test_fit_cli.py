"""`enginedeck load --dry-run` and the VRAM attribution of `enginedeck ps`, against a scripted llama-server served
from this test process (so the engine's process is this one) and a fake NVML that puts this process on a GPU."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from console.store.db import Store
from tests.fakes.gguf_files import gguf, llama_kvs
from tests.fakes.hostile_server import MODELS, HostileServer, Reply
from tests.stores import fit_records
from tests.unit.engines.test_openai_llamacpp import PROPS, SINGLE_MODELS
from tests.unit.telemetry.test_gpu import fake_nvml

GIB = 2**30
MIB = 2**20


def serve_single(server: HostileServer, model_path: Path, *, n_ctx: int = 1024, slots: int = 4) -> None:
    props = {**PROPS, "model_path": str(model_path), "total_slots": slots,
             "default_generation_settings": {"n_ctx": n_ctx}}
    server.route("GET", "/health", Reply(body=b'{"status":"ok"}'))
    server.route(*MODELS, Reply(body=json.dumps(SINGLE_MODELS)))
    server.route("GET", "/props", Reply(body=json.dumps(props)))


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """A GGUF header of a small llama (4 layers, 2 KV heads of 64, vocabulary 1000) over 64 MiB of weights."""
    path = tmp_path / "smol.gguf"
    path.write_bytes(gguf(llama_kvs(), [("token_embd.weight", 0), ("blk.0.attn_q.weight", 4096)], data=64 * MIB))
    return path


def gpu_with(monkeypatch: pytest.MonkeyPatch, free: int, pid_bytes: dict[int, int] | None = None) -> None:
    """A fake NVML with two 80 GiB GPUs of `free` bytes free in all, this process (or `pid_bytes`) on GPU 0."""
    nvml = fake_nvml()
    from collections import namedtuple

    mem = namedtuple("Mem", "used total free")
    total = 80 * GIB
    nvml.nvmlDeviceGetMemoryInfo = lambda h: mem(total - free // 2, total, free // 2)
    proc = namedtuple("Proc", "pid usedGpuMemory")
    procs = [proc(pid, used) for pid, used in (pid_bytes or {}).items()]
    nvml.nvmlDeviceGetComputeRunningProcesses = lambda h: procs if h == 0 else []
    monkeypatch.setitem(sys.modules, "pynvml", nvml)


def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)


def test_dry_run_on_the_gpu_fits(cli, capsys, monkeypatch, hostile_server: HostileServer, model_file: Path):
    serve_single(hostile_server, model_file)
    gpu_with(monkeypatch, free=100 * GIB)
    assert cli("load", hostile_server.url, "smollm2", "--dry-run", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    p = doc["predicted"]
    # 4 slots x 1024 cells x 4 layers x 2 KV heads x 64 x (K + V) x 2 bytes = 8 MiB; the output buffer (4 x 1000
    # x 4 bytes) is in pinned host memory when llama.cpp offloads, so not on the GPU
    assert (doc["verdict"], p["memory"], p["kv_cells"], p["kv_bytes"]) == ("fits", "gpu", 4096, 8 * MIB)
    assert p["weights_bytes"] == 64 * MIB and p["output_bytes"] == 0
    assert p["overhead_source"] == "default" and p["total_bytes"] == 64 * MIB + 8 * MIB + 512 * MIB
    assert doc["free_bytes"] == 100 * GIB and doc["shape_source"] == f"gguf:{model_file}"


def test_dry_run_spills_then_will_not_fit(cli, capsys, monkeypatch, hostile_server: HostileServer,
                                          model_file: Path):
    serve_single(hostile_server, model_file)
    gpu_with(monkeypatch, free=300 * MIB)
    assert cli("load", hostile_server.url, "smollm2", "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "will spill" in out and "to the CPU" in out and "[default]" in out
    gpu_with(monkeypatch, free=GIB)
    # 256 slots x 64k tokens of KV: far past both the GPU and this box's RAM
    assert cli("load", hostile_server.url, "smollm2", "--dry-run", "--slots", "256", "--ctx", "65536",
               "--json") == 1
    assert json.loads(capsys.readouterr().out)["verdict"] == "will not fit"


def test_dry_run_on_the_cpu_and_read_only(cli, capsys, monkeypatch, hostile_server: HostileServer, model_file: Path):
    serve_single(hostile_server, model_file)
    no_gpu(monkeypatch)
    assert cli("load", hostile_server.url, "smollm2", "--dry-run", "--read-only", "--cache-type", "q8_0") == 0
    out = capsys.readouterr().out
    assert "in host memory" in out and "fits" in out and "overhead 40.0 MB [default]" in out


def test_dry_run_uses_the_fitted_overhead(cli, capsys, monkeypatch, hostile_server: HostileServer,
                                          model_file: Path, tmp_path: Path):
    import asyncio

    async def seed() -> None:
        store = await Store.open(tmp_path / "data" / "enginedeck.db")
        for extra in (100, 110, 120):
            await store.fit_records.record(engine="x", engine_kind="llamacpp", model="m", memory="host", context=1,
                                           slots=1, predicted_model=1000, overhead=0, measured=1000 + extra * MIB,
                                           measured_source="rss:pid 1")
        await store.close()

    asyncio.run(seed())
    serve_single(hostile_server, model_file)
    no_gpu(monkeypatch)
    assert cli("load", hostile_server.url, "smollm2", "--dry-run", "--json") == 0
    p = json.loads(capsys.readouterr().out)["predicted"]
    assert p["overhead_source"] == "fitted from 3 loads" and p["overhead_bytes"] == 110 * MIB  # the median residual


@pytest.mark.parametrize(("args", "message"), [
    (("nope", "--dry-run"), "does not list 'nope'"),
    (("smollm2", "--ctx", "4096"), "go with --dry-run"),
])
def test_dry_run_refusals_are_one_line(cli, capsys, monkeypatch, hostile_server: HostileServer, model_file: Path,
                                       args, message):
    serve_single(hostile_server, model_file)
    no_gpu(monkeypatch)
    assert cli("load", hostile_server.url, *args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_dry_run_of_a_hostile_model_file(cli, capsys, monkeypatch, hostile_server: HostileServer, tmp_path: Path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (2**62).to_bytes(8, "little") * 2)
    serve_single(hostile_server, bad)
    no_gpu(monkeypatch)
    assert cli("load", hostile_server.url, "smollm2", "--dry-run") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "past the bounds" in err


def test_dry_run_of_a_remote_llama_server_says_why(cli, capsys, monkeypatch, hostile_server: HostileServer,
                                                    model_file: Path):
    """An engine not on loopback: its model file is on another host, so nothing is read (nor guessed)."""
    serve_single(hostile_server, model_file)
    no_gpu(monkeypatch)
    remote = hostile_server.url.replace("127.0.0.1", "localhost.invalid")
    assert cli("load", "far", "smollm2", "--dry-run", engines={"far": f"{remote}=llamacpp"}) == 1
    assert "is on another host" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_bad_numbers_are_usage_errors(cli, capsys, value):
    with pytest.raises(SystemExit) as info:
        cli("load", "http://127.0.0.1:1", "m", "--dry-run", "--slots", value)
    assert info.value.code == 2


def test_ps_attributes_nvml_memory_of_the_engine_process(cli, capsys, monkeypatch, hostile_server: HostileServer,
                                                         model_file: Path):
    serve_single(hostile_server, model_file)
    gpu_with(monkeypatch, free=70 * GIB, pid_bytes={os.getpid(): 3 * GIB + 512 * MIB, 424242: GIB})
    assert cli("ps", hostile_server.url, "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)["loaded"]
    assert row["name"] == "smollm2" and row["size_vram"] == 3 * GIB + 512 * MIB
    assert row["size_vram_source"] == f"nvml:pid {os.getpid()}"
    assert cli("ps", hostile_server.url) == 0
    assert "3.5 GB (nvml)" in capsys.readouterr().out


def test_ps_without_a_gpu_leaves_vram_unknown(cli, capsys, monkeypatch, hostile_server: HostileServer,
                                              model_file: Path):
    serve_single(hostile_server, model_file)
    no_gpu(monkeypatch)
    assert cli("ps", hostile_server.url, "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)["loaded"]
    assert row["size_vram"] is None and row["size_vram_source"] is None


def test_ps_keeps_and_labels_what_ollama_reports(cli, capsys, monkeypatch, ollama_server):
    gpu_with(monkeypatch, free=70 * GIB, pid_bytes={os.getpid(): 9 * GIB})
    assert cli("load", ollama_server.url, "llama3.2:1b") == 0
    capsys.readouterr()
    assert cli("ps", ollama_server.url, "--json") == 0
    rows = json.loads(capsys.readouterr().out)["loaded"]
    assert rows and all(r["size_vram_source"] == "engine" and r["size_vram"] != 9 * GIB for r in rows)


def test_load_and_swap_leave_fit_records(cli, capsys, monkeypatch, ollama_server, tmp_path: Path):
    """Every load, a swap's too, stores the prediction beside what Ollama says the model holds."""

    no_gpu(monkeypatch)
    assert cli("load", ollama_server.url, "llama3.2:1b") == 0
    assert cli("swap", ollama_server.url, "llama3.2:1b", "qwen3:4b") == 0
    capsys.readouterr()

    got = fit_records(tmp_path / "data")
    assert [(r.model, r.engine_kind, r.measured_source, r.memory) for r in got] == [
        ("qwen3:4b", "ollama", "ollama /api/ps", "gpu"), ("llama3.2:1b", "ollama", "ollama /api/ps", "gpu")]
    assert all(r.measured > 0 and r.predicted_model > 0 and (r.context, r.slots) == (4096, 1) for r in got)
