"""Will this model fit on this engine: its shape read where the engine keeps it, the prediction, and the verdict
against what is free now.

Where the shape comes from, per engine kind:
- llama.cpp: the GGUF file itself, read on this host (the path from /props, or the router's models list), so only
  for an engine on loopback; the context and slots from the server (/props) or from the router's arguments for
  the model (`-c`, `-np`, `-ctk`, `-ctv`), else llama-server's defaults (the model's training context, 4 slots);
- Ollama: `show` (its model_info is the GGUF metadata) and the size `list` gives; context 4096 and 1 slot (Ollama's
  defaults) unless given;
- vLLM: the Hugging Face folder it was started with (the model's `root`), on this host; `max_model_len` per slot.
Other kinds: no shape, and the answer says why.

The verdict: on a GPU, `fits` when the need is at most the free VRAM; otherwise llama.cpp and Ollama can keep part of
the layers in host memory (`spills`: it runs, slowly) when the rest fits in available RAM, and vLLM cannot start
(`will not fit`). On a CPU-only engine: `fits` within the available RAM, else `will not fit` (it would swap).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from console.engines.base import Engine
from console.errors import EngineDeckError
from console.fit.calibrate import Overhead
from console.fit.gguf import read_header
from console.fit.hf import shape_from_hf
from console.fit.measure import local_url
from console.fit.predict import ModelShape, Prediction, ShapeError, predict, shape_from_gguf, shape_from_metadata

LLAMA_DEFAULT_SLOTS = 4
OLLAMA_DEFAULT_CTX = 4096
FITS, SPILLS, WONT_FIT, UNKNOWN = "fits", "spills", "will not fit", "unknown"
SPILLING_KINDS = ("llamacpp", "ollama")  # engines that keep the layers that do not fit in host memory


class CannotPredict(EngineDeckError):
    """The engine's model cannot be read here (remote engine, unknown kind, missing file): the message says why."""


@dataclass(frozen=True)
class Setting:
    """How the model is (or will be) served: tokens per slot, slots, KV cache types."""

    context: int
    slots: int
    cache_k: str = "f16"
    cache_v: str = "f16"


@dataclass(frozen=True)
class Answer:
    engine: str
    engine_kind: str
    model: str
    verdict: str  # fits / spills / will not fit / unknown
    prediction: Prediction | None = None
    free_bytes: int | None = None  # free VRAM on a GPU, available RAM on the host
    host_available: int | None = None
    shape_source: str | None = None
    notes: tuple[str, ...] = field(default=())


def _flag(args: Sequence[str], *names: str) -> str | None:
    for flag, value in itertools.pairwise(args):
        if flag in names:
            return value
    return None


def _int_flag(args: Sequence[str], *names: str) -> int | None:
    value = _flag(args, *names)
    return int(value) if value is not None and value.isdigit() else None


