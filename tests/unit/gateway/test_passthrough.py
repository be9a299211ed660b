"""Byte for byte: the body a client gets through the gateway is the engine's, each read forwarded as it came (an
event split across two writes arrives in two pieces, the first before the engine sent the second)."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx

from tests.fakes.http_fake import LoopServer, chunk_frame
from tests.unit.gateway.conftest import forwarded, verify

PIECES = [b'data: {"choices":[{"delta":{"content":"he', b'llo"}}]}\n\n: ping\r\n\r\n',
          b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n', b"data: [DONE]\n\n"]
GAP_S = 0.3


class Scripted(LoopServer):
    """Writes PIECES as chunks, GAP_S apart, and notes when each went out."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[float] = []
        self.head = b""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in self.head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Engine: scripted\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for piece in PIECES:
            writer.write(chunk_frame(piece))
            await writer.drain()
            self.sent.append(time.monotonic())
            await asyncio.sleep(GAP_S)
        writer.write(chunk_frame(b""))
        await writer.drain()
        writer.close()


def test_bytes_and_pieces_pass_unchanged(gateway) -> None:
    engine = Scripted().start()
    try:
        gw = gateway(engine.url)
        got: list[tuple[float, bytes]] = []
        with httpx.stream("POST", f"{gw.url}/v1/chat/completions?x=1", json={"model": "m", "stream": True},
                          headers={"Authorization": "Bearer client-key-0123456789", "Cookie": "a=b"}) as r:
            assert r.headers["x-engine"] == "scripted" and r.headers["content-type"] == "text/event-stream"
            for piece in r.iter_raw():
                got.append((time.monotonic(), piece))
        assert b"".join(p for _, p in got) == b"".join(PIECES)
        assert [p for _, p in got] == PIECES  # no piece merged or split
        assert got[0][0] < engine.sent[1]  # forwarded before the engine wrote the next piece
        head = engine.head.lower()
        assert b"post /v1/chat/completions?x=1 http/1.1" in head
        assert b"authorization" not in head and b"client-key" not in head  # the client's key never reaches it
        (rec,) = gw.wait_records(1)
        assert (rec["tokens_in"], rec["tokens_out"], rec["stream"]) == (3, 1, True)
        assert rec["bytes_out"] == len(b"".join(PIECES)) and rec["path"] == "/v1/chat/completions"
        verify(gw)
    finally:
        engine.stop()


def test_concurrent_streams_each_get_their_own_record(gateway, synthetic_engine) -> None:
    eng = synthetic_engine(ttft_s=0.01, itl_s=0.005)
    gw = gateway(eng.url)
    bodies: list[bytes] = []

    def one(i: int) -> None:
        r = httpx.post(f"{gw.url}/v1/chat/completions", timeout=30,
                       json={"model": "synthetic", "max_tokens": 5 + i, "stream": True,
                             "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "x"}]})
        bodies.append(r.content)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    recs = gw.wait_records(8)
    assert sorted(r["tokens_out"] for r in recs) == [5 + i for i in range(8)]
    assert len({r["request_id"] for r in recs}) == 8 and all(b"[DONE]" in b for b in bodies)
    verify(gw)


def test_engine_connections_are_kept_alive_between_requests(gateway, ollama_server) -> None:
    gw = gateway(ollama_server.url)
    for _ in range(3):
        assert httpx.get(f"{gw.url}/api/tags").status_code == 200
    r = httpx.post(f"{gw.url}/api/chat", json={"model": "llama3.2:1b", "stream": False,
                                                "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    peers = {rec.peer for rec in forwarded(ollama_server)}
    assert len(forwarded(ollama_server)) == 4 and len(peers) == 1  # one connection for all four


def test_a_client_that_leaves_after_done_had_its_answer(gateway) -> None:
    engine = Scripted().start()  # [DONE] goes out GAP_S before the body's end
    try:
        gw = gateway(engine.url)
        with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json={"model": "m", "stream": True}) as r:
            for line in r.iter_lines():
                if line == "data: [DONE]":
                    break  # and close, as some clients do, before the chunked body's last bytes
        early = Scripted().start()
        try:
            gw2 = gateway(early.url, log_dir=gw.log_dir.parent / "log2")
            with httpx.stream("POST", f"{gw2.url}/v1/chat/completions", json={"model": "m", "stream": True}) as r:
                for line in r.iter_lines():
                    if line.startswith("data: {\"choices\":[],"):
                        break  # the usage went by, [DONE] did not
            (left_early,) = gw2.wait_records(1)
        finally:
            early.stop()
        (rec,) = gw.wait_records(1)
        assert rec["outcome"] == "ok" and (rec["tokens_in"], rec["tokens_out"]) == (3, 1)
        assert left_early["outcome"] == "client_disconnect"
        assert (left_early["tokens_in"], left_early["tokens_out"]) == (3, 1)  # what the engine said before it left
    finally:
        engine.stop()
