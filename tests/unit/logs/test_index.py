import re

import pytest

import console.logs.index as index_mod
from console.logs.filter import LogFilter
from console.logs.index import FileIndex


def _write(path, n, *, end_newline=True):
    text = "\n".join(f"level=INFO msg=line{i}" for i in range(n))
    path.write_text(text + ("\n" if end_newline else ""))


@pytest.fixture
def small_blocks(monkeypatch):
    # Small blocks and line cap so a few KB exercise the block-boundary paths of a GB file.
    monkeypatch.setattr(index_mod, "BLOCK_SIZE", 64)
    monkeypatch.setattr(index_mod, "MAX_LINE_BYTES", 48)


@pytest.mark.parametrize("end_newline", [True, False])
def test_tail_reads_only_the_end(tmp_path, small_blocks, end_newline):
    path = tmp_path / "a.log"
    _write(path, 500, end_newline=end_newline)
    with FileIndex(path) as idx:
        last = idx.tail(3)
        assert [line.text for line in last] == ["line497", "line498", "line499"]
        assert not idx.complete and idx.count == 3


def test_scroll_back_to_the_start_numbers_every_line(tmp_path, small_blocks):
    path = tmp_path / "a.log"
    _write(path, 300)
    with FileIndex(path) as idx:
        idx.tail(1)
        while idx.extend_back(7):
            pass
        assert idx.complete and idx.count == 300
        assert [idx.line(i).text for i in (0, 150, 299)] == ["line0", "line150", "line299"]
        assert idx.line(0).lineno == 1 and idx.line(299).lineno == 300
        assert idx.line(42).offset == path.read_bytes().index(b"msg=line42\n") - len("level=INFO ")


def test_overlong_line_is_split_not_read_whole(tmp_path, small_blocks):
    path = tmp_path / "a.log"
    path.write_bytes(b"short\n" + b"x" * 500 + b"\nend\n")
    with FileIndex(path) as idx:
        while idx.extend_back(100):
            pass
        raws = [idx.raw(i) for i in range(idx.count)]
        assert raws[0] == b"short" and raws[-1] == b"end"
        assert b"".join(raws[1:-1]) == b"x" * 500 and all(len(r) <= 48 for r in raws)


def test_refresh_indexes_appended_lines_and_a_growing_unfinished_line(tmp_path):
    path = tmp_path / "a.log"
    path.write_text("a\nb")
    with FileIndex(path) as idx:
        assert [idx.line(i).text for i in range(idx.count)] == ["b"]
        with path.open("a") as f:
            f.write("c\nd\n")
        idx.refresh()
        idx.extend_back(10)
        assert [idx.line(i).text for i in range(idx.count)] == ["a", "bc", "d"]
        with path.open("a") as f:
            f.write("e\n")
        assert idx.refresh() == 1 and idx.line(idx.count - 1).text == "e"


def test_rotation_and_truncation_are_detected(tmp_path):
    path = tmp_path / "a.log"
    _write(path, 10)
    with FileIndex(path) as idx:
        assert idx.changed() is None
        path.write_text("")
        assert idx.changed() == "truncated"
        path.rename(tmp_path / "a.log.1")
        path.write_text("new\n")
        assert idx.changed() == "rotated"
        idx.reopen()
        assert idx.tail(5)[0].text == "new"


def test_search_next_and_previous(tmp_path, small_blocks):
    path = tmp_path / "a.log"
    _write(path, 200)
    with FileIndex(path) as idx:
        idx.tail(5)
        found = idx.find(re.compile(r"line1[0-9]$"), idx.count - 1, forward=False)
        assert found is not None and idx.line(found).text == "line19"
        found += idx.extend_back(10)  # positions shift by what was prepended
        nxt = idx.find(LogFilter.build(regex=r"line1[0-9]$"), found - 5, forward=True)
        assert nxt is not None and idx.line(nxt).text == "line15"
        assert idx.find(re.compile("nope"), idx.count - 1, forward=False) is None
        assert idx.complete


def test_decoded_lines_are_capped(tmp_path):
    path = tmp_path / "a.log"
    _write(path, 100)
    with FileIndex(path, cache_size=10) as idx:
        idx.tail(100)
        assert len(idx._cache) == 10


def test_missing_file_is_a_clear_error(tmp_path):
    from console.errors import LogSourceError

    with pytest.raises(LogSourceError, match="cannot open"):
        FileIndex(tmp_path / "nope.log")


def test_lines_before_a_known_offset(tmp_path, small_blocks):
    path = tmp_path / "a.log"
    _write(path, 100)
    offset = path.read_bytes().index(b"level=INFO msg=line60\n")
    with FileIndex(path) as idx:
        idx.restart_before(offset)
        assert idx.extend_back(3) == 3
        assert [idx.line(i).text for i in range(idx.count)] == ["line57", "line58", "line59"]
