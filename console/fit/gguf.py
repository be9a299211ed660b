"""A bounded reader of a GGUF file's header: its metadata and the size of each tensor, never the weights.

Why not the `gguf` package (llama.cpp's own, on PyPI): it needs numpy, PyYAML, requests and tqdm at run time, and
its reader memory-maps the whole file and builds one numpy view per array element and per tensor, so a file that
claims a billion-entry string array or a billion tensors costs memory in proportion to the claim before anything
can refuse it. Refusing those claims means walking the header, which is all this module does (docs/fit.md).

Bounds: at most `MAX_KV` metadata entries and `MAX_TENSORS` tensors, keys of at most 64 KiB, strings of at most
`MAX_STRING` bytes (those over `KEEP_STRING` are skipped, not stored), arrays of at most `MAX_ARRAY` items
(`MAX_STRINGS` for strings) of which only the first `KEEP_ARRAY` numeric items are kept (string arrays, the
tokenizer's vocabulary, are skipped with their length kept), no nested arrays, and every length checked against
the bytes left in the file before it is read or skipped. A file that breaks one is refused with `GgufError`, one line.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from console.errors import EngineDeckError

MAGIC = b"GGUF"
MAX_KV = 65_536
MAX_TENSORS = 1_000_000
MAX_KEY = 65_536
MAX_STRING = 1 << 20  # a chat template can be long; anything longer is skipped
KEEP_STRING = 4_096  # strings kept in the metadata up to this many bytes (names, architecture, ...)
MAX_ARRAY = 1 << 26
# Each string of a string array is skipped by reading its length: the cost is per item, so these arrays have their
# own bound (the largest real vocabularies and merge lists are 262,144 and ~280,000 entries).
MAX_STRINGS = 1 << 20
KEEP_ARRAY = 4_096  # per-layer arrays (head counts, sliding-window patterns) fit; a vocabulary does not
MAX_DIMS = 8
DEFAULT_ALIGNMENT = 32

# GGUF value types: (struct format, size) for the scalars; 8 is a string, 9 an array.
_SCALARS: dict[int, str] = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
                            11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")
CHUNK = 1 << 18  # two of these at most are alive at once: the bound on what skipping strings holds


class GgufError(EngineDeckError):
    """The file is not a GGUF this reader accepts (not GGUF, truncated, or past a bound)."""


@dataclass(frozen=True)
class GgufArray:
    """An array value: its item type and length, and its first items when they are numbers (else empty)."""

    item_type: int
    length: int
    items: tuple[Any, ...] = ()


@dataclass(frozen=True)
class GgufHeader:
    version: int
    metadata: Mapping[str, Any]  # scalars and kept strings as Python values; arrays as GgufArray
    tensor_bytes: Mapping[str, int]  # name -> bytes in the file (the gap to the next tensor's offset)
    data_offset: int
    file_size: int
    skipped: tuple[str, ...] = field(default=())  # keys whose value was too long to keep

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    @property
    def weights_bytes(self) -> int:
        return self.file_size - self.data_offset

    def get(self, key: str) -> Any:
        """`key` under the architecture's prefix (`llama.block_count` for "block_count")."""
        return self.metadata.get(f"{self.architecture}.{key}")


