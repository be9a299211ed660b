"""console/engines/stream.py against small scripted loopback servers: framing, errors, TLS, arrival stamps."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from console.config import EngineConfig, Timeouts
from console.engines.stream import StreamClient
from console.engines.wire import READ_BUFFER_LIMIT, Chunked
from console.errors import (
    AuthError,
    BadResponseError,
    BusyError,
    ConfigError,
    EngineTimeoutError,
    NotFoundError,
    StreamError,
    UnreachableError,
)

RESET = object()  # in a script: abort the connection with an RST
UNTIL_CLIENT_CLOSES = object()  # in a script: send nothing more, wait for the client to hang up
Step = bytes | float | object  # bytes are written (and flushed), a float sleeps that many seconds


def head(status: int = 200, *headers: str) -> bytes:
    return ("\r\n".join([f"HTTP/1.1 {status} X", *headers]) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNKED = head(200, "Content-Type: text/event-stream", "Transfer-Encoding: chunked")
LAST = b"0\r\n\r\n"


@dataclass
class Script:
    """A one-shot server: records each request, then plays `steps` on its connection."""

    steps: Sequence[Step]
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    closed_by_client: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw = await reader.readuntil(b"\r\n\r\n")
        first, *lines = raw.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)}
        body = await reader.readexactly(int(headers.get("content-length", 0)))
        self.requests.append((first, headers, body))
        writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for step in self.steps:
                if step is RESET:
                    writer.transport.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if step is UNTIL_CLIENT_CLOSES:
                    if await reader.read() == b"":
                        self.closed_by_client.set()
                elif isinstance(step, float):
                    await asyncio.sleep(step)
                else:
                    assert isinstance(step, bytes)
                    writer.write(step)
                    await writer.drain()
            writer.close()
        except ConnectionError:
            self.closed_by_client.set()


@asynccontextmanager
async def serving(steps: Sequence[Step], *, host: str = "127.0.0.1",
                  tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[str, Script]]:
    script = Script(steps)
    server = await asyncio.start_server(script.handle, host, 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    where = f"[{host}]" if ":" in host else host
    try:
        yield f"{'https' if tls else 'http'}://{where}:{port}", script
    finally:
        server.close()


def client(url: str, **kw: object) -> StreamClient:
    return StreamClient(EngineConfig(name="box", url=url, **kw))  # type: ignore[arg-type]


async def lines_of(url: str, **kw: object) -> list[str]:
    async with client(url, **kw).open("POST", "/v1/chat/completions", json_body={"a": 1}, what="chat") as resp:
        return [line async for _, line in resp.lines()]


# --- body framing -------------------------------------------------------------------------------------------------

BODY = b"data: {\"x\": \"caf\xc3\xa9\"}\r\n\r\ndata: [DONE]\r\n\r\n"
WIRE = chunk(BODY[:17]) + chunk(BODY[17:]) + b"1;ext=1\r\n\n\r\n" + LAST  # an extension, then a trailer-less end


def test_chunked_framing_split_at_every_byte_boundary() -> None:
    for cut in range(len(WIRE) + 1):
        dec = Chunked()
        got = dec.feed(WIRE[:cut]) + dec.feed(WIRE[cut:])
        assert (got, dec.done) == (BODY + b"\n", True), cut


def test_chunked_framing_one_byte_at_a_time_with_trailers() -> None:
    wire = chunk(b"hello") + b"0\r\nX-Trailer: 1\r\n\r\nignored"
    dec = Chunked()
    assert b"".join(dec.feed(wire[i:i + 1]) for i in range(len(wire))) == b"hello" and dec.done


@pytest.mark.parametrize("wire", [b"zz\r\nab\r\n", chunk(b"abc")[:-2] + b"XY", b"1" * 5000])
def test_chunked_framing_rejects_what_is_not_chunked(wire: bytes) -> None:
    from console.engines.wire import FramingError

    with pytest.raises(FramingError):
        Chunked().feed(wire)


async def test_chunked_stream_split_across_reads_keeps_utf8_and_crlf() -> None:
    # Each step is its own write with a pause after it: é is cut between its two bytes and a CRLF between CR and LF.
    body = "data: é1\r\ndata: ok\r\n".encode()
    cut_char = body.index(b"\xc3") + 1
    cut_crlf = body.index(b"\r") + 1
    pieces = [body[:cut_char], body[cut_char:cut_crlf], body[cut_crlf:]]
    steps: list[Step] = [CHUNKED]
    for piece in pieces:
        steps += [chunk(piece)[:3], 0.01, chunk(piece)[3:], 0.01]
    async with serving([*steps, LAST]) as (url, _):
        assert await lines_of(url) == ["data: é1", "data: ok"]


async def test_content_length_body_stops_at_its_length() -> None:
    body = b'{"n": 1}\n{"n": 2}\n'
    steps = [head(200, "Content-Type: application/x-ndjson", f"Content-Length: {len(body)}"), body[:5], 0.01,
             body[5:] + b"junk after the body\n", 5.0]  # the server keeps the socket open: the length ends it
    async with serving(steps) as (url, _):
        assert await asyncio.wait_for(lines_of(url), 2) == ['{"n": 1}', '{"n": 2}']


async def test_close_delimited_body_and_a_last_line_without_newline() -> None:
    async with serving([head(200, "Content-Type: text/event-stream"), b"data: a\n", 0.01, b"data: b"]) as (url, _):
        assert await lines_of(url) == ["data: a", "data: b"]


async def test_interim_100_continue_is_skipped() -> None:
    async with serving([head(100) + CHUNKED + chunk(b"x\n") + LAST]) as (url, _):
        assert await lines_of(url) == ["x"]


async def test_whole_body_read() -> None:
    async with (serving([head(200, "Content-Length: 7") + b'{"a":1}']) as (url, _),
                client(url).open("POST", "/x", json_body={}, what="chat") as resp):
        assert resp.headers["content-length"] == "7" and await resp.read() == b'{"a":1}'


# --- the request --------------------------------------------------------------------------------------------------

async def test_request_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOX_KEY", "s3cret")
    async with serving([CHUNKED + LAST]) as (url, script):
        await lines_of(url + "/prefix", api_key_env="BOX_KEY")
    first, headers, body = script.requests[0]
    assert first == "POST /prefix/v1/chat/completions HTTP/1.1"
    assert headers["host"] == url.removeprefix("http://")
    assert headers["authorization"] == "Bearer s3cret" and headers["user-agent"] == "enginedeck"
    assert headers["content-type"] == "application/json" and int(headers["content-length"]) == len(body)
    assert headers["accept-encoding"] == "identity" and headers["connection"] == "close"
    assert json.loads(body) == {"a": 1}


def test_an_api_key_that_would_break_the_header_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOX_KEY", "abc\r\nX-Evil: 1")
    with pytest.raises(ConfigError, match="line break"):
        client("http://127.0.0.1:1", api_key_env="BOX_KEY")


async def test_ipv6_literal() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    async with serving([CHUNKED + chunk(b"v6\n") + LAST], host="::1") as (url, script):
        assert await lines_of(url) == ["v6"]
    assert script.requests[0][1]["host"] == url.removeprefix("http://")


# --- errors -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "error"), [(401, AuthError), (404, NotFoundError), (503, BusyError)])
async def test_error_statuses_become_typed_errors_with_the_body_message(status: int, error: type) -> None:
    body = json.dumps({"error": {"message": f"said {status}"}}).encode()
    async with serving([head(status, "Transfer-Encoding: chunked") + chunk(body) + LAST]) as (url, _):
        with pytest.raises(error, match=f"said {status}") as info:
            await lines_of(url)
    assert info.value.engine == "box" and info.value.status == status


async def test_error_body_that_breaks_off_still_gives_the_status() -> None:
    async with serving([head(503, "Content-Length: 100") + b"loading", 0.05, RESET]) as (url, _):
        with pytest.raises(BusyError, match="loading"):
            await lines_of(url)


async def test_connect_refused_says_cannot_connect() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(UnreachableError, match=r"cannot connect to http://127\.0\.0\.1"):
        await lines_of(url)


async def test_closed_without_an_answer_is_unreachable() -> None:
    async with serving([]) as (url, _):
        with pytest.raises(UnreachableError, match=r"broke \(closed without an answer"):
            await lines_of(url)


async def test_not_http_is_a_bad_response() -> None:
    async with serving([b"SSH-2.0-OpenSSH\r\n\r\n"]) as (url, _):
        with pytest.raises(BadResponseError, match="not HTTP"):
            await lines_of(url)


async def test_a_stream_compressed_although_asked_for_none_is_undone() -> None:
    body = gzip.compress(b"data: 1\ndata: 2\n")
    async with serving([head(200, "Content-Encoding: gzip", f"Content-Length: {len(body)}") + body]) as (url, _):
        assert await lines_of(url) == ["data: 1", "data: 2"]


async def test_an_unknown_compression_is_refused_clearly() -> None:
    async with serving([head(200, "Content-Encoding: br", "Content-Length: 3") + b"abc"]) as (url, _):
        with pytest.raises(BadResponseError, match="br-compressed"):
            await lines_of(url)


async def test_read_timeout_before_the_answer_raises() -> None:
    async with serving([1.0]) as (url, _):
        with pytest.raises(EngineTimeoutError, match=r"no answer within 0.2 s \(first_byte_timeout\)"):
            await lines_of(url, timeouts=Timeouts.within(0.2))


async def test_read_timeout_mid_body() -> None:
    async with serving([CHUNKED + chunk(b"data: 1\n"), 1.0, LAST]) as (url, _):
        got: list[str] = []
        with pytest.raises(EngineTimeoutError, match=r"no new line within 0.2 s \(idle_timeout\)"):
            async with client(url, timeouts=Timeouts.within(0.2)).open("POST", "/", json_body={}, what="x") as resp:
                async for _, line in resp.lines():
                    got.append(line)
        assert got == ["data: 1"]


async def test_slow_but_steady_stream_is_not_a_timeout() -> None:
    # Lines 0.1 s apart over 0.6 s with idle_s 0.25: the deadline is per line, not per reply.
    steps: list[Step] = [CHUNKED]
    for i in range(6):
        steps += [chunk(b"%d\n" % i), 0.1]
    async with serving([*steps, LAST]) as (url, _):
        assert await lines_of(url, timeouts=Timeouts.within(0.25)) == [str(i) for i in range(6)]


async def test_reset_mid_body_is_a_stream_error() -> None:
    async with serving([CHUNKED + chunk(b"data: 1\n"), 0.05, RESET]) as (url, _):
        with pytest.raises(StreamError, match="broke mid-reply"):
            await lines_of(url)


async def test_close_before_the_last_chunk_is_a_stream_error() -> None:
    async with serving([CHUNKED + chunk(b"data: 1\n")]) as (url, _):
        with pytest.raises(StreamError, match="before the last chunk"):
            await lines_of(url)


async def test_close_before_content_length_is_a_stream_error() -> None:
    async with serving([head(200, "Content-Length: 50") + b"data: 1\n"]) as (url, _):
        with pytest.raises(StreamError, match="42 byte"):
            await lines_of(url)


# --- lifecycle ----------------------------------------------------------------------------------------------------

async def test_cancelling_the_consumer_closes_the_connection() -> None:
    async with serving([CHUNKED + chunk(b"data: 1\n"), UNTIL_CLIENT_CLOSES]) as (url, script):
        started = asyncio.Event()

        async def consume() -> None:
            async with client(url).open("POST", "/", json_body={}, what="x") as resp:
                async for _ in resp.lines():
                    started.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(script.closed_by_client.wait(), 2)


async def test_a_slow_consumer_pauses_reading_and_loses_nothing() -> None:
    blob = b"x" * 1023 + b"\n"
    total = 4 * READ_BUFFER_LIMIT // len(blob)
    wire = CHUNKED + b"".join(chunk(blob * 64) for _ in range(total // 64)) + LAST
    async with serving([wire]) as (url, _), client(url).open("POST", "/", json_body={}, what="x") as resp:
        await asyncio.sleep(0.3)  # the server writes far more than the limit meanwhile
        assert resp._reads.paused and resp._reads.buffered <= 2 * READ_BUFFER_LIMIT
        n = sum([1 async for _ in resp.lines()])
    assert n == total // 64 * 64


async def test_stamps_are_taken_on_arrival_not_when_the_consumer_reads() -> None:
    steps = [CHUNKED + chunk(b"data: 1\n"), 0.2, chunk(b"data: 2\n") + LAST]
    async with serving(steps) as (url, _), client(url).open("POST", "/", json_body={}, what="x") as resp:
        await asyncio.sleep(0.5)  # both lines arrived meanwhile; nobody was reading
        before_reading = time.perf_counter_ns()
        stamped = [(t, line) async for t, line in resp.lines()]
    assert [line for _, line in stamped] == ["data: 1", "data: 2"]
    (t1, _), (t2, _) = stamped
    assert t2 - t1 >= 190_000_000 and t2 < before_reading


# --- TLS ----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no `openssl` command to make a test certificate (and the cryptography package is not installed)")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    return cert, key


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


async def test_tls_with_the_engines_ca_file(self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    async with serving([CHUNKED + chunk(b"secure\n") + LAST], tls=server_tls(cert, key)) as (url, _):
        assert await lines_of(url, ca_file=cert) == ["secure"]


async def test_tls_unknown_issuer_is_refused_unless_verify_is_off(self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    async with serving([CHUNKED + chunk(b"trusted anyway\n") + LAST], tls=server_tls(cert, key)) as (url, _):
        with pytest.raises(UnreachableError, match=r"cannot connect.*CERTIFICATE_VERIFY_FAILED"):
            await lines_of(url)
        assert await lines_of(url, verify_tls=False) == ["trusted anyway"]


async def test_an_unusable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="not a usable CA bundle"):
        await lines_of("https://127.0.0.1:1", ca_file=bad)
