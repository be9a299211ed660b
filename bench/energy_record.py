"""Energy per token on a real GPU: the record docs/truth.md keeps. Run on the device machine, not in the tests.

    python bench/energy_record.py --torch-seconds 10
        The method checked against itself with a known load: idle measured first, then a PyTorch matmul loop for
        N seconds measured twice over the same window, by the energy counter and by integrated power samples.
        Prints both and their difference (the two methods should agree within a few percent).

    python bench/energy_record.py --engine http://127.0.0.1:8000 --model NAME [--levels 1,4]
        A real engine: `enginedeck chat --energy --json` (one turn) and `enginedeck probe --energy --json`, each
        with the idle measured before; prints the energy of the turn and of each probe level.

Figures are the box's (all its GPUs); say which card and engine gave them when recording them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class SampledOnly:
    """A GpuMonitor that hides its energy counter, so the meter integrates sampled power instead."""

    def __init__(self, monitor: object) -> None:
        self._monitor = monitor

    def energy_mj(self) -> Mapping[int, int | None]:
        return dict.fromkeys(self._monitor.energy_mj())  # type: ignore[attr-defined]

    def power_w(self) -> Mapping[int, float | None]:
        return self._monitor.power_w()  # type: ignore[attr-defined, no-any-return]


def torch_check(seconds: float) -> dict[str, object]:
    import torch

    from console.telemetry.energy import EnergyMeter
    from console.telemetry.gpu import GpuMonitor

    monitor = GpuMonitor()
    counter, sampled = EnergyMeter(monitor), EnergyMeter(SampledOnly(monitor), sample_s=0.02)
    idle_counter, idle_sampled = counter.measure_idle(), sampled.measure_idle()
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    torch.cuda.synchronize()
    w_counter, w_sampled = counter.start(), sampled.start()
    iterations, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        a = (a @ a).clamp_(-1, 1)
        iterations += 1
        if iterations % 20 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    r_counter, r_sampled = w_counter.stop(iterations, idle_counter), w_sampled.stop(iterations, idle_sampled)
    snap = monitor.sample()
    monitor.close()
    return {"gpus": [g.name for g in snap.gpus], "driver": snap.driver, "seconds": seconds, "matmuls": iterations,
            "counter": r_counter.to_dict(), "sampled": r_sampled.to_dict(),
            "gross_difference_pct": round(100 * (r_sampled.gross_j - r_counter.gross_j) / r_counter.gross_j, 2)}


def engine_record(url: str, model: str, levels: str) -> dict[str, object]:
    base = [sys.executable, "-m", "console", "--engine", url, "--no-discover"]
    chat = subprocess.run([*base, "chat", url, model, "Write three sentences about the sea.", "--max-tokens",
                           "256", "--energy", "--json", "--no-save"], capture_output=True, text=True, timeout=600)
    probe = subprocess.run([*base, "probe", url, model, "--levels", levels, "--requests", "16", "--energy",
                            "--json"], capture_output=True, text=True, timeout=1200)
    turn = json.loads(chat.stdout) if chat.returncode == 0 else {"error": chat.stderr.strip()}
    run = json.loads(probe.stdout) if probe.returncode == 0 else {"error": probe.stderr.strip()}
    levels_out = [{"concurrency": lv.get("concurrency"), "tokens_out_total": lv.get("tokens_out_total"),
                   "agg_tok_s": lv.get("agg_tok_s"), "energy": lv.get("energy")} for lv in run.get("levels", [])]
    return {"engine": url, "model": model, "turn": {k: turn.get(k) for k in ("tokens_out", "tok_s", "energy",
                                                                              "error")},
            "probe_levels": levels_out, "probe_error": run.get("error")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--torch-seconds", type=float, default=None)
    p.add_argument("--engine")
    p.add_argument("--model")
    p.add_argument("--levels", default="1,4")
    args = p.parse_args()
    if args.torch_seconds:
        print(json.dumps(torch_check(args.torch_seconds), indent=2))
    if args.engine and args.model:
        print(json.dumps(engine_record(args.engine, args.model, args.levels), indent=2))
    if not args.torch_seconds and not (args.engine and args.model):
        p.error("give --torch-seconds N, or --engine URL --model NAME, or both")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
