"""The memory a model needs on an engine: weights + KV cache + output buffer + a runtime overhead term.

    need = weights + kv + output + overhead
    kv   = sum over layers of  kv_heads[l] x (head_dim_k x bytes(cache_k) + head_dim_v x bytes(cache_v)) x cells[l]
    cells[l] = the context cells the engine allocates (`kv_cells`): llama.cpp's `-c` shared by its `-np` slots,
               each slot's share rounded up to 256; Ollama num_ctx x OLLAMA_NUM_PARALLEL, the same rounding;
               vLLM max_model_len x sequences. A sliding-window layer whose pattern is known holds
               min(cells, window x slots + ubatch) cells, llama.cpp's own rule; an unknown pattern counts every
               layer as full (an over-estimate, said in the notes)
    output = slots x vocab x 4 bytes (the logits of one token per sequence, f32); llama.cpp (and Ollama's runner)
             keep it in pinned host memory when they offload, so it counts on the host only
    overhead = the runtime: code, allocator, compute graph buffers, on a GPU the CUDA context; a constant per engine
               kind and memory kind, fitted from enginedeck's own load records (console/fit/calibrate.py)

Grouped-query attention is in `kv_heads` (the KV heads, not the query heads); per-layer head counts (GGUF arrays)
are used as given. docs/fit.md has the formula, its sources and its measured accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from console.fit.gguf import GgufArray, GgufHeader

MIB = 1 << 20
UBATCH = 512  # llama.cpp's default micro-batch: the extra cells of a sliding-window layer
CELL_PAD = 256  # llama.cpp rounds each sequence's context up to a multiple of this

# Bytes per element of each KV cache type (ggml blocks of 32 for the quantised ones).
CACHE_BYTES: Mapping[str, float] = {
    "f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32, "q5_0": 22 / 32,
    "q5_1": 24 / 32, "iq4_nl": 18 / 32, "fp8": 1.0,
}


class ShapeError(ValueError):
    """The model's description lacks what the formula needs (e.g. no layer count)."""


@dataclass(frozen=True)
class ModelShape:
    """What the formula needs to know about one model, from wherever it was read (`source`)."""

    source: str  # where the figures came from: "gguf:/path", "ollama show", "hf:/dir"
    weights_bytes: int  # every tensor
    gpu_weights_bytes: int  # the part that goes to the GPU when fully offloaded
    layers: int
    kv_heads: tuple[int, ...]  # per layer
    head_dim_k: int
    head_dim_v: int
    vocab: int | None = None
    context_train: int | None = None
    sliding_window: int | None = None
    swa_layers: tuple[bool, ...] | None = None  # per layer, True = sliding window; None = not known
    notes: tuple[str, ...] = ()

    def kv_bytes_per_cell(self, cache_k: str = "f16", cache_v: str = "f16", *, layer: int | None = None) -> float:
        bk, bv = cache_bytes(cache_k), cache_bytes(cache_v)
        heads = self.kv_heads if layer is None else (self.kv_heads[layer],)
        return sum(h * (self.head_dim_k * bk + self.head_dim_v * bv) for h in heads)


def cache_bytes(cache_type: str) -> float:
    try:
        return CACHE_BYTES[cache_type.lower()]
    except KeyError:
        raise ShapeError(f"unknown KV cache type {cache_type!r} (known: {', '.join(CACHE_BYTES)})") from None


@dataclass(frozen=True)
class Prediction:
    """A predicted need in bytes, term by term. `memory` is "gpu" or "host" (where the model is meant to live)."""

    engine_kind: str
    memory: str
    weights: int
    kv: int
    output: int
    overhead: int
    overhead_source: str  # "default" or "fitted from N loads"
    cells: int
    slots: int
    notes: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.output + self.overhead

    @property
    def model_part(self) -> int:
        """What the formula derives from the model (everything but the fitted overhead)."""
        return self.weights + self.kv + self.output


