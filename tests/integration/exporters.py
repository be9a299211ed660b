"""`enginedeck exporter` as a real process on a free loopback port, for the tests that a real Prometheus scrapes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Exporter:
    target: str  # host:port, as Prometheus scrapes it
    host: str  # the host name it reports


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def exporter(tmp: Path, host: str, engines: Mapping[str, str], *, deadline_s: float = 0.8) -> Iterator[Exporter]:
    """An exporter reporting `host`, polling `engines` (name -> URL of an Ollama), discovery off; SIGTERM after."""
    config = tmp / f"{host}.toml"
    lines = ["discover = false", "request_timeout = 2.0"]
    for name, url in engines.items():
        lines += ["[[engines]]", f'name = "{name}"', f'url = "{url}"', 'kind = "ollama"']
    config.write_text("\n".join(lines) + "\n")
    port = free_port()
    env = {**os.environ, "ENGINEDECK_DATA_DIR": str(tmp / f"{host}-data")}
    proc = subprocess.Popen([sys.executable, "-m", "console", "--config", str(config), "exporter", "--listen",
                             f"127.0.0.1:{port}", "--host-name", host, "--deadline", str(deadline_s)],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "serving http://127.0.0.1:" in line, line
        yield Exporter(target=f"127.0.0.1:{port}", host=host)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
