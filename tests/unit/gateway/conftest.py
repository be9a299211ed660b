"""A real gateway process (`python -m console gateway`) in front of a test engine, on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class GatewayProc:
    proc: subprocess.Popen[str]
    url: str
    log_dir: Path
    key_file: Path
    stderr: list[str] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        from console.gateway.log import log_files

        out = []
        for path in log_files(self.log_dir):
            out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return out

    def wait_records(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recs = self.records()
            if len(recs) >= n:
                return recs
            time.sleep(0.05)
        raise AssertionError(f"expected {n} records, have {self.records()}")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.stderr)]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def start_gateway(upstream: str, tmp: Path, *args: str, env: dict[str, str] | None = None,
                  config: str | None = None, log_dir: Path | None = None) -> GatewayProc:
    log_dir = log_dir or tmp / "log"
    (tmp / "config.toml").write_text(config or "")  # never the config of whoever runs the tests
    cmd = [sys.executable, "-m", "console", "--no-discover", "--config", str(tmp / "config.toml")]
    cmd += ["gateway", "--listen", "127.0.0.1:0", "--upstream", upstream, "--log-dir", str(log_dir), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "ENGINEDECK_DATA_DIR": str(tmp / "data"), **(env or {})})
    assert proc.stderr is not None
    lines: list[str] = []
    while '"listening"' not in (line := proc.stderr.readline()):
        lines.append(line)
        if not line or len(lines) > 20:
            proc.kill()
            raise RuntimeError(f"gateway did not start: {''.join(lines)}{proc.stderr.read()}")
    port = json.loads(line)["port"]
    lines.append(line)

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    return GatewayProc(proc, f"http://127.0.0.1:{port}", log_dir, log_dir / "request-log.key", lines)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProc]]:
    started: list[GatewayProc] = []

    def start(upstream: str, *args: str, **kw: Any) -> GatewayProc:
        gw = start_gateway(upstream, tmp_path, *args, **kw)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        if gw.proc.poll() is None:
            gw.proc.kill()
            gw.proc.wait(5)


def forwarded(fake: Any) -> list[Any]:
    """What a fake engine got from the gateway's clients: not the gateway's own detection of the engine's kind
    at start (console/gateway/serve.py), which says it is enginedeck."""
    return [r for r in fake.requests if r.headers.get("user-agent") != "enginedeck"]


def verify(gw: GatewayProc) -> list[dict[str, Any]]:
    """`enginedeck audit verify` on every file of the gateway's log: each must pass, every line valid."""
    from console.gateway.log import log_files

    files = log_files(gw.log_dir)
    assert files
    out = []
    for path in files:
        res = subprocess.run([sys.executable, "-m", "console", "--no-discover", "audit", "verify", str(path),
                              "--key-file", str(gw.key_file), "--json"], cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        report = json.loads(res.stdout)
        assert report["ok"] and report["counts"]["invalid"] == 0 and report["counts"]["unsigned"] == 0
        out.append(report)
    return out