def _pad(n: int, to: int) -> int:
    return -(-n // to) * to


def kv_cells(engine_kind: str, context: int, slots: int) -> int:
    """The cells the engine allocates for `context` tokens per slot and `slots` slots.

    llama.cpp (and Ollama's runner, built on it) gives each sequence its share rounded up to a multiple of 256
    (llama-server -c 2048 -np 16 holds 16 x 256 cells, not 2048: measured); vLLM holds what it is given."""
    if context <= 0 or slots <= 0:
        raise ShapeError(f"context ({context}) and slots ({slots}) must be positive")
    if engine_kind in ("llamacpp", "ollama"):
        return _pad(context, CELL_PAD) * slots
    return context * slots


def predict(shape: ModelShape, *, engine_kind: str, context: int, slots: int, memory: str, overhead: int,
            overhead_source: str = "default", cache_k: str = "f16", cache_v: str = "f16") -> Prediction:
    """The need of `shape` served by `engine_kind` with `context` tokens per slot and `slots` slots.

    `memory` "gpu": every layer offloaded (weights as `gpu_weights_bytes`); "host": a CPU-only engine (all weights,
    mapped from the file and counted in RSS once read)."""
    cells = kv_cells(engine_kind, context, slots)
    notes = list(shape.notes)
    kv = 0.0
    swa = shape.swa_layers
    for layer in range(shape.layers):
        layer_cells = cells
        if shape.sliding_window and swa is not None and layer < len(swa) and swa[layer]:
            layer_cells = min(cells, _pad(shape.sliding_window * slots + UBATCH, CELL_PAD))
        kv += shape.kv_bytes_per_cell(cache_k, cache_v, layer=layer) * layer_cells
    if shape.sliding_window and swa is None:
        notes.append(f"sliding window of {shape.sliding_window} with no per-layer pattern: every layer counted "
                     "at full context (an over-estimate)")
    weights = shape.gpu_weights_bytes if memory == "gpu" else shape.weights_bytes
    on_host = memory == "host" or engine_kind not in ("llamacpp", "ollama")  # llama.cpp: a CUDA_Host buffer
    output = slots * (shape.vocab or 0) * 4 if on_host else 0
    if shape.vocab is None:
        notes.append("vocabulary size unknown: the output buffer is left out")
    return Prediction(engine_kind, memory, weights, math.ceil(kv), output, overhead, overhead_source, cells, slots,
                      tuple(notes))


# -- shapes ---------------------------------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _per_layer(value: Any, layers: int) -> tuple[int, ...] | None:
    """A count that is one number for every layer, or a list/array of one per layer (GGUF arrays, Ollama lists)."""
    if (n := _int(value)) is not None:
        return (n,) * layers
    items = value.items if isinstance(value, GgufArray) else value
    if isinstance(items, Sequence) and not isinstance(items, str) and len(items) == layers:
        counts = [_int(v) for v in items]
        if all(c is not None for c in counts):
            return tuple(c for c in counts if c is not None)
    return None


def _flags(value: Any, layers: int) -> tuple[bool, ...] | None:
    items = value.items if isinstance(value, GgufArray) else value
    if isinstance(items, Sequence) and not isinstance(items, str) and len(items) == layers:
        return tuple(bool(v) for v in items)
    return None


def shape_from_metadata(meta: Mapping[str, Any], *, weights_bytes: int, gpu_weights_bytes: int | None = None,
                        source: str) -> ModelShape:
    """A shape from GGUF metadata keys (`{arch}.block_count`, ...): a GGUF file's, or Ollama's `show` model_info,
    which carries the same keys."""
    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ShapeError(f"{source}: no general.architecture in the model's metadata")

    def key(name: str) -> Any:
        return meta.get(f"{arch}.{name}")

    layers = _int(key("block_count"))
    heads = _per_layer(key("attention.head_count"), layers or 0)
    embd = _int(key("embedding_length"))
    if not layers or not heads or not heads[0] or not embd:
        raise ShapeError(f"{source}: the {arch} metadata lacks block_count, attention.head_count or "
                         "embedding_length")
    notes: list[str] = []
    kv_heads = _per_layer(key("attention.head_count_kv"), layers) or heads
    head_k = _int(key("attention.key_length")) or embd // heads[0]
    head_v = _int(key("attention.value_length")) or embd // heads[0]
    if key("attention.kv_lora_rank") is not None:
        notes.append(f"{arch} compresses its KV cache (MLA): the KV term is an upper bound")
    if key("ssm.state_size") is not None:
        notes.append(f"{arch} has recurrent (SSM) layers: their state is not counted")
    vocab = _int(key("vocab_size"))
    if vocab is None and isinstance(tokens := meta.get("tokenizer.ggml.tokens"), GgufArray | list):
        vocab = tokens.length if isinstance(tokens, GgufArray) else len(tokens)
    window = _int(key("attention.sliding_window")) or None
    return ModelShape(
        source=source, weights_bytes=weights_bytes,
        gpu_weights_bytes=weights_bytes if gpu_weights_bytes is None else gpu_weights_bytes,
        layers=layers, kv_heads=kv_heads, head_dim_k=head_k, head_dim_v=head_v, vocab=vocab,
        context_train=_int(key("context_length")), sliding_window=window,
        swa_layers=_flags(key("attention.sliding_window_pattern"), layers) if window else None,
        notes=tuple(notes))


def shape_from_gguf(header: GgufHeader, source: str) -> ModelShape:
    """llama.cpp keeps the token embedding in host memory when it offloads every layer; a model whose output
    layer is tied to that embedding (no `output.weight`) gets a copy of it on the GPU, so its GPU share is the
    whole file."""
    embd = header.tensor_bytes.get("token_embd.weight", 0)
    tied = "output.weight" not in header.tensor_bytes
    gpu = header.weights_bytes if tied else header.weights_bytes - embd
    return shape_from_metadata(header.metadata, weights_bytes=header.weights_bytes, gpu_weights_bytes=gpu,
                               source=source)
