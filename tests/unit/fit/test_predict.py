"""The formula: KV cells as llama.cpp allocates them, GQA and per-layer heads, sliding windows, HF folders."""

import json
import struct

import pytest

from console.fit.calibrate import FitRecord, default_overhead, fit_overhead
from console.fit.gguf import read_header
from console.fit.hf import shape_from_hf
from console.fit.predict import ShapeError, kv_cells, predict, shape_from_gguf, shape_from_metadata
from tests.fakes.gguf_files import gguf, llama_kvs

MIB = 2**20


def smollm2_meta(**extra):
    """SmolLM2-135M's GGUF keys, as `ollama show` gives them too (Ollama's model_info is GGUF metadata)."""
    return {"general.architecture": "llama", "llama.block_count": 30, "llama.attention.head_count": 9,
            "llama.attention.head_count_kv": 3, "llama.embedding_length": 576, "llama.vocab_size": 49152,
            "llama.context_length": 8192, **extra}


@pytest.mark.parametrize(("kind", "context", "slots", "cells"), [
    ("llamacpp", 1024, 4, 4096),
    ("llamacpp", 128, 16, 4096),  # -c 2048 -np 16: each slot rounded up to 256 cells (llama.cpp's log says so)
    ("llamacpp", 2048, 1, 2048),
    ("ollama", 1000, 2, 2048),
    ("vllm", 1000, 2, 2000),
])
def test_cells(kind, context, slots, cells):
    assert kv_cells(kind, context, slots) == cells


def test_smollm2_matches_llama_cpp_log():
    """llama-server -c 4096 -np 4 on SmolLM2 logs: KV 90.00 MiB (K f16 45, V f16 45), output buffer 0.75 MiB."""
    shape = shape_from_metadata(smollm2_meta(), weights_bytes=96_576_768, source="test")
    p = predict(shape, engine_kind="llamacpp", context=1024, slots=4, memory="host", overhead=40 * MIB)
    assert p.kv == 90 * MIB and p.output == 0.75 * MIB and p.weights == 96_576_768
    assert p.total == p.weights + p.kv + p.output + 40 * MIB
    q8 = predict(shape, engine_kind="llamacpp", context=1024, slots=4, memory="host", overhead=0,
                 cache_k="q8_0", cache_v="q8_0")
    assert q8.kv == round(90 * MIB * 34 / 64)
    gpu = predict(shape, engine_kind="llamacpp", context=1024, slots=4, memory="gpu", overhead=0)
    assert gpu.output == 0 and gpu.kv == 90 * MIB  # llama.cpp's output buffer is pinned host memory ("CUDA_Host")


def test_gqa_uses_kv_heads_not_query_heads():
    gqa = shape_from_metadata(smollm2_meta(), weights_bytes=0, source="t")
    mha = shape_from_metadata(smollm2_meta(**{"llama.attention.head_count_kv": 9}), weights_bytes=0, source="t")
    kw = {"engine_kind": "llamacpp", "context": 4096, "slots": 1, "memory": "gpu", "overhead": 0}
    assert predict(mha, **kw).kv == 3 * predict(gqa, **kw).kv


def test_per_layer_kv_heads_and_sliding_window_pattern():
    meta = smollm2_meta(**{"llama.block_count": 2, "llama.attention.head_count_kv": [3, 0],
                           "llama.attention.sliding_window": 512,
                           "llama.attention.sliding_window_pattern": [True, False]})
    shape = shape_from_metadata(meta, weights_bytes=0, source="t")
    assert shape.kv_heads == (3, 0) and shape.swa_layers == (True, False)
    p = predict(shape, engine_kind="llamacpp", context=8192, slots=2, memory="gpu", overhead=0)
    # layer 0 is a sliding-window layer: min(16384, 512 x 2 + 512) cells; layer 1 has no KV heads
    assert p.kv == 3 * 64 * 4 * 1536 and not p.notes


