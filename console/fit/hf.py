"""A model's shape from a Hugging Face folder, as vLLM loads it: config.json and the safetensors files.

Bounded: config.json and the safetensors index are read only up to `MAX_JSON` bytes; of each `.safetensors` file
only its first 8 bytes (the header's length) are read, the weights being the rest of the file after the header.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from console.fit.predict import ModelShape, ShapeError

MAX_JSON = 4 << 20
MAX_SAFETENSORS_HEADER = 100 << 20  # the safetensors format's own limit
MAX_FILES = 10_000
# vLLM's KV cache dtype "auto" is the model's dtype.
DTYPE_CACHE = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "float8_e4m3fn": "fp8", "float8_e5m2": "fp8"}


def _regular(path: Path) -> None:
    if not path.is_file():  # the folder comes from the engine: a FIFO or a device would block or never end
        raise ShapeError(f"{path} is not a regular file")


def _json(path: Path) -> Any:
    _regular(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_JSON + 1)
    except OSError as exc:
        raise ShapeError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_JSON:
        raise ShapeError(f"{path} is larger than {MAX_JSON >> 20} MiB: not read")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ShapeError(f"{path} is not JSON: {exc}") from None


def _safetensors_data(path: Path) -> int:
    """Bytes of tensor data in one .safetensors file: its size less the 8-byte length and the header."""
    _regular(path)
    try:
        with path.open("rb") as f:
            head = f.read(8)
            size = path.stat().st_size
    except OSError as exc:
        raise ShapeError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(head) != 8:
        raise ShapeError(f"{path} is not a safetensors file (shorter than 8 bytes)")
    (header_len,) = struct.unpack("<Q", head)
    if header_len > MAX_SAFETENSORS_HEADER or 8 + header_len > size:
        raise ShapeError(f"{path}: a safetensors header of {header_len} bytes does not fit the file")
    return int(size - 8 - header_len)


def weights_bytes(folder: Path) -> int:
    """The index's total_size when it has one, else the sum over the folder's .safetensors files."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        body = _json(index)
        meta = body.get("metadata") if isinstance(body, Mapping) else None
        total = meta.get("total_size") if isinstance(meta, Mapping) else None
        if isinstance(total, int) and total > 0:
            return total
    files = sorted(folder.glob("*.safetensors"))[:MAX_FILES + 1]
    if not files:
        raise ShapeError(f"{folder} has no .safetensors files")
    if len(files) > MAX_FILES:
        raise ShapeError(f"{folder} has more than {MAX_FILES} .safetensors files")
    return sum(_safetensors_data(f) for f in files)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def shape_from_hf(folder: str | Path) -> tuple[ModelShape, str]:
    """The shape of the model in `folder`, and the KV cache type of its dtype (vLLM's "auto" cache)."""
    folder = Path(folder)
    config = _json(folder / "config.json")
    if not isinstance(config, Mapping):
        raise ShapeError(f"{folder / 'config.json'} is not an object")
    text = config.get("text_config")
    cfg: Mapping[str, Any] = text if isinstance(text, Mapping) else config  # multimodal: the language model's part
    layers, heads = _int(cfg.get("num_hidden_layers")), _int(cfg.get("num_attention_heads"))
    hidden = _int(cfg.get("hidden_size"))
    if not layers or not heads or not hidden:
        raise ShapeError(f"{folder / 'config.json'} lacks num_hidden_layers, num_attention_heads or hidden_size")
    kv_heads = _int(cfg.get("num_key_value_heads")) or heads
    head_dim = _int(cfg.get("head_dim")) or hidden // heads
    window = _int(cfg.get("sliding_window")) if cfg.get("use_sliding_window", True) is not False else None
    types = cfg.get("layer_types")
    swa = (tuple(t == "sliding_attention" for t in types)
           if window and isinstance(types, list) and len(types) == layers else None)
    dtype = cfg.get("torch_dtype") or cfg.get("dtype") or config.get("torch_dtype")
    weights = weights_bytes(folder)
    shape = ModelShape(source=f"hf:{folder}", weights_bytes=weights, gpu_weights_bytes=weights, layers=layers,
                       kv_heads=(kv_heads,) * layers, head_dim_k=head_dim, head_dim_v=head_dim,
                       vocab=_int(cfg.get("vocab_size")), context_train=_int(cfg.get("max_position_embeddings")),
                       sliding_window=window, swa_layers=swa)
    return shape, DTYPE_CACHE.get(str(dtype), "f16")
