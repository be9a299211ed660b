"""Which loaded model a GPU process's memory belongs to, where the engine does not say (llama.cpp, vLLM).

Ollama reports each model's `size_vram`; llama-server and vLLM do not, but NVML gives the memory of each process,
and an engine serves its models from processes of its own: one model per process for llama-server with `-m` and
for vLLM (whose LoRA adapters share their base model's memory), one child per model for the llama.cpp router. So:

- a model the engine reports keeps the engine's figure (`size_vram_source: "engine"`);
- an engine with one model (LoRA adapters aside: they share their base's memory) gets all of its processes' GPU
  memory (`"nvml:pid 1234"`);
- a router's model gets the memory of the child process whose command line names it (its `--alias`, or the
  file name of its `-m`/`--model`);
- anything else (several models in one process, a remote engine) stays unknown: no figure is better than a guess.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import PurePath

import psutil

from console.engines.base import LoadedModel
from console.fit.measure import Measured, gpu_use
from console.telemetry.gpu import GpuSnapshot
from console.telemetry.processes import EngineProcess

ENGINE_SAYS = "engine"
RESIDENT = ("loaded", "sleeping", None)


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def names_in(cmdline: Sequence[str]) -> set[str]:
    """The model names a llama-server command line serves: its --alias values and the stems of its -m files."""
    names: set[str] = set()
    for flag, value in itertools.pairwise(cmdline):
        if flag in ("-a", "--alias"):
            names.update(v for v in value.split(",") if v)
        elif flag in ("-m", "--model"):
            names.add(PurePath(value).stem)
    return names


def assign(loaded: Sequence[LoadedModel], on_gpu: Mapping[int, int], *,
           cmdlines: Mapping[int, Sequence[str]] | None = None) -> dict[int, tuple[int, ...]]:
    """{index in `loaded`: the GPU pids whose memory is that model's}, by the rules above; a model the engine
    reports itself, or one that cannot be told apart, has no entry. `cmdlines` ({pid: argv}) is read from /proc
    when not given (tests pass their own)."""
    if not on_gpu:
        return {}
    bases = [i for i, m in enumerate(loaded) if not m.details.get("parent")]  # a LoRA adapter shares its base's
    resident = [i for i in bases if loaded[i].size_vram is None and loaded[i].status in RESIDENT]
    if len(resident) == 1 and len(bases) == 1:
        return {resident[0]: tuple(sorted(on_gpu))}
    argv = cmdlines if cmdlines is not None else {pid: _cmdline(pid) for pid in on_gpu}
    found = {i: tuple(sorted(pid for pid in on_gpu if loaded[i].name in names_in(argv.get(pid, ()))))
             for i in resident}
    return {i: pids for i, pids in found.items() if pids}


def attribute(loaded: Sequence[LoadedModel], on_gpu: Mapping[int, int], *,
              cmdlines: Mapping[int, Sequence[str]] | None = None) -> list[LoadedModel]:
    """`loaded` with `size_vram` and `size_vram_source` filled in from `on_gpu`, the engine's {pid: GPU bytes}."""
    out = [replace(m, size_vram_source=ENGINE_SAYS) if m.size_vram is not None and m.size_vram_source is None
           else m for m in loaded]
    for i, pids in assign(out, on_gpu, cmdlines=cmdlines).items():
        measured = Measured(sum(on_gpu[p] for p in pids), "gpu", pids)
        out[i] = replace(out[i], size_vram=measured.bytes, size_vram_source=measured.source)
    return out


def attribute_engine(engine: str, loaded: Sequence[LoadedModel], gpu: GpuSnapshot,
                     processes: Sequence[EngineProcess]) -> list[LoadedModel]:
    """`attribute` for the engine named `engine`, from a GPU snapshot and this host's engine processes."""
    return attribute(loaded, gpu_use(engine, gpu, processes))
