import asyncio
import shutil
import sys

import pytest

from console.errors import LogSourceError
from console.logs.index import MAX_LINE_BYTES
from console.logs.line import LogLine
from console.logs.sources import CommandSource, FileSource, JournalSource, Notice, NoticeKind, merged
from tests.agen import take

POLL = 0.02


def texts(events):
    return [e.text if isinstance(e, LogLine) else e.kind for e in events]


async def test_no_follow_prints_last_lines_with_numbers(tmp_path):
    path = tmp_path / "a.log"
    path.write_text("".join(f"l{i}\n" for i in range(20)) + "partial")
    events = [e async for e in FileSource(path, lines=3, follow=False).events()]
    assert texts(events) == ["l17", "l18", "l19", "partial"]
    assert [e.lineno for e in events] == [18, 19, 20, 21]


async def test_follow_appends_and_holds_an_unfinished_line(tmp_path):
    path = tmp_path / "a.log"
    path.write_text("a\nb\nhalf")
    agen = FileSource(path, lines=5, poll_s=POLL).events()
    assert texts(await take(agen, 2)) == ["a", "b"]
    with path.open("a") as f:
        f.write("-done\nc\n")
    assert texts(await take(agen, 2)) == ["half-done", "c"]
    await agen.aclose()


async def test_rotation_by_rename_loses_and_doubles_nothing(tmp_path):
    path = tmp_path / "a.log"
    path.write_text("old1\n")
    agen = FileSource(path, lines=10, poll_s=POLL).events()
    assert texts(await take(agen, 1)) == ["old1"]
    writer = path.open("a")
    writer.write("old2\n")
    writer.flush()
    path.rename(tmp_path / "a.log.1")  # logrotate: rename, the writer keeps its fd a moment ...
    writer.write("old3\n")
    writer.flush()
    path.write_text("new1\n")  # ... then a new file appears
    writer.write("old4 late\n")  # written before we notice the rotation: still read from the old file
    writer.close()
    events = await take(agen, 5)
    assert texts(events) == ["old2", "old3", "old4 late", NoticeKind.ROTATED, "new1"]
    assert events[-1].lineno == 1
    with path.open("a") as f:
        f.write("new2\n")
    assert texts(await take(agen, 1)) == ["new2"]
    await agen.aclose()


async def test_truncation_restarts_from_the_top(tmp_path):
    path = tmp_path / "a.log"
    path.write_text("x" * 100 + "\n")
    agen = FileSource(path, lines=1, poll_s=POLL).events()
    await take(agen, 1)
    path.write_text("after\n")  # copytruncate: same inode, smaller
    assert texts(await take(agen, 2)) == [NoticeKind.TRUNCATED, "after"]
    await agen.aclose()


async def test_missing_file_waits_when_following_and_fails_otherwise(tmp_path):
    path = tmp_path / "later.log"
    with pytest.raises(LogSourceError, match="does not exist"):
        [e async for e in FileSource(path, follow=False).events()]
    agen = FileSource(path, poll_s=POLL).events()
    first = await take(agen, 1)
    assert first[0].kind is NoticeKind.WAITING
    path.write_text("hello\n")
    assert texts(await take(agen, 1)) == ["hello"]
    await agen.aclose()


async def test_directory_is_refused(tmp_path):
    with pytest.raises(LogSourceError, match="directory"):
        [e async for e in FileSource(tmp_path).events()]


async def test_command_output_and_exit_code():
    code = "import sys; print('INFO: out'); print('boom', file=sys.stderr); sys.exit(3)"
    events = [e async for e in CommandSource([sys.executable, "-c", code]).events()]
    lines = [e for e in events if isinstance(e, LogLine)]
    assert sorted(line.text for line in lines) == ["boom", "out"]
    assert ("stream", "stderr") in next(line for line in lines if line.text == "boom").fields
    end = events[-1]
    assert isinstance(end, Notice) and end.kind is NoticeKind.ENDED and end.exit_code == 3
    assert "exited with code 3" in end.message


async def test_command_lines_over_the_limit_arrive_whole_in_pieces():
    long = "a" * 150_000 + "b" * 50_000
    code = ("import sys; w = sys.stdout.write; "
            f"w('x' * {MAX_LINE_BYTES} + '\\n'); w('a' * 150_000 + 'b' * 50_000 + '\\n'); w('after\\n'); "
            "w('z' * 100_000)")
    events = [e async for e in CommandSource([sys.executable, "-c", code]).events()]
    got = [e.text for e in events if isinstance(e, LogLine)]
    assert got[0] == "x" * MAX_LINE_BYTES  # exactly the limit: one line
    pieces = got[1:got.index("after")]
    assert all(len(p) <= MAX_LINE_BYTES for p in pieces) and "".join(pieces) == long  # nothing lost
    assert "".join(got[got.index("after") + 1:]) == "z" * 100_000  # the unterminated end too