def llama_setting(args: Sequence[str], context_train: int | None) -> Setting:
    """A llama-server command line's context per slot, slots and cache types, with llama-server's defaults."""
    slots = _int_flag(args, "-np", "--parallel") or LLAMA_DEFAULT_SLOTS
    total = _int_flag(args, "-c", "--ctx-size") or context_train or 4096
    return Setting(context=-(-total // slots), slots=slots,
                   cache_k=_flag(args, "-ctk", "--cache-type-k") or "f16",
                   cache_v=_flag(args, "-ctv", "--cache-type-v") or "f16")


def _gguf_shape(path: str) -> ModelShape:
    return shape_from_gguf(read_header(path), f"gguf:{path}")


async def _llamacpp(engine: Engine, model: str) -> tuple[ModelShape, Setting]:
    info = await engine.info()
    entry = next((m for m in await engine.list_models() if m.name == model), None)
    if entry is None:
        raise CannotPredict(f"{engine.name} does not list {model!r}", hint="check the name with `enginedeck models`")
    router = bool(info.extra.get("router"))
    args = entry.details.get("args") if router else None
    args = [a for a in args if isinstance(a, str)] if isinstance(args, list) else []
    path = _flag(args, "-m", "--model") or entry.details.get("path") if router else info.extra.get("model_path")
    if not isinstance(path, str) or not path:
        raise CannotPredict(f"{engine.name} does not say where {model!r} is on disk")
    shape = await asyncio.to_thread(_gguf_shape, path)  # a large vocabulary takes a second to walk
    if router:
        return shape, llama_setting(args, shape.context_train)
    slots = info.extra.get("total_slots")
    n_ctx = info.extra.get("n_ctx")  # per slot (/props default_generation_settings)
    slots = slots if isinstance(slots, int) and slots > 0 else LLAMA_DEFAULT_SLOTS
    return shape, Setting(context=n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else shape.context_train or 4096,
                          slots=slots)


async def _ollama(engine: Engine, model: str) -> tuple[ModelShape, Setting]:
    detail = await engine.show(model)
    listed = next((m for m in await engine.list_models() if m.name == model), None)
    if listed is None or not listed.size:
        raise CannotPredict(f"{engine.name} does not give the size of {model!r}")
    shape = shape_from_metadata(detail.model_info, weights_bytes=listed.size, source="ollama show")
    return shape, Setting(context=OLLAMA_DEFAULT_CTX, slots=1)


async def _vllm(engine: Engine, model: str) -> tuple[ModelShape, Setting]:
    entry = next((m for m in await engine.list_models() if m.name == model), None)
    if entry is None:
        raise CannotPredict(f"{engine.name} does not list {model!r}")
    root = entry.details.get("root")
    if not isinstance(root, str) or not root.startswith("/"):
        raise CannotPredict(f"{engine.name} serves {model!r} from {root!r}, not from a folder enginedeck can read")
    shape, cache = await asyncio.to_thread(shape_from_hf, root)
    return shape, Setting(context=entry.context_length or shape.context_train or 2048, slots=1, cache_k=cache,
                          cache_v=cache)


READERS = {"llamacpp": _llamacpp, "ollama": _ollama, "vllm": _vllm}


async def model_setting(engine: Engine, model: str) -> tuple[ModelShape, Setting]:
    """The model's shape and the engine's setting for it. Raises CannotPredict (one line) when it cannot be read."""
    reader = READERS.get(engine.kind)
    if reader is None:
        raise CannotPredict(f"enginedeck cannot read the model files of a {engine.kind} engine")
    if engine.kind != "ollama" and not local_url(engine.base_url):
        raise CannotPredict(f"{engine.name} is on another host: its model files cannot be read from here")
    try:
        return await reader(engine, model)
    except ShapeError as exc:
        raise CannotPredict(str(exc)) from None


def with_overrides(setting: Setting, *, context: int | None = None, slots: int | None = None,
                   cache: str | None = None) -> Setting:
    return Setting(context=context or setting.context, slots=slots or setting.slots,
                   cache_k=cache or setting.cache_k, cache_v=cache or setting.cache_v)


def judge(p: Prediction, *, free: int | None, host_available: int | None) -> str:
    """The verdict, from a prediction and the free memory where the model is meant to go."""
    if free is None:
        return UNKNOWN
    if p.total <= free:
        return FITS
    if p.memory == "gpu" and p.engine_kind in SPILLING_KINDS and host_available is not None \
            and p.total - free <= host_available:
        return SPILLS
    return WONT_FIT


def answer(engine: Engine, model: str, shape: ModelShape, setting: Setting, overhead: Overhead, *,
           free: int | None, host_available: int | None) -> Answer:
    p = predict(shape, engine_kind=engine.kind, context=setting.context, slots=setting.slots,
                memory=overhead.memory, overhead=overhead.bytes, overhead_source=overhead.source,
                cache_k=setting.cache_k, cache_v=setting.cache_v)
    return Answer(engine.name, engine.kind, model, judge(p, free=free, host_available=host_available), p, free,
                  host_available, shape.source, p.notes)
