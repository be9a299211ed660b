"""Will-it-fit accuracy on real llama-server: predicted vs measured memory for several `-c` and `-np`.

    python bench/fit_accuracy.py                          # the CPU lab: RSS of llama-server
    python bench/fit_accuracy.py --gpu --server PATH      # a CUDA build: NVML's memory of the process (-ngl 999)

Each combination starts its own llama-server with SmolLM2 (scripts/lab.py's command line; one thread), waits until
it is ready, sends one short completion (so the weights are read and the compute buffers used), waits a second,
and reads the process's memory: its resident set on the CPU, NVML's per-process figure on a GPU. The prediction
is console/fit's formula with the default overhead term (console/fit/calibrate.py), never fitted from these runs.
Prints a markdown table (docs/fit.md records it) and, with --json, the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from console.fit.calibrate import default_overhead
from console.fit.gguf import read_header
from console.fit.predict import predict, shape_from_gguf
from scripts import lab as labkit

MIB = 1 << 20
COMPUTE = re.compile(r"(\S+) compute buffer size =\s+([\d.]+) MiB")


def nvml_bytes(pid: int) -> int | None:
    from console.telemetry.gpu import GpuMonitor

    monitor = GpuMonitor()
    try:
        snap = monitor.sample()
    finally:
        monitor.close()
    used = [p.used_bytes for g in snap.gpus for p in g.processes if p.pid == pid and p.used_bytes]
    return sum(used) if used else None


def one(manifest: labkit.Manifest, ctx: int, slots: int, gpu: bool, threads: int, logdir: Path) -> dict:
    port = labkit.free_port()
    launch = labkit.llama_launch(manifest, port, parallel=slots, ctx=ctx, threads=threads)
    extra = ("-lv", "4", "-ngl", "999") if gpu else ("-lv", "4")  # -lv 4: the log names each compute buffer
    launch = labkit.Launch((*launch.argv, *extra), launch.env, launch.port, launch.ready_s, launch.host)
    log = logdir / f"llama-c{ctx}-np{slots}.log"
    proc = labkit.spawn(launch, log)
    try:
        labkit.wait_ready(launch, proc, log)
        body = json.dumps({"prompt": "Hello", "n_predict": 8}).encode()
        req = urllib.request.Request(launch.url + "/completion", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()
        time.sleep(1.0)
        rss = psutil.Process(proc.pid).memory_info().rss
        vram = nvml_bytes(proc.pid) if gpu else None
    finally:
        labkit.stop(proc)
    text = log.read_text(encoding="utf-8", errors="replace")
    compute = {dev: float(mib) for dev, mib in COMPUTE.findall(text)}
    return {"ctx": ctx, "slots": slots, "rss": rss, "vram": vram, "compute_mib": compute}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contexts", default="2048,8192,32768", help="llama-server -c values (default %(default)s)")
    ap.add_argument("--slots", default="1,4,16", help="llama-server -np values (default %(default)s)")
    ap.add_argument("--gpu", action="store_true", help="offload every layer (-ngl 999) and read NVML")
    ap.add_argument("--server", type=Path, help="llama-server to run (default: the lab's)")
    ap.add_argument("--gguf", type=Path, help="model (default: the lab's SmolLM2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    manifest = labkit.Manifest.load()
    if args.server or args.gguf:
        manifest = manifest.updated(**{k: v for k, v in (("llama_server", args.server), ("gguf", args.gguf)) if v})
    header = read_header(manifest.gguf)
    shape = shape_from_gguf(header, f"gguf:{manifest.gguf}")
    memory = "gpu" if args.gpu else "host"
    overhead = default_overhead("llamacpp", memory)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fit-bench-") as tmp:
        for ctx in (int(c) for c in args.contexts.split(",")):
            for slots in (int(s) for s in args.slots.split(",")):
                m = one(manifest, ctx, slots, args.gpu, args.threads, Path(tmp))
                p = predict(shape, engine_kind="llamacpp", context=-(-ctx // slots), slots=slots, memory=memory,
                            overhead=overhead.bytes)
                measured = m["vram"] if args.gpu else m["rss"]
                m.update(weights=p.weights, kv=p.kv, output=p.output, overhead=p.overhead, predicted=p.total,
                         measured=measured,
                         error_pct=None if not measured else round(100 * (p.total - measured) / measured, 1))
                rows.append(m)
                print(f"# -c {ctx} -np {slots}: predicted {p.total / MIB:.1f} MiB, measured "
                      f"{(measured or 0) / MIB:.1f} MiB", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    what = "NVML MiB" if args.gpu else "RSS MiB"
    print(f"| -c | -np | weights | KV | output | overhead | predicted MiB | measured {what} | error | "
          "compute buffer (llama.cpp's log) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        measured = f"{r['measured'] / MIB:.1f}" if r["measured"] else "—"
        error = f"{r['error_pct']:+.1f} %" if r["error_pct"] is not None else "—"
        compute = ", ".join(f"{k} {v:.1f}" for k, v in r["compute_mib"].items()) or "—"
        print(f"| {r['ctx']} | {r['slots']} | {r['weights'] / MIB:.1f} | {r['kv'] / MIB:.1f} | "
              f"{r['output'] / MIB:.2f} | {r['overhead'] / MIB:.0f} | {r['predicted'] / MIB:.1f} | {measured} | "
              f"{error} | {compute} |")
    worst = max((abs(r["error_pct"]) for r in rows if r["error_pct"] is not None), default=None)
    print(f"\nworst |error|: {worst} % (target 10 %); overhead term: {overhead.bytes / MIB:.0f} MiB "
          f"({overhead.source}, {overhead.engine_kind}/{overhead.memory})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
