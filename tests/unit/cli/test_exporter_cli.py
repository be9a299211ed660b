"""`enginedeck exporter`: a bad --listen or a port in use is one line and exit 2; a real run serves /metrics on
loopback and stops on SIGTERM with exit 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1:0x1"])
def test_a_bad_listen_is_a_usage_error(cli, capsys, listen):
    assert cli("exporter", "--listen", listen) == 2
    err = capsys.readouterr().err
    assert "is not HOST:PORT" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_port_in_use_is_a_usage_error(cli, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert cli("exporter", "--listen", f"127.0.0.1:{port}") == 2
    assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err


def test_the_command_serves_metrics_and_stops_on_sigterm(write_config):
    config = write_config({})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "console", "--config", str(config), "--no-discover", "exporter",
                             "--listen", f"127.0.0.1:{port}", "--host-name", "lab-box"],
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        line = proc.stderr.readline()
        assert f"serving http://127.0.0.1:{port}/metrics" in line
        text = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "enginedeck_exporter_info" not in text:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20) as resp:
                text = resp.read().decode()
        assert 'enginedeck_exporter_info{host="lab-box"' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