def test_sliding_window_without_a_pattern_is_an_over_estimate_and_says_so():
    shape = shape_from_metadata(smollm2_meta(**{"llama.attention.sliding_window": 512}), weights_bytes=0, source="t")
    p = predict(shape, engine_kind="llamacpp", context=4096, slots=1, memory="gpu", overhead=0)
    assert p.kv == 4096 * 30 * 3 * 64 * 4 and "over-estimate" in p.notes[0]


@pytest.mark.parametrize("meta", [{}, {"general.architecture": "llama"}, smollm2_meta(**{"llama.block_count": "30"})])
def test_incomplete_metadata(meta):
    with pytest.raises(ShapeError):
        shape_from_metadata(meta, weights_bytes=1, source="t")


def test_unknown_cache_type_and_bad_context():
    shape = shape_from_metadata(smollm2_meta(), weights_bytes=0, source="t")
    with pytest.raises(ShapeError, match="unknown KV cache type"):
        predict(shape, engine_kind="llamacpp", context=1, slots=1, memory="gpu", overhead=0, cache_k="q3")
    with pytest.raises(ShapeError, match="positive"):
        predict(shape, engine_kind="llamacpp", context=0, slots=1, memory="gpu", overhead=0)


def test_gguf_gpu_share(tmp_path):
    """Untied output: the token embedding stays in host memory; tied: the GPU gets a copy, so the whole file."""
    untied = tmp_path / "u.gguf"
    untied.write_bytes(gguf(llama_kvs(), [("token_embd.weight", 0), ("output.weight", 1024)], data=4096))
    tied = tmp_path / "t.gguf"
    tied.write_bytes(gguf(llama_kvs(), [("token_embd.weight", 0), ("blk.0.x", 1024)], data=4096))
    assert shape_from_gguf(read_header(untied), "u").gpu_weights_bytes == 4096 - 1024
    assert shape_from_gguf(read_header(tied), "t").gpu_weights_bytes == 4096


def safetensors(path, data: int, header: bytes = b'{"__metadata__":{}}'):
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * data)


def test_hf_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "hidden_size": 512,
        "vocab_size": 1000, "torch_dtype": "bfloat16", "sliding_window": 128,
        "layer_types": ["sliding_attention", "full_attention"] * 2}))
    safetensors(tmp_path / "model-00001.safetensors", 1000)
    safetensors(tmp_path / "model-00002.safetensors", 500)
    shape, cache = shape_from_hf(tmp_path)
    assert shape.weights_bytes == 1500 and cache == "bf16" and shape.kv_heads == (2,) * 4
    assert shape.swa_layers == (True, False, True, False) and shape.head_dim_k == 64
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 1234}}))
    assert shape_from_hf(tmp_path)[0].weights_bytes == 1234


@pytest.mark.parametrize("case", ["no config", "not json", "no layers", "no weights", "bad header"])
def test_hf_folder_refusals(tmp_path, case):
    good = {"num_hidden_layers": 4, "num_attention_heads": 8, "hidden_size": 512}
    if case != "no config":
        (tmp_path / "config.json").write_text("{" if case == "not json" else
                                              json.dumps({} if case == "no layers" else good))
    if case == "bad header":
        (tmp_path / "m.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(ShapeError):
        shape_from_hf(tmp_path)


def test_overhead_fit_is_the_median_residual_of_the_newest_records():
    assert fit_overhead("llamacpp", "gpu", []) == default_overhead("llamacpp", "gpu")
    records = [FitRecord("llamacpp", "gpu", 1000, 1000 + r) for r in (300, 310, 5000)]
    records += [FitRecord("vllm", "gpu", 1000, 9999), FitRecord("llamacpp", "host", 1000, 1)]
    fitted = fit_overhead("llamacpp", "gpu", records)
    assert fitted.bytes == 310 and fitted.records == 3 and fitted.source == "fitted from 3 loads"
    assert fit_overhead("llamacpp", "gpu", records[:2]).records == 0  # fewer than three: the default
