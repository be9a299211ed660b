"""A synthetic OpenAI-compatible engine whose timings are known: the probe's measurement truth.

It runs in its own process (so it never shares the probe's event loop) on a free loopback port and streams
`/v1/chat/completions` as SSE with a configurable time to first token, inter-token delay, tokens per chunk and
number of slots (requests beyond them wait in a FIFO queue). It can send a role-only first chunk and `: ping`
comments at once, usage at the end (when asked with include_usage) or on every chunk (continuous usage), and it
injects failures: 503s, mid-stream disconnects, empty streams and stalls.

asyncio sleeps overshoot, so tests must not compare the probe with the configuration: the engine stamps the
ACTUAL send time of every chunk with `time.perf_counter_ns()` (CLOCK_MONOTONIC on Linux, the same clock in
every process of the host) and serves those stamps at GET /_truth. Deadlines are absolute (slot start + TTFT +
i × ITL), so one late wake-up does not shift the rest; how late each chunk went out is recorded too.

    python -m tests.fakes.synthetic_engine --ttft 0.2 --itl 0.02 --slots 4      # prints "PORT <n> CONTROL <n>"

In tests, the `synthetic_engine` fixture is a factory: `eng = synthetic_engine(ttft_s=0.2, itl_s=0.02)`;
`eng.url`, `eng.truth()`, `eng.reset()`; the process is stopped at the end of the test. `Sent.of(record)` reads one
request's figures from the engine's stamps: TTFT from its arrival of the request, TPOT and the chunk gaps.

One Python process falls behind at a few hundred fast streams (its lateness then reaches the client as bursts),
so `SyntheticEngine(knobs, processes=K)` serves from K processes sharing one port (SO_REUSEPORT: the kernel
spreads the connections). Each process also listens on a control port of its own, and `truth()` gathers every
process's records; the most requests in flight at once is then computed from their open/end stamps. Slots
and the FIFO queue live in one process, so K > 1 is for unlimited slots only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.http_fake import chunk_frame, parse_head, sse_frame

MODEL = "synthetic"
TAG_RE = re.compile(r"^\[([^\]]{1,64})\]")
MAX_TRUTH = 200_000  # requests remembered; a benchmark run stays far below


@dataclass(frozen=True)
class Knobs:
    ttft_s: float = 0.05  # slot start → first content chunk
    itl_s: float = 0.01  # between two tokens
    tokens: int | None = None  # output tokens per reply; None: the request's max_tokens (default 16)
    tokens_per_chunk: int = 1
    slots: int = 0  # requests served at once; 0 = unlimited. Beyond the slots: a FIFO queue
    role_first: bool = True  # send a role-only chunk and a `: ping` comment as soon as the request arrives
    usage: bool = True  # honour stream_options.include_usage with a final usage chunk
    continuous_usage: bool = False  # cumulative usage on every chunk (vLLM continuous_usage_stats)
    busy_rate: float = 0.0  # share of requests answered 503 at once
    disconnect_rate: float = 0.0  # share cut off (socket aborted) halfway through
    empty_rate: float = 0.0  # share that finish without one content chunk
    stall_rate: float = 0.0  # share that pause `stall_s` halfway through
    stall_s: float = 5.0
    slowdown: float = 0.0  # each request served makes the next TTFT longer by this share (a noisy, drifting box)
    seed: int = 7


# ---------------------------------------------------------------------------------------------- the server


class _Server:
    def __init__(self, knobs: Knobs) -> None:
        self.k = knobs
        self.rng = random.Random(knobs.seed)
        self.slots = asyncio.Semaphore(knobs.slots) if knobs.slots > 0 else None
        self.truth: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.served = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                method, path, headers = parse_head(await reader.readuntil(b"\r\n\r\n"))
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if not await self.route(method, path, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def route(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must close."""
        if method == "POST" and path == "/v1/chat/completions":
            return await self.chat(json.loads(body or b"{}"), writer)
        if method == "GET" and path == "/_truth":
            return self.send_json(writer, 200, {"requests": self.truth, "max_in_flight": self.max_in_flight})
        if method == "POST" and path == "/_reset":
            self.truth.clear()
            self.max_in_flight = self.in_flight
            return self.send_json(writer, 200, {"ok": True})
        if method == "GET" and path == "/v1/models":
            return self.send_json(writer, 200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        if method == "GET" and path == "/health":
            return self.send_json(writer, 200, {"status": "ok"})
        return self.send_json(writer, 404, {"error": {"message": f"no route {path}"}})

    @staticmethod
    def send_json(writer: asyncio.StreamWriter, status: int, obj: Any) -> bool:
        data = json.dumps(obj).encode()
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}.get(status, "Error")
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        return True

    def outcome(self) -> str:
        k, r = self.k, self.rng.random()
        for name, rate in (("busy", k.busy_rate), ("disconnect", k.disconnect_rate), ("empty", k.empty_rate),
                           ("stall", k.stall_rate)):
            if r < rate:
                return name
            r -= rate
        return "ok"

    async def chat(self, req: Mapping[str, Any], writer: asyncio.StreamWriter) -> bool:
        arrival = time.perf_counter_ns()
        k = self.k
        messages = req.get("messages") or [{}]
        match = TAG_RE.match(str(messages[-1].get("content", "")))
        rec: dict[str, Any] = {"tag": match.group(1) if match else None, "arrival_ns": arrival,
                               "outcome": self.outcome(), "chunks": [], "late_ns": []}
        if len(self.truth) < MAX_TRUTH:
            self.truth.append(rec)
        if rec["outcome"] == "busy":
            rec["end_ns"] = time.perf_counter_ns()
            return self.send_json(writer, 503, {"error": {"message": "synthetic engine busy", "code": 503}})
        n_tokens = k.tokens if k.tokens is not None else int(req.get("max_tokens") or 16)
        want_usage = k.usage and bool((req.get("stream_options") or {}).get("include_usage"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        send = _ChunkWriter(writer)
        rec["open_ns"] = time.perf_counter_ns()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if k.role_first:
                send.event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
                send.raw(b": ping\n\n")
                await writer.drain()
            if self.slots is not None:
                await self.slots.acquire()
            try:
                return await self.generate(rec, n_tokens, want_usage, send, writer)
            finally:
                if self.slots is not None:
                    self.slots.release()
        finally:
            self.in_flight -= 1
            rec["end_ns"] = time.perf_counter_ns()

    async def generate(self, rec: dict[str, Any], n_tokens: int, want_usage: bool, send: _ChunkWriter,
                       writer: asyncio.StreamWriter) -> bool:
        k = self.k
        start = time.perf_counter_ns()
        rec["slot_ns"] = start
        outcome = rec["outcome"]
        if not k.role_first:
            send.event({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}, flush_with_next=True)
        if outcome == "empty":
            await _sleep_until(start + int(k.ttft_s * 1e9))
            n_tokens = 0
        ttft_ns, itl_ns = int(k.ttft_s * (1.0 + k.slowdown * self.served) * 1e9), int(k.itl_s * 1e9)
        self.served += 1
        sent = 0
        stall_done = False
        while sent < n_tokens:
            take = min(k.tokens_per_chunk, n_tokens - sent)
            last_token = sent + take - 1  # the chunk goes out when its last token is "generated"
            deadline = start + ttft_ns + last_token * itl_ns
            if outcome in ("disconnect", "stall") and sent >= n_tokens // 2 and not stall_done:
                if outcome == "disconnect":
                    await writer.drain()
                    writer.transport.abort()
                    return False
                await asyncio.sleep(k.stall_s)
                stall_done = True
                start += int(k.stall_s * 1e9)
                deadline += int(k.stall_s * 1e9)
            await _sleep_until(deadline)
            sent += take
            chunk: dict[str, Any] = {"choices": [{"index": 0, "delta": {"content": " tok" * take}}]}
            if k.continuous_usage:
                chunk["usage"] = {"prompt_tokens": 10, "completion_tokens": sent, "total_tokens": 10 + sent}
            t = send.event(chunk)
            rec["chunks"].append([t, take])
            rec["late_ns"].append(t - deadline)
            await writer.drain()
        send.event({"choices": [{"index": 0, "delta": {}, "finish_reason": "length" if sent else "stop"}]})
        if want_usage:
            send.event({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": sent,
                                                 "total_tokens": 10 + sent}})
        send.raw(b"data: [DONE]\n\n")
        send.raw(b"")  # the last chunk of the chunked body
        await writer.drain()
        return True


class _ChunkWriter:
    """HTTP/1.1 chunked encoding over a StreamWriter; returns the send stamp of each write."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.pending = b""

    def event(self, obj: Any, *, flush_with_next: bool = False) -> int:
        data = sse_frame(json.dumps(obj, separators=(",", ":")))
        if flush_with_next:
            self.pending += data
            return time.perf_counter_ns()
        return self.raw(data)

    def raw(self, data: bytes) -> int:
        data, self.pending = self.pending + data, b""
        t = time.perf_counter_ns()
        self.writer.write(chunk_frame(data))
        return t


async def _sleep_until(deadline_ns: int) -> None:
    delay = deadline_ns - time.perf_counter_ns()
    if delay > 0:
        await asyncio.sleep(delay / 1e9)


async def _serve(knobs: Knobs, port: int, reuse_port: bool) -> None:
    server = _Server(knobs)
    srv = await asyncio.start_server(server.handle, "127.0.0.1", port, backlog=1024, reuse_port=reuse_port or None)
    control = await asyncio.start_server(server.handle, "127.0.0.1", 0)  # this process's own truth
    print(f"PORT {srv.sockets[0].getsockname()[1]} CONTROL {control.sockets[0].getsockname()[1]}", flush=True)
    async with srv, control:
        await asyncio.gather(srv.serve_forever(), control.serve_forever())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="synthetic OpenAI-compatible engine with recorded send times")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reuse-port", action="store_true", help="share --port with other processes")
    parser.add_argument("--knobs", default="{}", help="JSON object of Knobs fields")
    for f in fields(Knobs):
        if f.type in ("float", "int"):
            parser.add_argument(f"--{f.name.removesuffix('_s').replace('_', '-')}", dest=f.name,
                                type=float if f.type == "float" else int)
    args = parser.parse_args(argv)
    values = json.loads(args.knobs)
    values.update({f.name: getattr(args, f.name) for f in fields(Knobs) if getattr(args, f.name, None) is not None})
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(Knobs(**values), args.port, args.reuse_port))


# ---------------------------------------------------------------------------------------------- the client side


class SyntheticEngine:
    """A running synthetic engine: one process, or `processes` sharing a port. `truth()` returns what it sent."""

    def __init__(self, knobs: Knobs, processes: int = 1) -> None:
        if processes < 1 or (processes > 1 and knobs.slots):
            raise ValueError("processes must be ≥ 1, and slots (one FIFO queue) need a single process")
        self.knobs = knobs
        self.procs: list[subprocess.Popen[str]] = []
        self.control_urls: list[str] = []
        try:
            self.port = self._start(0, reuse_port=processes > 1)
            for _ in range(processes - 1):
                self._start(self.port, reuse_port=True)
        except BaseException:
            self.stop()
            raise
        self.url = f"http://127.0.0.1:{self.port}"

    def _start(self, port: int, *, reuse_port: bool) -> int:
        root = Path(__file__).resolve().parents[2]
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.synthetic_engine", "--knobs", json.dumps(asdict(self.knobs)),
             "--port", str(port), *(["--reuse-port"] if reuse_port else [])],
            cwd=root, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)},
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"synthetic engine did not start: {line!r}")
        _, served, _, control = line.split()
        self.control_urls.append(f"http://127.0.0.1:{control}")
        return int(served)

    @staticmethod
    def _call(url: str, method: str, path: str) -> Any:
        req = urllib.request.Request(url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def truth(self) -> dict[str, Any]:
        parts = [self._call(url, "GET", "/_truth") for url in self.control_urls]
        if len(parts) == 1:
            return parts[0]
        requests = [r for p in parts for r in p["requests"]]
        return {"requests": requests, "max_in_flight": _most_at_once(requests)}

    def truth_by_tag(self) -> dict[str, dict[str, Any]]:
        return {r["tag"]: r for r in self.truth()["requests"] if r["tag"]}

    def reset(self) -> None:
        for url in self.control_urls:
            self._call(url, "POST", "/_reset")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def __enter__(self) -> SyntheticEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Sent:
    """One request as the engine's own stamps tell it: TTFT from its arrival to its first content chunk's send,
    TPOT and the gaps between content chunks from their send stamps (the same clock as the probe's)."""

    arrival_ns: int
    first_ns: int
    ttft_s: float
    tpot_s: float | None
    gaps_s: tuple[float, ...]

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Sent:
        chunks = record["chunks"]
        first, k1 = chunks[0]
        tokens = sum(k for _, k in chunks)
        tpot = (chunks[-1][0] - first) / 1e9 / (tokens - k1) if tokens > k1 else None
        gaps = tuple((b[0] - a[0]) / 1e9 for a, b in itertools.pairwise(chunks))
        return cls(record["arrival_ns"], first, (first - record["arrival_ns"]) / 1e9, tpot, gaps)


def _most_at_once(requests: list[dict[str, Any]]) -> int:
    """Most streams open at one instant, from every process's open/end stamps (one clock across processes)."""
    now = time.perf_counter_ns()
    edges = sorted(e for r in requests if "open_ns" in r for e in ((r["open_ns"], 1), (r.get("end_ns", now), -1)))
    most = depth = 0
    for _, step in edges:
        depth += step
        most = max(most, depth)
    return most


@pytest.fixture(name="synthetic_engine")
def synthetic_engine_fixture() -> Iterator[Callable[..., SyntheticEngine]]:
    """Factory: `synthetic_engine(ttft_s=0.2, itl_s=0.02, slots=4)` starts one (`processes=K`: K sharing a port);
    all stop after the test."""
    started: list[SyntheticEngine] = []

    def start(processes: int = 1, **knobs: Any) -> SyntheticEngine:
        eng = SyntheticEngine(Knobs(**knobs), processes)
        started.append(eng)
        return eng

    yield start
    for eng in started:
        eng.stop()


if __name__ == "__main__":
    main()
