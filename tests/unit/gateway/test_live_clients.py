"""Hostile readers of the gateway's live socket: a follower that never reads is dropped and cut, and what waits for
it stays bounded (counted in queued lines, not RSS); connections past the cap are refused; a reader that never
asks, or asks and never reads, is closed at its deadline."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import select
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from console.gateway import live as live_mod
from console.gateway.live import Live
from console.gateway.record import RequestRecord

QUEUE = 50
WRITE_TIMEOUT_S = 1.0


@pytest.fixture(autouse=True)
def small_bounds(monkeypatch):
    monkeypatch.setattr(live_mod, "FOLLOW_QUEUE", QUEUE)
    monkeypatch.setattr(live_mod, "WRITE_TIMEOUT_S", WRITE_TIMEOUT_S, raising=False)
    monkeypatch.setattr(live_mod, "ASK_TIMEOUT_S", 1.0, raising=False)
    monkeypatch.setattr(live_mod, "MAX_READERS", 4, raising=False)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[Live, Path]]:
    view = Live("front", "http://127.0.0.1:1")
    path = tmp_path / "live.sock"
    server = await view.serve(path)
    try:
        yield view, path
    finally:
        view.close()
        server.close()


def _record(n: int, size: int = 2000) -> RequestRecord:
    # a long path makes each event ~2 KB, so the socket's own buffers fill after a few hundred events
    return RequestRecord(request_id=f"r{n}", started=time.time(), method="POST", path="/api/chat/" + "p" * size,
                         client_ip="127.0.0.1", client="team-a", user_agent="t", upstream="http://127.0.0.1:1",
                         model="llama3")


def _queued(view: Live) -> int:
    """Lines the gateway holds for its readers: every connection's, dropped or not."""
    readers = getattr(view, "readers", None)
    if readers is None:  # the code before the bound (one asyncio.Queue a follower): so this test fails there
        return sum(q.qsize() for q in gc.get_objects() if isinstance(q, asyncio.Queue))
    return sum(len(reader.lines) for reader in readers)


async def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, str(path))
    return sock


async def _following(view: Live, n: int) -> None:
    """Until the gateway has taken `n` followers (or 2 s went by: the test's own assertions then say what is wrong)."""
    for _ in range(100):
        if len(view.followers) == n:
            return
        await asyncio.sleep(0.02)


def _hung_up(sock: socket.socket) -> bool:
    """The gateway closed its end (whatever is still unread on ours)."""
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP)
    return bool(poller.poll(0))


def _read_all(sock: socket.socket) -> bytes | None:
    """Everything the gateway sent, if it closed the connection; None while it is still open."""
    sock.setblocking(True)
    sock.settimeout(0.5)
    got = b""
    try:
        while chunk := sock.recv(1 << 16):
            got += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return got


async def test_a_follower_that_never_reads_is_dropped_and_cut_and_its_queue_stays_bounded(live):
    view, path = live
    stuck = await _connect(path)
    stuck.send(b"follow\n")
    for _ in range(100):
        if view.followers:
            break
        await asyncio.sleep(0.02)
    assert view.followers
    worst = 0
    for n in range(3000):  # ~6 MB of events: far more than the socket's and the transport's buffers
        rec = _record(n)
        view.start(rec)
        view.end(rec)
        if n % 50 == 0:
            worst = max(worst, _queued(view))
            await asyncio.sleep(0)  # let the connection's writer run
    assert not view.followers  # dropped
    assert worst <= QUEUE + 1
    # never read: the gateway cuts it at the write deadline (the reader sees its end without reading a byte) and
    # forgets it; nothing is held for it any more
    for _ in range(int((WRITE_TIMEOUT_S + 5) / 0.05)):
        if _hung_up(stuck):
            break
        await asyncio.sleep(0.05)
    assert _hung_up(stuck), "the gateway still holds a follower that never reads"
    await asyncio.sleep(0.1)
    assert _queued(view) == 0 and not view.readers
    got = await asyncio.to_thread(_read_all, stuck)
    stuck.close()
    assert got is not None  # closed: what the kernel held, then the end
    lines = got.split(b"\n")
    assert json.loads(lines[0])["event"] == "snapshot"
    assert len(lines) < 3000  # the reader did not get (nor did the gateway keep) the events it fell behind on


