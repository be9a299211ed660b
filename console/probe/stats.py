"""Distributions of per-request figures: percentiles by linear interpolation, with sample-size guards.

Linear interpolation between closest ranks is numpy's default (and vLLM's, and most tools'), so figures can be
compared with theirs. A tail percentile from too few samples is noise presented as fact, so p95 needs at least
20 samples and p99 at least 100; below that it is None and shown as "—".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MIN_N_P95 = 20
MIN_N_P99 = 100


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linear interpolation between closest ranks."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside 0..100")
    rank = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = rank - lo
    low, high = sorted_values[lo], sorted_values[hi]
    if frac == 0.0 or low == high:
        return low  # also keeps +inf samples from turning into nan (inf - inf)
    return low + (high - low) * frac


@dataclass(frozen=True)
class Dist:
    """Summary of one figure over a level's successful requests. Units are those of the samples."""

    n: int
    mean: float
    min: float
    max: float
    p10: float
    p50: float
    p90: float
    p95: float | None
    p99: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> Dist | None:
        data = sorted(values)
        if not data:
            return None
        n = len(data)
        return cls(
            n=n, mean=math.fsum(data) / n, min=data[0], max=data[-1],
            p10=percentile(data, 10), p50=percentile(data, 50), p90=percentile(data, 90),
            p95=percentile(data, 95) if n >= MIN_N_P95 else None,
            p99=percentile(data, 99) if n >= MIN_N_P99 else None,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Dist | None:
        if not data:
            return None
        values: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}  # JSON from the store
        return cls(**values)
