import asyncio
import shutil
import sys

import pytest

from console.errors import LogSourceError
from console.logs.index import MAX_LINE_BYTES
from console.logs.line import Level, LogLine
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


async def test_a_burst_is_read_in_batches_that_leave_the_loop_free(tmp_path):
    """Reading and parsing happen in a thread a block at a time: another task on the loop runs between the
    batches (before, 40,000 lines came out without one await, holding the loop until the end of the file)."""
    path = tmp_path / "big.log"
    path.write_text("".join(f"level=INFO msg=line{i}\n" for i in range(40_000)))
    turns = 0
    lines = 0
    between: list[int] = []

    async def other() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    try:
        async for batch in FileSource(path, lines=40_000, follow=False).batches():
            lines += len(batch)
            between.append(turns)
    finally:
        task.cancel()
    assert lines == 40_000
    assert len(between) > 5
    assert between[-1] > between[0]  # the other task ran while the file was being read


async def test_pause_stops_reading_and_polling_and_resume_catches_up(tmp_path, monkeypatch):
    from console.logs import sources

    path = tmp_path / "a.log"
    path.write_text("one\n")
    polls = 0
    real_change = sources._change

    def counting(*args):
        nonlocal polls
        polls += 1
        return real_change(*args)

    monkeypatch.setattr(sources, "_change", counting)
    source = FileSource(path, lines=5, poll_s=POLL)
    agen = source.batches()
    assert texts(await anext(agen)) == ["one"]
    source.pause()
    pending = asyncio.ensure_future(anext(agen))
    await asyncio.sleep(POLL * 3)  # a poll in flight when paused may finish
    polls_paused = polls
    with path.open("a") as f:
        f.write("two\nthree\n")
    await asyncio.sleep(POLL * 10)
    assert not pending.done() and polls == polls_paused  # nothing read, nothing polled
    source.resume()
    assert texts(await asyncio.wait_for(pending, 5)) == ["two", "three"]  # from where it stopped
    await agen.aclose()


async def test_a_backlog_past_what_is_kept_is_skipped_with_true_line_numbers(tmp_path, monkeypatch):
    from console.logs import sources

    monkeypatch.setattr(sources, "SKIP_CHECK_BYTES", 64 * 1024)
    path = tmp_path / "a.log"
    path.write_text("start\n")
    agen = FileSource(path, lines=5, poll_s=POLL, keep=100).events()
    assert texts(await take(agen, 1)) == ["start"]
    with path.open("a") as f:
        f.write("".join(f"line{i}\n" for i in range(50_000)))  # ~540 KB, far past 100 lines
    events = await take(agen, 101)
    await agen.aclose()
    skipped, *lines = events
    assert skipped.kind is NoticeKind.SKIPPED and "skipped 49,900 lines" in skipped.message
    assert texts(lines) == [f"line{i}" for i in range(49_900, 50_000)]
    assert [line.lineno for line in lines] == list(range(49_902, 50_002))  # "start" is line 1
    assert skipped.level is Level.WARN


async def test_without_keep_every_line_of_a_backlog_comes(tmp_path, monkeypatch):
    from console.logs import sources

    monkeypatch.setattr(sources, "SKIP_CHECK_BYTES", 1024)
    path = tmp_path / "a.log"
    path.write_text("start\n")
    agen = FileSource(path, lines=5, poll_s=POLL).events()
    await take(agen, 1)
    with path.open("a") as f:
        f.write("".join(f"line{i}\n" for i in range(5_000)))
    assert texts(await take(agen, 5_000)) == [f"line{i}" for i in range(5_000)]
    await agen.aclose()


def test_notice_levels_a_clean_exit_is_not_an_error():
    def ended(code):
        return Notice("cmd:x", NoticeKind.ENDED, "x", exit_code=code)

    assert ended(0).level is Level.INFO
    assert ended(3).level is Level.ERROR
    assert ended(-15).level is Level.WARN  # ended by a signal
    assert Notice("f", NoticeKind.WAITING, "w").level is Level.INFO
    assert Notice("f", NoticeKind.DROPPED, "d").level is Level.WARN
    assert Notice("f", NoticeKind.ERROR, "e").level is Level.ERROR


async def test_closing_a_source_mid_read_closes_its_files(tmp_path):
    import os

    path = tmp_path / "big.log"
    path.write_text("".join(f"level=INFO msg=line{i}\n" for i in range(100_000)))
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        agen = FileSource(path, lines=100_000, follow=False).batches()
        await anext(agen)
        step = asyncio.ensure_future(anext(agen))
        await asyncio.sleep(0)
        step.cancel()  # cancelled while a block is being read in its thread
        with pytest.raises((asyncio.CancelledError, StopAsyncIteration)):
            await step
        await agen.aclose()
    for _ in range(100):
        if len(os.listdir("/proc/self/fd")) <= before:
            break
        await asyncio.sleep(0.02)
    assert len(os.listdir("/proc/self/fd")) <= before


async def test_command_output_comes_in_batches_parsed_off_the_loop():
    code = "for i in range(20000): print(f'INFO: line {i}')"
    batches = [b async for b in CommandSource([sys.executable, "-c", code], drop_when_full=False).batches()]
    lines = [e for b in batches for e in b if isinstance(e, LogLine)]
    assert [line.text for line in lines] == [f"line {i}" for i in range(20000)]
    assert len(batches) > 2 and max(len(b) for b in batches) <= 2_000 + 1