async def test_a_slow_follower_is_dropped_with_a_last_line_and_a_quick_one_keeps_following(live):
    view, path = live
    slow, quick = await _connect(path), await _connect(path)
    slow.send(b"follow\n")
    quick.send(b"follow\n")
    await _following(view, 2)
    loop = asyncio.get_running_loop()
    quick_lines = b""
    for n in range(400):
        rec = _record(n)
        view.start(rec)
        view.end(rec)
        await asyncio.sleep(0)
        with contextlib.suppress(BlockingIOError):
            quick_lines += quick.recv(1 << 20)
    assert len(view.followers) == 1  # the quick one stays
    quick.setblocking(True)
    quick.settimeout(2)
    while quick_lines.count(b'"event": "end"') < 400:
        quick_lines += await loop.run_in_executor(None, quick.recv, 1 << 20)
    quick.close()
    assert quick_lines.count(b'"event": "dropped"') == 0
    got = await asyncio.to_thread(_read_all, slow)
    slow.close()
    assert got is not None  # the slow one was closed


async def _snapshot(path: Path) -> dict:
    reader, writer = await asyncio.open_unix_connection(str(path), limit=16 << 20)
    try:
        writer.write(b"snapshot\n")
        return json.loads(await asyncio.wait_for(reader.readline(), 5))
    finally:
        writer.close()


async def test_idle_connections_make_room_for_a_reader_that_asks_and_are_closed_at_the_ask_deadline(live):
    view, path = live
    idle = [await _connect(path) for _ in range(4)]  # the cap, none of them asking
    await asyncio.sleep(0.2)
    assert len(view.readers) == 4
    assert (await _snapshot(path))["event"] == "snapshot"  # served, full as it was
    assert _hung_up(idle[0]) and not any(_hung_up(sock) for sock in idle[1:])  # the oldest idle one made room
    await asyncio.sleep(1.5)  # past the ask deadline: every idle one is closed and forgotten
    assert not view.readers
    for sock in idle:
        assert await asyncio.to_thread(_read_all, sock) == b""
        sock.close()


async def test_past_the_cap_of_readers_that_asked_a_newcomer_is_refused(live):
    view, path = live
    followers = [await _connect(path) for _ in range(4)]
    for sock in followers:
        sock.send(b"follow\n")
    await _following(view, 4)
    extra = await _connect(path)
    got = await asyncio.to_thread(_read_all, extra)
    extra.close()
    assert got is not None and json.loads(got)["event"] == "refused"
    assert len(view.followers) == 4 and not any(_hung_up(sock) for sock in followers)
    for sock in followers:
        sock.close()


async def test_followers_that_were_dropped_make_room_for_a_reader_that_asks(live, monkeypatch):
    monkeypatch.setattr(live_mod, "WRITE_TIMEOUT_S", 30.0, raising=False)  # none is cut while the test runs
    view, path = live
    stuck = [await _connect(path) for _ in range(4)]  # the cap, all following, none reading
    for sock in stuck:
        sock.send(b"follow\n")
    await _following(view, 4)
    for n in range(300):  # 20 KB events: each follower's transport holds more than it lets drain return on
        rec = _record(n, size=20_000)
        view.start(rec)
        view.end(rec)
        if n % 10 == 0:
            await asyncio.sleep(0)
    assert not view.followers and len(view.readers) == 4  # all dropped, none cut yet
    assert (await _snapshot(path))["event"] == "snapshot"
    for sock in stuck:
        sock.close()
