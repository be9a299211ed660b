import os
import socket
import subprocess
import sys
import time

from console.telemetry.host import HostMonitor
from console.telemetry.processes import Endpoint, engine_processes, guess_kind, owner_of, port_of, ports_by_engine


def test_host_sample_has_sane_figures(tmp_path):
    mon = HostMonitor(model_stores=[str(tmp_path)], slow_every_s=0)
    first = mon.sample()
    assert first.net_rx_bps is None  # no rate before two samples
    second = mon.sample()
    assert second.net_rx_bps is not None and second.net_rx_bps >= 0
    assert 0 <= second.cpu_pct <= 100 and second.mem_total > second.mem_used > 0
    assert second.disks[0].path == str(tmp_path) and second.disks[0].total > 0


def test_slow_figures_are_reused_between_reads(tmp_path, monkeypatch):
    """CPU is read on every sample; memory, swap, disks and network only every slow_every_s."""
    import psutil

    mon = HostMonitor(model_stores=[str(tmp_path)], slow_every_s=3600)
    reads = {"vm": 0, "cpu": 0}
    vm, cpu = psutil.virtual_memory, psutil.cpu_percent
    monkeypatch.setattr(psutil, "virtual_memory", lambda: reads.__setitem__("vm", reads["vm"] + 1) or vm())
    monkeypatch.setattr(psutil, "cpu_percent", lambda i=None: reads.__setitem__("cpu", reads["cpu"] + 1) or cpu(i))
    samples = [mon.sample() for _ in range(3)]
    assert reads == {"vm": 1, "cpu": 3}
    assert len({(s.mem_used, s.disks) for s in samples}) == 1
    mon.slow_every_s = 0
    mon.sample()
    assert reads["vm"] == 2


def test_guess_kind():
    assert guess_kind("llama-server", []) == "llamacpp"
    assert guess_kind("ollama", ["ollama", "serve"]) == "ollama"
    assert guess_kind("python3", ["python", "-m", "vllm.entrypoints.openai.api_server"]) == "vllm"
    assert guess_kind("bash", ["bash"]) is None


def test_ports():
    assert port_of("http://127.0.0.1:8080/v1") == 8080 and port_of("https://x") == 443
    assert ports_by_engine({"a": "http://h:1234", "b": "http://h"}) == {1234: "a", 80: "b"}
    assert Endpoint("127.0.0.1", 1).loopback and Endpoint("::1", 1).loopback
    assert not Endpoint("0.0.0.0", 1).loopback and Endpoint("0.0.0.0", 1).wildcard


def test_engine_process_found_by_port_and_child_maps_to_it():
    """A listener on a known engine port is recognised; its child process maps back to it (as GPU PIDs do)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    code = ("import socket,subprocess,sys,time\n"
            f"s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen()\n"
            "c=subprocess.Popen([sys.executable,'-c','import time; time.sleep(30)'])\n"
            "print(c.pid, flush=True); time.sleep(30)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 10
        while True:
            procs = engine_processes({port: "my-engine"})
            mine = [p for p in procs if p.pid == parent.pid]
            if mine or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert mine, "the listener was not recognised as an engine process"
        proc = mine[0]
        assert proc.engine == "my-engine" and Endpoint("127.0.0.1", port) in proc.listening
        assert not proc.exposed and proc.egress == () and proc.rss > 0
        assert owner_of(child_pid, procs) == proc
        assert owner_of(os.getpid(), procs) is None
    finally:
        os.kill(child_pid, 9)
        parent.kill()
        parent.wait()
