"""enginedeck's own servers against hostile clients: peak RSS and threads of the server, and whether a normal request
is still served during the attack.

    .venv/bin/python bench/hostile_clients.py [--servers gateway,exporter,live] [--attacks endless_head,...]
                                              [--seconds 15] [--idle 2000] [--drippers 200]

Servers, each the installed `enginedeck` in its own process: `gateway` (in front of the Ollama contract server of
tests/fakes), `exporter` (its engine that same server) and `live` (the gateway's live socket, a unix socket).
Attacks, each for --seconds (bench/hostile_wire.py is the other way round: there the engine attacks enginedeck):

- `endless_head`: one connection sending header lines forever (the live socket: one endless ask line);
- `endless_url`: one request line whose URL never ends;
- `drip_head`: --drippers connections, each sending one byte of its head a second (slowloris);
- `idle`: --idle connections that send nothing;
- `endless_body`: a chunked POST body that never ends, no Content-Length (the gateway only);
- `slow_reader`: a long answer asked and never read (gateway: a 1 000 000-token chat stream; exporter: scrapes
  that are never read; live: a new follower that never reads every 50 ms while requests flow through the gateway).

RSS MB is the server's resident memory before the attack; peak +MB its VmHWM (Linux's high-water mark of its
resident memory) at the end of the attack, less its value before; threads are the most seen (sampled every 0.1 s).
"served" is a normal request (gateway: GET /api/tags; exporter: GET /metrics; live: a snapshot) sent once the attack
is under way (a second after the attack's connections are open: within every server's deadline for them), with a 5 s
deadline: its status and seconds. The attacker's TCP connections come from --source (127.0.0.2: another host, as
loopback can say it), the normal request from 127.0.0.1. "closed" is how many attacking connections the server had
closed by the end.
Each row starts a fresh server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.ollama_server import FakeModel, ollama_contract_server

ATTACKS = ("endless_head", "endless_url", "drip_head", "idle", "endless_body", "slow_reader")
NOT_FOR = {"live": {"endless_url", "endless_body"}, "exporter": {"endless_body"}}
SERVED_TIMEOUT_S = 5.0


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    tcp: tuple[str, int] | None  # gateway, exporter
    unix: Path | None  # the live socket
    gateway: tuple[str, int] | None = None  # the gateway the live socket belongs to (its requests make events)
    source: str = "127.0.0.2"  # where the attacker's TCP connections come from
    ready: threading.Event = field(default_factory=threading.Event)  # the attack's connections are open


@contextlib.contextmanager
def start(kind: str, exe: str, work: Path, upstream: str) -> Iterator[Server]:
    env = {**os.environ, "ENGINEDECK_DATA_DIR": str(work / "data")}
    config = work / "config.toml"
    if kind == "exporter":
        port = _free_port()
        config.write_text(f'[[engines]]\nname = "a"\nurl = "{upstream}"\nkind = "ollama"\n')
        cmd = [exe, "--no-discover", "--config", str(config), "exporter", "--listen", f"127.0.0.1:{port}"]
    else:
        config.write_text("")
        cmd = [exe, "--no-discover", "--config", str(config), "gateway", "--listen", "127.0.0.1:0", "--upstream",
               upstream, "--log-dir", str(work / "log")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=work)
    assert proc.stderr is not None
    try:
        if kind == "exporter":
            line = proc.stderr.readline().decode()
            if "serving" not in line:
                raise RuntimeError(f"the exporter did not start: {line}")
            server = Server(proc, ("127.0.0.1", port), None)
        else:
            while b'"listening"' not in (line := proc.stderr.readline()):
                if not line:
                    raise RuntimeError("the gateway did not start")
            where = ("127.0.0.1", int(json.loads(line)["port"]))
            server = Server(proc, where if kind == "gateway" else None,
                            work / "log" / "live.sock" if kind == "live" else None, gateway=where)
        threading.Thread(target=_drain, args=(proc,), daemon=True).start()
        yield server
    finally:
        proc.kill()
        proc.wait(10)


def _drain(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stderr is not None
    for _ in proc.stderr:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connect(server: Server) -> socket.socket:
    if server.unix is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(str(server.unix))
    else:
        assert server.tcp is not None
        sock = socket.create_connection(server.tcp, timeout=5, source_address=(server.source, 0))
    return sock


def _closed(sock: socket.socket) -> bool:
    """The server closed (or reset) this connection; what it sent before is read and thrown away."""
    sock.setblocking(False)
    try:
        while True:
            if not sock.recv(1 << 16):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


# ---- the attacks: each runs until `stop`, returns (connections, how many the server closed)

Attack = Callable[[Server, threading.Event], tuple[int, int]]


def endless_head(server: Server, stop: threading.Event) -> tuple[int, int]:
    first = b"" if server.unix else b"GET / HTTP/1.1\r\nHost: x\r\n"
    piece = b"a" * 4096 if server.unix else b"".join(b"X-F-%d: %s\r\n" % (i, b"v" * 200) for i in range(64))
    return 1, _flood(server, first, piece, stop)


def endless_url(server: Server, stop: threading.Event) -> tuple[int, int]:
    return 1, _flood(server, b"GET /", b"a" * 16384, stop)


def endless_body(server: Server, stop: threading.Event) -> tuple[int, int]:
    head = b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    return 1, _flood(server, head + b"4000\r\n" + b'{"a":' * 3276 + b"{\r\n", b"4000\r\n" + b" " * 16384 + b"\r\n",
                     stop)


def _flood(server: Server, first: bytes, piece: bytes, stop: threading.Event) -> int:
    sock = _connect(server)
    try:
        sock.sendall(first)
        server.ready.set()
        while not stop.is_set():
            sock.sendall(piece)
    except OSError:
        return 1  # the server closed it (or stopped reading for 5 s)
    finally:
        sock.close()
    return 0


def drip_head(server: Server, stop: threading.Event, count: int = 200) -> tuple[int, int]:
    socks, closed = _open(server, count), set()
    server.ready.set()
    # an ask (live) or a head that never ends, a byte a second
    head = b"" if server.unix else b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "
    at = 0
    while not stop.wait(1.0):
        for i, sock in enumerate(socks):
            if i in closed:
                continue
            try:
                sock.send(head[at:at + 1] or b"a")
            except OSError:
                closed.add(i)
            else:
                if _closed(sock):
                    closed.add(i)
        at += 1
    for sock in socks:
        sock.close()
    return len(socks), len(closed)


def idle(server: Server, stop: threading.Event, count: int = 2000) -> tuple[int, int]:
    return _held(server, stop, _open(server, count))


def _held(server: Server, stop: threading.Event, socks: list[socket.socket]) -> tuple[int, int]:
    """The attack's connections held until told to stop: how many, and how many the server closed meanwhile."""
    server.ready.set()
    stop.wait()
    closed = sum(_closed(sock) for sock in socks)
    for sock in socks:
        sock.close()
    return len(socks), closed


