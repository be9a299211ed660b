"""Lines over MAX_LINE_BYTES: every path (the index backwards and forwards, FileSource's tail, follow and
rotation) cuts them into the same pieces, and every line or piece carries its true byte offset and the number of
the file line it belongs to, so nothing after a long line drifts."""

import asyncio
import json
from itertools import pairwise

import pytest

import console.logs.index as index_mod
from console.cli import main
from console.logs.index import MAX_LINE_BYTES as MAX
from console.logs.index import FileIndex
from console.logs.line import LogLine
from console.logs.sources import FileSource, Notice, NoticeKind
from tests.agen import take

POLL = 0.02


def ordinary(tag: str, n: int) -> bytes:
    return b"".join(f"level=INFO msg={tag}{i}\n".encode() for i in range(n))


def sample() -> bytes:
    """Ordinary lines around a 200 KiB line, a line of exactly MAX bytes, and a line with a 3-byte character
    across a MAX boundary of the file."""
    data = ordinary("a", 5) + b"x" * (200 * 1024) + b"\n" + ordinary("b", 3) + b"y" * MAX + b"\n" + ordinary("c", 2)
    boundary = (len(data) // MAX + 2) * MAX
    data += b"z" * (boundary - 1 - len(data)) + "€".encode() + b"z" * 1000 + b"\n"
    return data + ordinary("d", 5)


def expected_pieces(data: bytes) -> dict[int, tuple[int, bytes]]:
    """What the docs promise, worked out independently: offset → (line number, bytes) of each line, or of each
    piece of a line over MAX bytes, which is cut at every multiple of MAX inside it."""
    pieces: dict[int, tuple[int, bytes]] = {}
    start = 0
    lines = data.split(b"\n")
    if not lines[-1]:
        lines.pop()
    for number, line in enumerate(lines, 1):
        end = start + len(line)
        cuts = [c for c in range(MAX, end, MAX) if c > start] if len(line) > MAX else []
        bounds = [start, *cuts, end]
        for a, b in pairwise(bounds):
            pieces[a] = (number, data[a:b])
        start = end + 1
    return pieces


def assert_pieces(data: bytes, lines: list[LogLine], *, numbered: bool = True) -> None:
    """`lines` are a run of consecutive pieces of `data`, each with its true offset, text and line number."""
    for line in lines:  # the file read at a line's offset gives its text (whatever the cutting rule)
        if "\ufffd" not in line.raw:  # (a piece that splits a character has U+FFFD, not its bytes)
            raw = line.raw.encode()
            assert data[line.offset:line.offset + len(raw)] == raw, f"the file at {line.offset} is not its text"
    expected = expected_pieces(data)
    offsets = [line.offset for line in lines]
    assert offsets[0] in expected, f"offset {offsets[0]} is not where a line or piece starts"
    first = list(expected).index(offsets[0])
    assert offsets == list(expected)[first:first + len(lines)]
    for line in lines:
        number, chunk = expected[line.offset]
        assert line.raw == chunk.decode("utf-8", "replace"), f"the text at offset {line.offset} differs"
        assert line.lineno == (number if numbered else None), f"line number of the piece at {line.offset}"


def test_sample_has_what_the_tests_need():
    data = sample()
    pieces = expected_pieces(data)
    assert sum(1 for n, _ in pieces.values() if n == 6) == 4  # the 200 KiB line: 4 pieces
    assert any(chunk == b"y" * MAX for _, chunk in pieces.values())  # exactly MAX: not cut
    euro = data.index("€".encode())
    assert (euro + 1) % MAX == 0 and euro + 1 in pieces  # the character is split by a cut


@pytest.mark.parametrize("step", [1, 7])  # one line at a time, or a block's ordinary lines at once
@pytest.mark.parametrize("block", [index_mod.BLOCK_SIZE, 100_000, MAX + 1])
def test_index_scrolled_back_in_steps_gives_every_piece(tmp_path, monkeypatch, block, step):
    monkeypatch.setattr(index_mod, "BLOCK_SIZE", block)
    path = tmp_path / "a.log"
    path.write_bytes(data := sample())
    with FileIndex(path) as idx:
        while idx.extend_back(step):
            pass
        assert idx.complete
        assert_pieces(data, [idx.line(i) for i in range(idx.count)])


def test_index_opened_at_every_size_cuts_the_unfinished_end_alike(tmp_path):
    path = tmp_path / "a.log"
    data = sample()
    for size in [*range(1, len(data), 47_000), *range(MAX - 2, len(data), MAX), len(data) - 1]:
        path.write_bytes(data[:size])
        with FileIndex(path) as idx:
            idx.tail(3)  # as far back as the last three pieces: line numbers only if that is the whole file
            assert_pieces(data[:size], [idx.line(i) for i in range(idx.count)], numbered=idx.complete)


def test_index_restarted_before_a_piece_ends_just_before_it(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(data := sample())
    offsets = list(expected_pieces(data))
    with FileIndex(path) as idx:
        for k in range(1, len(offsets)):
            idx.restart_before(offsets[k])
            while idx.extend_back(2):
                pass
            assert [idx.offset(i) for i in range(idx.count)] == offsets[:k]
            assert_pieces(data, [idx.line(i) for i in range(idx.count)])


def write_in_parts(data: bytes, start: int) -> list[bytes]:
    """`data[start:]` in parts that end inside the long lines, on MAX boundaries and inside a character."""
    euro = data.index("€".encode())
    cuts = {*range(start, len(data), 30_000), *range(MAX, len(data), MAX), euro + 1, euro + 2, len(data)}
    bounds = sorted(c for c in cuts if c >= start)
    return [data[a:b] for a, b in pairwise(bounds)]


def test_index_refreshed_as_the_file_grows(tmp_path):
    path = tmp_path / "a.log"
    data = sample()
    path.write_bytes(b"")
    with FileIndex(path) as idx, path.open("ab") as f:
        written = b""
        for part in write_in_parts(data, 0):
            f.write(part)
            f.flush()
            written += part
            idx.refresh()
            assert_pieces(written, [idx.line(i) for i in range(idx.count)])


@pytest.mark.parametrize("lines", [1, 4, 6, 9, 10, 1000])
async def test_file_source_tail(tmp_path, lines):
    path = tmp_path / "a.log"
    path.write_bytes(data := sample())
    events = [e async for e in FileSource(path, lines=lines, follow=False).events()]
    assert len(events) == min(lines, len(expected_pieces(data)))
    assert_pieces(data, events)


async def test_file_source_unfinished_long_end(tmp_path):
    path = tmp_path / "a.log"
    data = sample() + b"w" * (3 * MAX)
    path.write_bytes(data)
    events = [e async for e in FileSource(path, lines=1000, follow=False).events()]
    assert_pieces(data, events)


async def test_file_source_follows_a_long_line_written_in_parts(tmp_path):
    path = tmp_path / "a.log"
    data = sample()
    head = len(ordinary("a", 2))
    path.write_bytes(data[:head])
    agen = FileSource(path, lines=100, poll_s=POLL).events()
    events = await take(agen, 2)
    with path.open("ab") as f:
        for part in write_in_parts(data, head):
            f.write(part)
            f.flush()
            await asyncio.sleep(POLL * 2)  # let the source read between writes
    events += await take(agen, len(expected_pieces(data)) - 2)
    await agen.aclose()
    assert_pieces(data, events)


async def test_rotated_file_is_read_to_its_end_with_offsets(tmp_path):
    path = tmp_path / "a.log"
    data = sample()
    path.write_bytes(data[:-100])
    agen = FileSource(path, lines=1000, poll_s=POLL).events()
    old = await take(agen, len(expected_pieces(data[:-100])) - 1)  # the unfinished last line waits
    with path.open("ab") as f:
        f.write(data[-100:] + b"v" * (2 * MAX + 10))  # ... then the writer ends it and starts another
    path.rename(tmp_path / "a.log.1")
    path.write_bytes(b"new\n")
    old += await take(agen, len(expected_pieces(data + b"v" * (2 * MAX + 10))) - len(old))
    new = await take(agen, 2)
    await agen.aclose()
    assert_pieces(data + b"v" * (2 * MAX + 10), old)
    assert isinstance(new[0], Notice) and new[0].kind is NoticeKind.ROTATED and new[1].text == "new"


def test_cli_json_numbers_a_long_line_once(tmp_path, capsys):
    path = tmp_path / "a.log"
    path.write_bytes(data := sample())
    assert main(["logs", str(path), "--no-follow", "-n", "1000", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    numbers = [n for n, _ in expected_pieces(data).values()]
    assert [row["lineno"] for row in rows] == numbers
    assert rows[-1]["lineno"] == data.count(b"\n") and rows[-1]["text"] == "d4"

