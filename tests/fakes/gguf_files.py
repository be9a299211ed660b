"""GGUF files made up in tests: the header layout of the spec (ggml/docs/gguf.md), written with struct."""

from __future__ import annotations

import struct
from typing import Any

U32, I32, F32, BOOL, STRING, ARRAY, U64 = 4, 5, 6, 7, 8, 9, 10


def s(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


def kv(key: str, vtype: int, value: Any, item_type: int | None = None) -> bytes:
    out = s(key) + struct.pack("<I", vtype)
    if vtype == STRING:
        return out + s(value)
    if vtype == ARRAY:
        out += struct.pack("<IQ", item_type, len(value))
        if item_type == STRING:
            return out + b"".join(s(v) for v in value)
        fmt = {U32: "<I", I32: "<i", BOOL: "<?", F32: "<f"}[item_type]
        return out + b"".join(struct.pack(fmt, v) for v in value)
    fmt = {U32: "<I", I32: "<i", F32: "<f", BOOL: "<?", U64: "<Q"}[vtype]
    return out + struct.pack(fmt, value)


def tensor(name: str, offset: int, dims: tuple[int, ...] = (4, 4), ggml_type: int = 0) -> bytes:
    return s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + \
        struct.pack("<IQ", ggml_type, offset)


def gguf(kvs: list[bytes], tensors: list[tuple[str, int]], data: int, *, version: int = 3,
         n_kv: int | None = None, n_tensors: int | None = None) -> bytes:
    """A GGUF file: header, `kvs`, `tensors` as (name, offset), padding to 32, then `data` bytes of zeros."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)
    head += b"".join(kvs) + b"".join(tensor(n, o) for n, o in tensors)
    head += b"\0" * (-len(head) % 32)
    return head + b"\0" * data


def llama_kvs(layers: int = 4, heads: int = 8, kv_heads: Any = 2, embd: int = 512, vocab: int = 1000) -> list[bytes]:
    out = [kv("general.architecture", STRING, "llama"), kv("llama.block_count", U32, layers),
           kv("llama.attention.head_count", U32, heads), kv("llama.embedding_length", U32, embd),
           kv("llama.context_length", U32, 8192), kv("llama.vocab_size", U32, vocab)]
    if isinstance(kv_heads, list):
        out.append(kv("llama.attention.head_count_kv", ARRAY, kv_heads, U32))
    else:
        out.append(kv("llama.attention.head_count_kv", U32, kv_heads))
    return out
