"""The runtime overhead term, per engine kind and memory kind: a default, or fitted from enginedeck's own loads.

Every load enginedeck makes records what the formula predicted for the model (weights + KV + output, without the
overhead) and what the engine's processes held afterwards (NVML on a GPU, RSS on a CPU-only engine). The overhead
is the part the formula does not derive from the model, so the fit is the **median of the residuals**
(measured - model part) of the newest `WINDOW` records of that engine kind and memory kind, once there are at
least `MIN_RECORDS`: a median, because one record taken while a request was running (a larger compute buffer, a
grown heap) must not move it, and the newest, because an engine upgrade changes it. Fewer records: the default.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

MIB = 1 << 20
MIN_RECORDS = 3
WINDOW = 50

# Defaults until enginedeck has its own records (docs/fit.md says where each comes from):
# llama.cpp on a CPU: the resident code, libraries and heap (~24 MiB) plus its compute buffer (15.6 MiB at the
# default micro-batch), measured with SmolLM2 on the lab; on a GPU the CUDA context and the compute buffer.
DEFAULTS: Mapping[tuple[str, str], int] = {
    ("llamacpp", "host"): 40 * MIB,
    ("llamacpp", "gpu"): 512 * MIB,
    ("ollama", "host"): 64 * MIB,
    ("ollama", "gpu"): 512 * MIB,
    ("vllm", "gpu"): 2048 * MIB,
    ("vllm", "host"): 1024 * MIB,
}
FALLBACK = 512 * MIB


@dataclass(frozen=True)
class Overhead:
    engine_kind: str
    memory: str
    bytes: int
    records: int  # how many load records back it (0: the default)

    @property
    def source(self) -> str:
        if self.records == 0:
            return "default"
        return f"fitted from {self.records} load{'s' if self.records != 1 else ''}"


class Residual(Protocol):
    """One load as the fit needs it (the store's FitRow is one): the engine kind, where the model lives, the
    formula's model part and the measured bytes."""

    @property
    def engine_kind(self) -> str: ...
    @property
    def memory(self) -> str: ...
    @property
    def predicted_model(self) -> int: ...
    @property
    def measured(self) -> int: ...


@dataclass(frozen=True)
class FitRecord:
    engine_kind: str
    memory: str
    predicted_model: int
    measured: int


def default_overhead(engine_kind: str, memory: str) -> Overhead:
    return Overhead(engine_kind, memory, DEFAULTS.get((engine_kind, memory), FALLBACK), 0)


def fit_overhead(engine_kind: str, memory: str, records: Iterable[Residual]) -> Overhead:
    """The median residual of the newest records of this kind (newest first in `records`), or the default."""
    mine = [r for r in records if r.engine_kind == engine_kind and r.memory == memory][:WINDOW]
    if len(mine) < MIN_RECORDS:
        return default_overhead(engine_kind, memory)
    residual = statistics.median(r.measured - r.predicted_model for r in mine)
    return Overhead(engine_kind, memory, max(0, round(residual)), len(mine))