async def test_cancelling_a_command_stops_the_process(tmp_path):
    marker = tmp_path / "pid"
    code = f"import os,time; open({str(marker)!r},'w').write(str(os.getpid())); print('up', flush=True); time.sleep(60)"
    agen = CommandSource([sys.executable, "-c", code]).events()
    assert texts(await take(agen, 1)) == ["up"]
    await agen.aclose()
    pid = int(marker.read_text())
    import os
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_slow_consumer_of_a_command_drops_and_says_so(tmp_path):
    done = tmp_path / "done"
    # 500 KB: more than a pipe holds, so the process can only finish because the source keeps reading.
    code = ("import sys\nfor i in range(5000): print(i, 'x' * 100)\n"
            f"sys.stdout.flush(); open({str(done)!r}, 'w').close()")
    source = CommandSource([sys.executable, "-c", code], queue_size=10)
    agen = source.events()
    first = await take(agen, 1)
    for _ in range(600):  # the process writes everything while we do not read (it never blocks on us)
        if done.exists():
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    events = first + [e async for e in agen]
    kinds = [e.kind for e in events if isinstance(e, Notice)]
    assert NoticeKind.DROPPED in kinds and kinds[-1] is NoticeKind.ENDED
    assert sum(isinstance(e, LogLine) for e in events) < 5000


async def test_missing_command_is_a_clear_error():
    with pytest.raises(LogSourceError, match="command not found"):
        [e async for e in CommandSource(["enginedeck-no-such-binary"]).events()]


def test_journal_source_without_journalctl_says_so(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(LogSourceError, match="journalctl not found"):
        JournalSource("ollama")


async def test_journal_source_parses_recorded_lines_through_a_fake_journalctl(tmp_path):
    from pathlib import Path

    sample = Path(__file__).parents[2] / "fakes" / "journal_samples" / "ollama.jsonl"
    fake = tmp_path / "journalctl"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\ncat {sample}\n")
    fake.chmod(0o755)
    events = [e async for e in JournalSource("ollama", lines=5, follow=False, journalctl=str(fake)).events()]
    lines = [e for e in events if isinstance(e, LogLine)]
    assert len(lines) == 9 and lines[0].fmt == "journal" and lines[0].text.startswith("Listening")
    assert events[-1].kind is NoticeKind.ENDED and events[-1].exit_code == 0
    assert (tmp_path / "args").read_text().split() == ["-u", "ollama", "-o", "json", "--no-pager", "-n", "5"]


@pytest.mark.skipif(shutil.which("journalctl") is None, reason="journalctl not found on this machine")
async def test_live_journalctl_runs_and_ends():
    events = [e async for e in JournalSource("enginedeck-test-no-such.service", lines=1, follow=False).events()]
    assert isinstance(events[-1], Notice) and events[-1].kind is NoticeKind.ENDED


async def test_merged_sources_report_a_failing_one_and_go_on(tmp_path):
    path = tmp_path / "a.log"
    path.write_text("one\n")
    events = [e async for e in merged([FileSource(path, follow=False), FileSource(tmp_path / "x", follow=False)])]
    assert "one" in texts(events)
    err = next(e for e in events if isinstance(e, Notice))
    assert err.kind is NoticeKind.ERROR and "does not exist" in err.message


async def test_lines_carry_their_byte_offsets(tmp_path):
    path = tmp_path / "a.log"
    path.write_text("one\ntwo\n")
    agen = FileSource(path, lines=1, poll_s=POLL).events()
    first = await take(agen, 1)
    with path.open("a") as f:
        f.write("three\n")
    later = await take(agen, 1)
    await agen.aclose()
    data = path.read_bytes()
    assert (first[0].offset, later[0].offset) == (data.index(b"two"), data.index(b"three"))


async def test_unfinished_over_long_last_line_is_shown_whole(tmp_path):
    # The last line has no newline and is cut in pieces: every byte of it still comes out.
    path = tmp_path / "long.log"
    path.write_bytes(b"first\n" + b"x" * (MAX_LINE_BYTES + 100))
    events = [e async for e in FileSource(path, lines=2, follow=False).events()]
    assert sum(len(e.raw) for e in events if isinstance(e, LogLine) and e.raw.startswith("x")) == MAX_LINE_BYTES + 100