def slow_reader(server: Server, stop: threading.Event) -> tuple[int, int]:
    if server.unix is not None:
        return _stuck_followers(server, stop)
    socks = _open(server, 8)
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            if server.gateway == server.tcp:
                body = json.dumps({"model": "long:1b", "messages": [{"role": "user", "content": "go"}]}).encode()
                sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            else:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    return _held(server, stop, socks)


def _stuck_followers(server: Server, stop: threading.Event, most: int = 400) -> tuple[int, int]:
    """A new follower that never reads every 50 ms (up to `most`), while requests through the gateway make events
    as fast as it takes them."""

    def traffic() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                _get(server.gateway, "/api/tags")

    threading.Thread(target=traffic, daemon=True).start()
    socks: list[socket.socket] = []
    server.ready.set()
    while not stop.wait(0.05):
        if len(socks) < most:
            with contextlib.suppress(OSError):
                sock = _connect(server)
                sock.sendall(b"follow\n")
                socks.append(sock)
    closed = sum(_closed(sock) for sock in socks)
    for sock in socks:
        sock.close()
    return len(socks), closed


def _open(server: Server, count: int) -> list[socket.socket]:
    socks: list[socket.socket] = []
    until = time.monotonic() + 10
    while len(socks) < count and time.monotonic() < until:
        try:
            socks.append(_connect(server))
        except (BlockingIOError, TimeoutError):  # the backlog is full: wait for the server to accept
            time.sleep(0.005)
        except OSError:
            break  # refused: the attack holds what it got
    return socks