class _Reader:
    def __init__(self, f: BinaryIO, size: int, name: str) -> None:
        self.f = f
        self.size = size
        self.name = name

    def fail(self, what: str) -> GgufError:
        return GgufError(f"{self.name}: {what}", hint="is it a complete GGUF model file?")

    def need(self, n: int) -> None:
        if n < 0 or self.f.tell() + n > self.size:
            raise self.fail(f"truncated or corrupt GGUF header (needs {n} bytes at offset {self.f.tell()})")

    def read(self, n: int) -> bytes:
        self.need(n)
        data = self.f.read(n)
        if len(data) != n:
            raise self.fail("the file ended inside the header")
        return data

    def skip(self, n: int) -> None:
        if n:
            self.need(n)
            self.f.seek(n, os.SEEK_CUR)

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def u32(self) -> int:
        value: int = self.scalar("<I")
        return value

    def u64(self) -> int:
        value: int = self.scalar("<Q")
        return value

    def string(self, limit: int, keep: int) -> str | None:
        """A string of at most `limit` bytes; returned when at most `keep` bytes, else skipped (None)."""
        n = self.u64()
        if n > limit:
            raise self.fail(f"a string of {n} bytes is longer than the {limit} this reader accepts")
        if n > keep:
            self.skip(n)
            return None
        return self.read(n).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string(MAX_STRING, KEEP_STRING)
        if vtype == _ARRAY:
            return self.array()
        raise self.fail(f"unknown GGUF value type {vtype}")

    def array(self) -> GgufArray:
        item_type, length = self.u32(), self.u64()
        if length > MAX_ARRAY:
            raise self.fail(f"an array of {length} items is longer than the {MAX_ARRAY} this reader accepts")
        if item_type in _SCALARS:
            width = struct.calcsize(_SCALARS[item_type])
            self.need(length * width)
            kept = min(length, KEEP_ARRAY)
            items = struct.unpack(f"<{kept}{_SCALARS[item_type][1]}", self.read(kept * width)) if kept else ()
            self.skip((length - kept) * width)
            return GgufArray(item_type, length, tuple(items))
        if item_type == _STRING:
            if length > MAX_STRINGS:
                raise self.fail(f"a string array of {length} items is longer than the {MAX_STRINGS} this reader "
                                "accepts")
            self.skip_strings(length)
            return GgufArray(item_type, length)
        raise self.fail(f"an array of type {item_type} (nested arrays are not read)")

    def skip_strings(self, count: int) -> None:
        """Skip `count` strings, reading their lengths from one buffer of at most `CHUNK` bytes at a time (a
        vocabulary is hundreds of thousands of short strings: one read and one seek each would cost seconds)."""
        unpack = _U64.unpack_from
        base, buf, pos = self.f.tell(), b"", 0  # buf holds the file from offset base
        for _ in range(count):
            if pos + 8 > len(buf):
                base += pos
                self.f.seek(base)
                buf, pos = self.f.read(CHUNK), 0
                if len(buf) < 8:
                    raise self.fail(f"truncated or corrupt GGUF header (a string array ends at offset {base})")
            (n,) = unpack(buf, pos)
            if n > MAX_STRING:
                raise self.fail(f"a string of {n} bytes is longer than the {MAX_STRING} this reader accepts")
            pos += 8 + n
        self.f.seek(base)
        self.skip(pos)


def read_header(path: str | Path) -> GgufHeader:
    """The header of the GGUF file at `path`. Reads only the header (a few MB at most for a large vocabulary)."""
    path = Path(path)
    if not path.is_file():  # the path comes from the engine: a FIFO or a device would block or never end
        raise GgufError(f"{path} is not a regular file", hint="is the engine's model path right?")
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            return _read(_Reader(f, size, str(path)))
    except OSError as exc:
        raise GgufError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read(r: _Reader) -> GgufHeader:
    if r.size < 24 or r.read(4) != MAGIC:
        raise r.fail("not a GGUF file (no GGUF magic)")
    version = r.u32()
    if version not in (2, 3):
        raise r.fail(f"GGUF version {version} is not one this reader knows (2, 3)")
    n_tensors, n_kv = r.u64(), r.u64()
    if n_kv > MAX_KV or n_tensors > MAX_TENSORS:
        raise r.fail(f"claims {n_kv} metadata entries and {n_tensors} tensors, past the bounds "
                     f"({MAX_KV}, {MAX_TENSORS})")
    metadata: dict[str, Any] = {}
    skipped: list[str] = []
    for _ in range(n_kv):
        key = r.string(MAX_KEY, MAX_KEY) or ""
        value = r.value(r.u32())
        if value is None:
            skipped.append(key)
        else:
            metadata[key] = value
    offsets: list[tuple[int, str]] = []
    for _ in range(n_tensors):
        name = r.string(MAX_KEY, MAX_KEY) or ""
        n_dims = r.u32()
        if n_dims > MAX_DIMS:
            raise r.fail(f"tensor {name[:80]!r} claims {n_dims} dimensions")
        r.skip(8 * n_dims + 4)  # the dimensions and the ggml type: sizes come from the offsets instead
        offsets.append((r.u64(), name))
    align = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise r.fail(f"general.alignment {align!r} is not a power of two")
    data_offset = -(-r.f.tell() // align) * align
    data_size = r.size - data_offset
    if data_size < 0:
        raise r.fail("the file ends before its tensor data")
    # Each tensor's bytes are the gap to the next offset (the data is laid out in offset order, padded), which
    # needs no table of ggml's block sizes and stays right for quantisation types newer than this reader.
    offsets.sort()
    sizes: dict[str, int] = {}
    for i, (offset, name) in enumerate(offsets):
        end = offsets[i + 1][0] if i + 1 < len(offsets) else data_size
        if offset > data_size or end < offset:
            raise r.fail(f"tensor {name[:80]!r} lies outside the file's data")
        sizes[name] = end - offset
    return GgufHeader(version, metadata, sizes, data_offset, r.size, tuple(skipped))
