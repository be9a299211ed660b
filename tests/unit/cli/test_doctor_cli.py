"""`enginedeck doctor`: exit codes, the --json shape, key-file permissions, an engine exposed without a key, and
the egress classification.

Egress for real would need a process with an ESTABLISHED connection to a non-loopback address, which this
network-less box cannot make; the classification is tested on connection records instead.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from console.cli import main
from console.telemetry.processes import Endpoint, classify_connections
from tests.fakes.ollama_server import ollama_contract_server


@pytest.fixture
def doctor(cli, capsys: pytest.CaptureFixture[str]):
    """Run `enginedeck doctor --json` with a config made of `engines` TOML; returns (exit code, document)."""

    def run(engines_toml: str = "") -> tuple[int, dict]:
        capsys.readouterr()
        code = cli("doctor", "--json", extra=engines_toml)
        return code, json.loads(capsys.readouterr().out)

    return run


def by_name(doc: dict, prefix: str) -> list[dict]:
    return [c for c in doc["checks"] if c["name"].startswith(prefix)]


def test_healthy_engine_exits_0_with_the_json_shape(doctor):
    with ollama_contract_server() as fake:
        code, doc = doctor(f'[[engines]]\nname = "fake"\nurl = "{fake.url}"\nkind = "ollama"\n')
    assert code == 0 and doc["ok"] is True
    assert all(set(c) == {"name", "status", "detail"} for c in doc["checks"])
    assert all(c["status"] in ("ok", "warn", "fail", "info") for c in doc["checks"])
    (engine,) = by_name(doc, "engine fake")
    assert engine["status"] == "ok" and "ollama 0.12.6" in engine["detail"]
    (gpu,) = by_name(doc, "gpu")
    assert gpu["status"] == "info" and "NVML" in gpu["detail"]  # no NVIDIA GPU on this box: info, not failure
    assert by_name(doc, "database")[0]["status"] == "ok"
    assert by_name(doc, "config file")[0]["status"] == "ok"


def test_unreachable_engine_fails_with_exit_1(doctor):
    code, doc = doctor('[[engines]]\nname = "gone"\nurl = "http://127.0.0.1:9"\nkind = "ollama"\n')
    assert code == 1 and doc["ok"] is False
    assert by_name(doc, "engine gone")[0]["status"] == "fail"


def test_key_file_readable_by_others_fails_with_chmod_hint(doctor, tmp_path):
    key = tmp_path / "key"
    key.write_text("sk-secret-never-shown\n")
    key.chmod(0o644)
    with ollama_contract_server() as fake:
        code, doc = doctor(f'[[engines]]\nname = "keyed"\nurl = "{fake.url}"\nkind = "ollama"\n'
                           f'api_key_file = "{key}"\n')
    assert code == 1
    (check,) = by_name(doc, "engine keyed key file")
    assert check["status"] == "fail" and f"chmod 600 {key}" in check["detail"]
    assert "sk-secret-never-shown" not in json.dumps(doc)


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["doctor", "--no-such-flag"])
    assert exc.value.code == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_engine_listening_on_all_interfaces_without_a_key_warns(doctor):
    """A real Ollama contract server in a subprocess, bound to 0.0.0.0: reachable from other hosts, no key."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tests.fakes.ollama_server", "--host", "0.0.0.0", "--port",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              cwd=Path(__file__).resolve().parents[3])
    try:
        deadline = time.monotonic() + 20
        while not any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
                      for c in psutil.net_connections(kind="inet")):
            assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
            time.sleep(0.1)
        code, doc = doctor(f'[[engines]]\nname = "open"\nurl = "http://127.0.0.1:{port}"\nkind = "ollama"\n')
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert code == 0  # a warning, not a failure
    (exposed,) = [c for c in by_name(doc, f"process {server.pid} ") if "listens on" in c["detail"]]
    assert exposed["status"] == "warn"
    assert f"0.0.0.0:{port}" in exposed["detail"] and "no API key" in exposed["detail"]


Addr = namedtuple("Addr", "ip port")
Conn = namedtuple("Conn", "pid status laddr raddr")


def test_egress_classification():
    conns = [
        Conn(10, psutil.CONN_LISTEN, Addr("0.0.0.0", 11434), ()),
        Conn(10, psutil.CONN_ESTABLISHED, Addr("127.0.0.1", 11434), Addr("127.0.0.1", 50000)),  # a local client
        Conn(10, psutil.CONN_ESTABLISHED, Addr("10.0.0.2", 40000), Addr("104.18.0.1", 443)),  # out to the world
        Conn(11, psutil.CONN_ESTABLISHED, Addr("::1", 40001), Addr("::1", 8080)),
        Conn(12, psutil.CONN_ESTABLISHED, Addr("10.0.0.2", 40002), Addr("10.0.0.9", 8000)),  # another LAN host
        Conn(None, psutil.CONN_ESTABLISHED, Addr("10.0.0.2", 40003), Addr("1.1.1.1", 53)),  # pid unknown
        Conn(13, psutil.CONN_TIME_WAIT, Addr("10.0.0.2", 40004), Addr("8.8.8.8", 443)),  # closing: not egress
    ]
    listening, egress = classify_connections(conns)
    assert listening == {10: [Endpoint("0.0.0.0", 11434)]}
    assert egress == {10: [Endpoint("104.18.0.1", 443)], 12: [Endpoint("10.0.0.9", 8000)]}


def test_doctor_never_prints_a_traceback_on_a_broken_config(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("[[engines]]\nname = 1\n")
    assert main(["doctor", "--config", str(config)]) == 2  # a config error is a usage error
    err = capsys.readouterr().err
    assert err.startswith("enginedeck: ") and "Traceback" not in err and os.linesep in err


def test_gateways_exposure(doctor, tmp_path):
    keys = tmp_path / "gw.keys"
    keys.write_text("a 0123456789abcdef0123\n")
    keys.chmod(0o600)
    code, doc = doctor('[[gateways]]\nname = "local"\nlisten = "127.0.0.1:8181"\nupstream = "http://127.0.0.1:9"\n'
                       '[[gateways]]\nname = "shared"\nlisten = "0.0.0.0:8182"\nupstream = "http://127.0.0.1:9"\n'
                       f'keys_file = "{keys}"\n'
                       '[[gateways]]\nname = "open"\nlisten = "0.0.0.0:8183"\nupstream = "http://127.0.0.1:9"\n')
    assert code == 1
    (local,) = by_name(doc, "gateway local")
    assert local["status"] == "ok" and "loopback only" in local["detail"] and "no client keys" in local["detail"]
    shared = by_name(doc, "gateway shared")
    assert shared[0]["status"] == "info" and "reachable from other hosts" in shared[0]["detail"]
    assert shared[1]["name"] == "gateway shared keys file" and shared[1]["status"] == "ok"
    (open_,) = by_name(doc, "gateway open")
    assert open_["status"] == "fail" and "without client keys" in open_["detail"]
    assert "0123456789abcdef0123" not in json.dumps(doc)
