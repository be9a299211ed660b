"""Engine processes on this host: PID, memory, uptime, listening sockets and outbound connections.

An engine is recognised by listening on the port of a known engine URL, or by its program name. Outbound
connections to non-loopback addresses are reported so `doctor` can answer "does any engine talk to the
outside?". GPU processes map to the engine whose process tree holds them (vLLM and the llama.cpp router run
the model in child processes).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

ENGINE_PROGRAMS = {
    "ollama": "ollama",
    "llama-server": "llamacpp",
    "vllm": "vllm",
    "sglang": "sglang",
    "text-generation-launcher": "tgi",
    "text-generation-router": "tgi",
    "lm studio": "lmstudio",
    "lms": "lmstudio",
}


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.ip).is_loopback
        except ValueError:
            return self.ip == "localhost"

    @property
    def wildcard(self) -> bool:
        return self.ip in ("0.0.0.0", "::", "")

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class EngineProcess:
    pid: int
    name: str
    kind: str | None  # guessed from the program name, None when found by port only
    engine: str | None  # the configured/discovered engine whose port it listens on
    cmdline: str
    rss: int
    uptime_s: float
    listening: tuple[Endpoint, ...]
    egress: tuple[Endpoint, ...]  # established connections to non-loopback remote addresses

    @property
    def exposed(self) -> bool:
        """Listening on an address other hosts can reach."""
        return any(not e.loopback for e in self.listening)


def guess_kind(name: str, cmdline: Iterable[str]) -> str | None:
    lowered = name.lower()
    for program, kind in ENGINE_PROGRAMS.items():
        if lowered.startswith(program):
            return kind
    joined = " ".join(cmdline).lower()
    if "vllm.entrypoints" in joined or " vllm serve" in joined:
        return "vllm"
    if "sglang.launch_server" in joined:
        return "sglang"
    return None


def classify_connections(conns: Iterable[Any]) -> tuple[dict[int, list[Endpoint]], dict[int, list[Endpoint]]]:
    """Split psutil's connection records into {pid: listening endpoints} and {pid: established remotes that are
    not loopback} (the egress the doctor reports). Pure, so it is tested on records made up in the test."""
    listening: dict[int, list[Endpoint]] = {}
    egress: dict[int, list[Endpoint]] = {}
    for c in conns:
        if c.pid is None:
            continue
        if c.status == psutil.CONN_LISTEN and c.laddr:
            listening.setdefault(c.pid, []).append(Endpoint(c.laddr.ip, c.laddr.port))
        elif c.status == psutil.CONN_ESTABLISHED and c.raddr:
            remote = Endpoint(c.raddr.ip, c.raddr.port)
            if not remote.loopback:
                egress.setdefault(c.pid, []).append(remote)
    return listening, egress


def _connections() -> tuple[dict[int, list[Endpoint]], dict[int, list[Endpoint]]]:
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        return {}, {}
    return classify_connections(conns)


def engine_processes(engine_ports: Mapping[int, str] | None = None) -> list[EngineProcess]:
    """Processes that are engines: by a listening port in `engine_ports` (port -> engine name) or by name.

    Blocking (reads /proc); run it in a thread from the UI.
    """
    engine_ports = engine_ports or {}
    listening, egress = _connections()
    now = time.time()
    found: list[EngineProcess] = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "create_time", "memory_info"]):
        info = proc.info
        pid, name = info["pid"], info.get("name") or ""
        cmdline = info.get("cmdline") or []
        ports = listening.get(pid, [])
        engine = next((engine_ports[e.port] for e in ports if e.port in engine_ports), None)
        kind = guess_kind(name, cmdline)
        if engine is None and kind is None:
            continue
        mem = info.get("memory_info")
        found.append(EngineProcess(
            pid=pid, name=name, kind=kind, engine=engine,
            cmdline=" ".join(cmdline)[:300],
            rss=mem.rss if mem else 0,
            uptime_s=max(0.0, now - (info.get("create_time") or now)),
            listening=tuple(sorted(set(ports), key=lambda e: e.port)),
            egress=tuple(egress.get(pid, [])),
        ))
    return found


def port_of(url: str) -> int | None:
    """The TCP port a URL points at, with the scheme's default."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None


def ports_by_engine(urls: Mapping[str, str]) -> dict[int, str]:
    """{port: engine name} for engine name -> URL, to recognise engine processes by what they listen on."""
    return {port: name for name, url in urls.items() if (port := port_of(url))}


def owner_of(pid: int, processes: Iterable[EngineProcess]) -> EngineProcess | None:
    """The engine process that is `pid` or one of its ancestors."""
    by_pid = {p.pid: p for p in processes}
    if pid in by_pid:
        return by_pid[pid]
    try:
        for parent in psutil.Process(pid).parents():
            if parent.pid in by_pid:
                return by_pid[parent.pid]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return None
