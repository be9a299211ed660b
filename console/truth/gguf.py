"""A GGUF file's layer count (`<architecture>.block_count`), read from its header and nothing more.

llama-server does not report how many layers its model has; the file does. The header is a list of typed
key/value pairs (GGUF v2/v3: little-endian, strings as u64 length + bytes). The reader stops at the key it
wants, and gives up past MAX_KEYS pairs or MAX_BYTES bytes (a tokenizer's vocabulary is one long array), so a
huge or hostile file costs a bounded read.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

MAX_KEYS = 4096
MAX_BYTES = 64 * 2**20
MAX_STRING = 2**20
# GGUF value types: their fixed sizes; 8 is a string, 9 an array.
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_INTS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 10: "<Q", 11: "<q"}


class GgufError(ValueError):
    pass


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n or f.tell() > MAX_BYTES:
        raise GgufError("header cut short or past the read bound")
    return data


def _u64(f: BinaryIO) -> int:
    return int(struct.unpack("<Q", _read(f, 8))[0])


def _string(f: BinaryIO) -> str:
    n = _u64(f)
    if n > MAX_STRING:
        raise GgufError("a string longer than the bound")
    return _read(f, n).decode("utf-8", "replace")


def _skip(f: BinaryIO, kind: int) -> None:
    if kind in _FIXED:
        _read(f, _FIXED[kind])
    elif kind == 8:
        _string(f)
    elif kind == 9:
        item, count = struct.unpack("<I", _read(f, 4))[0], _u64(f)
        if item in _FIXED:
            f.seek(_FIXED[item] * count, 1)
            if f.tell() > MAX_BYTES:
                raise GgufError("past the read bound")
        else:
            for _ in range(count):
                _skip(f, item)
    else:
        raise GgufError(f"unknown value type {kind}")


def block_count(path: str | Path) -> int | None:
    """The number of transformer blocks the model has; None when the file is not GGUF or does not say.
    Raises OSError when the file cannot be read."""
    with open(path, "rb") as f:
        try:
            if _read(f, 4) != b"GGUF" or struct.unpack("<I", _read(f, 4))[0] < 2:
                return None
            _u64(f)  # tensor count
            keys = min(_u64(f), MAX_KEYS)
            arch = None
            for _ in range(keys):
                key, kind = _string(f), struct.unpack("<I", _read(f, 4))[0]
                if key == "general.architecture" and kind == 8:
                    arch = _string(f)
                elif arch and key == f"{arch}.block_count" and kind in _INTS:
                    return int(struct.unpack(_INTS[kind], _read(f, _FIXED[kind]))[0])
                else:
                    _skip(f, kind)
        except (GgufError, struct.error):
            return None
    return None