def _get(where: tuple[str, int] | None, path: str) -> int:
    assert where is not None
    with urllib.request.urlopen(f"http://{where[0]}:{where[1]}{path}", timeout=SERVED_TIMEOUT_S) as resp:
        resp.read()
        return int(resp.status)


def served(server: Server) -> str:
    started = time.monotonic()
    try:
        if server.unix is not None:
            with _connect(server) as sock:
                sock.sendall(b"snapshot\n")
                got = sock.makefile("rb").readline()
                result = json.loads(got)["event"] if got else "closed"
        else:
            result = str(_get(server.tcp, "/metrics" if server.gateway is None else "/api/tags"))
    except (OSError, ValueError) as exc:
        result = type(exc).__name__ if not hasattr(exc, "code") else str(exc.code)
    return f"{result} {time.monotonic() - started:.2f}s"


def high_water_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run(kind: str, attack: Attack, args: argparse.Namespace, exe: str, upstream: str) -> str:
    with tempfile.TemporaryDirectory() as tmp, start(kind, exe, Path(tmp), upstream) as server:
        server.source = args.source
        proc = psutil.Process(server.proc.pid)
        before_kb, threads = high_water_kb(proc.pid), proc.num_threads()
        rss_mb = proc.memory_info().rss / (1 << 20)
        stop, outcome = threading.Event(), {}
        attacker = threading.Thread(target=lambda: outcome.setdefault("r", attack(server, stop)), daemon=True)
        attacker.start()
        started, answer, ready_at = time.monotonic(), "-", None
        while time.monotonic() - started < args.seconds:
            threads = max(threads, proc.num_threads())
            if ready_at is None and server.ready.is_set():
                ready_at = time.monotonic()
            # a second into the attack: well within every server's deadline for what the attacker holds
            if answer == "-" and ready_at is not None and time.monotonic() - ready_at > 1.0:
                answer = served(server)
            time.sleep(0.1)
        peak_mb = (high_water_kb(proc.pid) - before_kb) / 1024
        stop.set()
        attacker.join(60)
        conns, closed = outcome.get("r", (0, 0))
        return f"{rss_mb:>6.1f} +{peak_mb:>6.1f} {threads:>8} {answer:>15} {closed:>6}/{conns:<6}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="gateway,exporter,live")
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--drippers", type=int, default=200)
    parser.add_argument("--source", default="127.0.0.2",
                        help="the attacker's address (another host, as loopback can say it); 127.0.0.1 is the "
                             "normal request's own")
    parser.add_argument("--exe", default=str(Path(sys.executable).with_name("enginedeck")))
    args = parser.parse_args()
    attacks: dict[str, Attack] = {
        "endless_head": endless_head, "endless_url": endless_url, "endless_body": endless_body,
        "drip_head": lambda s, stop: drip_head(s, stop, args.drippers),
        "idle": lambda s, stop: idle(s, stop, args.idle), "slow_reader": slow_reader}
    print(f"enginedeck {args.exe}; {args.seconds:g} s an attack from {args.source}, the normal request from "
          f"127.0.0.1; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"{'server':<9} {'attack':<13} {'RSS MB':>6} {'peak +MB':>7} {'threads':>8} {'served':>15} {'closed':>13}")
    long = FakeModel("long:1b", reply="word " * 1_000_000)
    with ollama_contract_server() as upstream:
        upstream.models[long.name] = long
        for kind in args.servers.split(","):
            for name in args.attacks.split(","):
                if name in NOT_FOR.get(kind, ()):
                    continue
                print(f"{kind:<9} {name:<13} {run(kind, attacks[name], args, args.exe, upstream.url)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
