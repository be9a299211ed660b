"""The bounded GGUF reader: real layouts read right, hostile headers refused in one line without reading on."""

import struct

import pytest

from console.fit.gguf import MAX_ARRAY, MAX_KV, MAX_STRINGS, GgufArray, GgufError, read_header
from tests.fakes.gguf_files import ARRAY, STRING, U32, gguf, kv, llama_kvs, s


def write(tmp_path, data: bytes):
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    return path


def test_metadata_and_tensor_sizes(tmp_path):
    tokens = [f"tok{i}" for i in range(300)]
    data = gguf([*llama_kvs(), kv("tokenizer.ggml.tokens", ARRAY, tokens, STRING),
                 kv("tokenizer.chat_template", STRING, "x" * 10_000)],
                [("token_embd.weight", 0), ("blk.0.attn_q.weight", 640), ("output.weight", 1664)], data=2048)
    h = read_header(write(tmp_path, data))
    assert h.architecture == "llama" and h.get("block_count") == 4 and h.get("attention.head_count_kv") == 2
    assert h.tensor_bytes == {"token_embd.weight": 640, "blk.0.attn_q.weight": 1024, "output.weight": 384}
    assert h.weights_bytes == 2048 and h.data_offset % 32 == 0
    vocab = h.metadata["tokenizer.ggml.tokens"]
    assert isinstance(vocab, GgufArray) and vocab.length == 300 and vocab.items == ()  # skipped, length kept
    assert "tokenizer.chat_template" in h.skipped and "tokenizer.chat_template" not in h.metadata


def test_per_layer_arrays_are_kept(tmp_path):
    h = read_header(write(tmp_path, gguf(llama_kvs(kv_heads=[2, 2, 4, 4]), [("a", 0)], data=64)))
    assert h.get("attention.head_count_kv").items == (2, 2, 4, 4)


def test_the_lab_model_when_built():
    from scripts import lab as labkit

    path = labkit.Manifest.load().gguf
    if path is None or not path.exists():
        pytest.skip("engine lab model not built")
    h = read_header(path)
    # llama.cpp's own log for this file: "file size = 92.10 MiB", 30 layers, 3 KV heads, vocabulary 49152
    assert round(h.weights_bytes / 2**20, 2) == 92.10
    assert h.get("block_count") == 30 and h.get("attention.head_count_kv") == 3
    assert h.metadata["tokenizer.ggml.tokens"].length == 49152


@pytest.mark.parametrize(("data", "message"), [
    (b"GGML" + b"\0" * 40, "not a GGUF file"),
    (b"GGUF" + struct.pack("<IQQ", 1, 0, 0), "version 1"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, MAX_KV + 1), "past the bounds"),
    (b"GGUF" + struct.pack("<IQQ", 3, 2**62, 1), "past the bounds"),
    # a key claiming 2**40 bytes: refused before any read
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**40), "longer than"),
    # a string array claiming more items than the bound
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s("k") + struct.pack("<IIQ", ARRAY, STRING, MAX_ARRAY + 1),
     "longer than"),
    # a u32 array claiming a million items in a file of a few bytes: checked against what is left, not read
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s("k") + struct.pack("<IIQ", ARRAY, U32, 1_000_000), "truncated"),
    # a string array whose second string runs past the end of the file
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s("k") + struct.pack("<IIQ", ARRAY, STRING, 2) + s("ab")
     + struct.pack("<Q", 10_000) + b"x" * 10, "truncated"),
    # a string array with one string past the per-string bound
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s("k") + struct.pack("<IIQ", ARRAY, STRING, 2) + s("ab")
     + struct.pack("<Q", 2**40), "longer than"),
    # nested arrays are not read
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s("k") + struct.pack("<IIQ", ARRAY, ARRAY, 1) + b"\0" * 16,
     "nested"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s("k") + struct.pack("<I", 77) + b"\0" * 8, "unknown GGUF value"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + kv("general.architecture", STRING, "llama"), "truncated"),
])
def test_hostile_headers_are_refused(tmp_path, data, message):
    with pytest.raises(GgufError, match=message) as info:
        read_header(write(tmp_path, data))
    assert "\n" not in str(info.value)


def test_tensor_outside_the_data(tmp_path):
    with pytest.raises(GgufError, match="outside"):
        read_header(write(tmp_path, gguf(llama_kvs(), [("a", 0), ("b", 10_000)], data=64)))


def test_bad_alignment(tmp_path):
    with pytest.raises(GgufError, match="power of two"):
        read_header(write(tmp_path, gguf([*llama_kvs(), kv("general.alignment", U32, 24)], [], data=0)))


@pytest.mark.parametrize("make", ["missing", "fifo", "dir"])
def test_not_a_regular_file_is_refused_without_opening_it(tmp_path, make):
    """The path comes from the engine: a FIFO would block the open forever, a device never end."""
    import os

    path = tmp_path / "m.gguf"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "dir":
        path.mkdir()
    with pytest.raises(GgufError, match="not a regular file"):
        read_header(path)


def huge_vocabulary(tmp_path, n: int):
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARRAY, STRING, n)
    path = tmp_path / "big.gguf"
    with path.open("wb") as f:
        f.write(data + b"\0" * (8 * n))  # n empty strings
        f.write(b"\0" * (-f.tell() % 32))
    return path


def test_a_vocabulary_at_the_bound_costs_no_memory(tmp_path):
    """A million empty strings (8 MiB of lengths): skipped one length at a time, nothing kept."""
    import tracemalloc

    path = huge_vocabulary(tmp_path, MAX_STRINGS)
    tracemalloc.start()
    h = read_header(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert h.metadata["tokenizer.ggml.tokens"].length == MAX_STRINGS
    assert peak < 2**20


def test_a_vocabulary_past_the_bound_is_refused_before_reading_it(tmp_path):
    with pytest.raises(GgufError, match="string array of 1048577 items"):
        read_header(huge_vocabulary(tmp_path, MAX_STRINGS + 1))
