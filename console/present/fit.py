"""A will-it-fit answer (console/fit/plan.py) as one line for a person, and as JSON, for `load --dry-run` and the
models screen's confirm dialog."""

from __future__ import annotations

from typing import Any

from console.fit.plan import FITS, SPILLS, UNKNOWN, Answer
from console.present.format import human_bytes


def fit_line(a: Answer) -> str:
    p = a.prediction
    if p is None:
        return "cannot predict the memory it needs"
    where = "on the GPU" if p.memory == "gpu" else "in host memory"
    need = f"needs ≈{human_bytes(p.total)} {where}"
    if a.verdict == UNKNOWN or a.free_bytes is None:
        head = f"{need}; free memory unknown"
    elif a.verdict == FITS:
        head = f"{need}, {human_bytes(a.free_bytes)} free: fits"
    elif a.verdict == SPILLS:
        head = (f"{need}, only {human_bytes(a.free_bytes)} free: will spill ≈{human_bytes(p.total - a.free_bytes)} "
                "to the CPU (it runs, slowly)")
    else:
        head = f"{need}, only {human_bytes(a.free_bytes)} free: will not fit"
    slots = f"{p.slots} slot{'s' if p.slots != 1 else ''} × {p.cells // p.slots} tokens"
    return (f"{head} (weights {human_bytes(p.weights)} + KV {human_bytes(p.kv)} + output {human_bytes(p.output)} + "
            f"overhead {human_bytes(p.overhead)} [{p.overhead_source}]; {slots})")


def fit_json(a: Answer) -> dict[str, Any]:
    p = a.prediction
    out: dict[str, Any] = {"engine": a.engine, "kind": a.engine_kind, "model": a.model, "verdict": a.verdict,
                           "text": fit_line(a), "free_bytes": a.free_bytes, "host_available_bytes": a.host_available,
                           "shape_source": a.shape_source, "notes": list(a.notes)}
    if p is not None:
        out["predicted"] = {"memory": p.memory, "total_bytes": p.total, "weights_bytes": p.weights,
                            "kv_bytes": p.kv, "output_bytes": p.output, "overhead_bytes": p.overhead,
                            "overhead_source": p.overhead_source, "kv_cells": p.cells, "slots": p.slots}
    return out
