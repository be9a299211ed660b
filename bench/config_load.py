"""What reading the config costs at start, and what pydantic would cost instead.

Each figure is the median over fresh interpreters (so every import is cold in-process, warm on disk) of:
- load: `import console.config` and `load_config(FILE)` for a config with four engines and every table;
- pydantic: `import pydantic` and a validator (`TypeAdapter`) for the same settings classes, then one
  validation of the same settings, which is what a pydantic model of them would add to the start.

    python bench/config_load.py --runs 15
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
request_timeout = 20
[[engines]]
name = "gpu1-vllm"
url = "http://10.0.0.5:8000"
kind = "vllm"
api_key_env = "VLLM_API_KEY"
load_timeout = 600
[[engines]]
name = "ollama"
url = "http://127.0.0.1:11434"
kind = "ollama"
log_unit = "ollama.service"
[[engines]]
name = "llama"
url = "http://127.0.0.1:8080"
[[engines]]
name = "tgi"
url = "http://127.0.0.1:3000"
verify_tls = false
[slo]
ttft_p90_s = 0.8
[ui]
theme = "light"
poll_interval_s = 1.0
[audit]
retention_days = 90
[limits]
line = "2 MiB"
"""

LOAD = """
import time
t0 = time.perf_counter()
from pathlib import Path
from console.config import load_config
load_config(Path({path!r}), env={{}})
print(time.perf_counter() - t0)
"""

PYDANTIC = """
import time
t0 = time.perf_counter()
from pydantic import TypeAdapter
from console.config import Config
TypeAdapter(Config).validate_python({{
    "engines": [{{"name": f"e{{i}}", "url": "http://127.0.0.1:8000"}} for i in range(4)],
    "ui": {{"theme": "light"}}, "slo": {{"ttft_p90_s": 0.8}}, "limits": {{"line_bytes": 2097152}},
}})
print(time.perf_counter() - t0)
"""


def timed(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(CONFIG)
        rows = {"load (import console.config + load_config)": [timed(LOAD.format(path=str(path)))
                                                              for _ in range(args.runs)],
                "pydantic (import + TypeAdapter + validate)": [timed(PYDANTIC.format()) for _ in range(args.runs)]}
    print(f"config at start, {args.runs} fresh interpreters each")
    for name, values in rows.items():
        ms = sorted(v * 1000 for v in values)
        print(f"  {name:45s} median {statistics.median(ms):7.1f} ms  min {ms[0]:7.1f}  max {ms[-1]:7.1f}")


if __name__ == "__main__":
    main()
