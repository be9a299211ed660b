import json
import os
import stat
import subprocess
import sys

import pytest

from console import secrets
from console.audit.mark import Mark
from console.audit.record import GENESIS, REDACTED, AuditEvent, strip_secrets
from console.audit.trail import AuditTrail, trail_files
from console.audit.verify import IssueKind, TrailMarker, verify_trail
from console.config import AuditConfig, Config, EngineConfig
from console.errors import ConfigError
from console.logs.parse import LineParser

DAY = 86400


def trail_for(tmp_path, store=None, **audit):
    config = Config(data_dir=tmp_path / "data", audit=AuditConfig(**audit))
    return AuditTrail.for_config(config, store.audit if store is not None else None)


async def record_n(trail, n, start=0):
    return [await trail.record("load", engine="ollama", target=f"m{i}", params={"keep_alive": "5m"},
                               result="ok", duration_s=0.5) for i in range(start, start + n)]


def lines(trail):
    return trail.path.read_text().splitlines(keepends=True)


def kinds(report):
    return [i.kind for i in report.issues]


async def test_records_chain_and_verify_clean(tmp_path, store, monkeypatch):
    monkeypatch.setenv("SSH_CONNECTION", "10.0.0.7 52344 10.0.0.1 22")
    trail = trail_for(tmp_path, store)
    events = await record_n(trail, 3)
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].prev_hash == GENESIS and events[1].prev_hash == events[0].hash
    rec = json.loads(lines(trail)[0])
    assert rec["ssh_origin"] == "10.0.0.7:52344" and rec["action"] == "load" and rec["host"]
    assert stat.S_IMODE(os.stat(trail.key_file).st_mode) == 0o600
    report = verify_trail(trail.directory, trail.key(), await store.audit.all())
    assert report.ok, report.issues
    assert (report.records, report.first_seq, report.last_seq) == (3, 1, 3)
    assert [e.seq for e in await store.audit.recent(2)] == [3, 2]


def test_secrets_are_stripped_from_params():
    params = {"api_key": "abc", "Authorization": "x", "options": {"token": "t", "temperature": 0.2},
              "header": "Bearer abcdef", "model_password": "p", "keep_alive": "5m", "note": "sk-" + "a" * 20}
    clean = strip_secrets(params)
    assert clean == {"api_key": REDACTED, "Authorization": REDACTED,
                     "options": {"token": REDACTED, "temperature": 0.2}, "header": REDACTED,
                     "model_password": REDACTED, "keep_alive": "5m", "note": REDACTED}


def test_token_counts_and_references_are_kept_secrets_by_name_are_not():
    params = {"max_tokens": 128, "prompt_tokens": 64, "levels": [1, 2], "tokens_in": 10, "maxTokens": 5,
              "api_key_env": "VLLM_API_KEY", "key_file": "/etc/ed/key", "keep_alive": "5m", "monkey": "see",
              "token": "t0k", "accessToken": "a", "apiKey": "k", "X-Api-Key": "k", "passphrase": "p",
              "slo": {"ttft_p90_s": 1.0, "max_error_rate": 0.01}}
    assert strip_secrets(params) == params | {"token": REDACTED, "accessToken": REDACTED, "apiKey": REDACTED,
                                              "X-Api-Key": REDACTED, "passphrase": REDACTED}


async def test_probe_params_are_recorded_as_given(tmp_path):
    trail = trail_for(tmp_path)
    await trail.record("probe start", engine="e", target="m", params={"max_tokens": 128, "prompt_tokens": 64},
                       result="complete", duration_s=1.0)
    assert json.loads(lines(trail)[0])["params"] == {"max_tokens": 128, "prompt_tokens": 64}


async def test_a_key_read_by_this_process_never_reaches_the_trail_and_the_chain_holds(tmp_path, store, monkeypatch):
    key = "sk-live-9fQ2mZ7xLw0pR4tY"
    monkeypatch.setenv("ED_ENGINE_KEY", key)
    EngineConfig("e", "http://x", api_key_env="ED_ENGINE_KEY").resolve_api_key()  # as an engine client does
    trail = trail_for(tmp_path, store)
    await record_n(trail, 1)
    await trail.record("load", engine="e", target=f"model-{key}", params={"note": f"x {key}", "n": 1},
                       result=f"error: e: answered 502: proxy echoed Authorization: Bearer {key}", duration_s=0.2)
    await record_n(trail, 1, start=1)
    raw = b"".join(p.read_bytes() for p in tmp_path.joinpath("data").rglob("*") if p.is_file())
    assert key.encode() not in raw  # the JSONL, the head, the database and its WAL
    assert "Bearer [redacted]" in lines(trail)[1]
    report = verify_trail(trail.directory, trail.key(), await store.audit.all())
    assert report.ok and report.records == 3, report.issues


async def test_a_record_written_before_its_key_was_known_still_verifies(tmp_path, store):
    """A trail from before redaction (or a key read later) may hold a key: verification reads the bytes as they
    are, and the pane marks the raw line, though what it shows is redacted."""
    key = "hmac-proxy-key-0123456789"
    trail = trail_for(tmp_path, store)
    await trail.record("load", engine="e", target="m", params={}, result=f"error: {key}", duration_s=None)
    secrets.remember(key)
    await record_n(trail, 1)
    assert verify_trail(trail.directory, trail.key(), await store.audit.all()).ok
    parsed = LineParser("audit", marker=TrailMarker(trail.key())).parse(lines(trail)[0])
    assert parsed.mark is Mark.VALID and key not in parsed.text


async def test_secret_params_never_reach_file_or_db(tmp_path, store):
    trail = trail_for(tmp_path, store)
    await trail.record("config", engine=None, target="engines", params={"secret": "hunter2"}, result="ok",
                       duration_s=None)
    assert "hunter2" not in trail.path.read_text()
    assert "hunter2" not in json.dumps([e.params for e in await store.audit.all()])


async def test_edited_line(tmp_path, store):
    trail = trail_for(tmp_path, store)
    await record_n(trail, 4)
    text = lines(trail)
    text[1] = text[1].replace('"result":"ok"', '"result":"denied"')
    trail.path.write_text("".join(text))
    report = verify_trail(trail.directory, trail.key(), await store.audit.all())
    edited = [i for i in report.issues if i.kind is IssueKind.EDITED]
    assert [(i.line, i.seqs) for i in edited] == [(2, (2,))]
    assert IssueKind.DATABASE in kinds(report)  # and the file no longer matches the database copy


async def test_edited_and_rehashed_without_the_key(tmp_path):
    from console.audit.record import record_hash

    trail = trail_for(tmp_path)
    await record_n(trail, 2)
    text = lines(trail)
    rec = json.loads(text[0])
    rec["target"] = "other"
    rec["hash"] = record_hash(rec)
    text[0] = json.dumps(rec) + "\n"
    trail.path.write_text("".join(text))
    report = verify_trail(trail.directory, trail.key())
    assert any(i.kind is IssueKind.EDITED and "HMAC" in i.message and i.line == 1 for i in report.issues)
    assert any(i.kind is IssueKind.BROKEN_LINK and i.seqs == (2,) for i in report.issues)


async def test_deleted_line(tmp_path):
    trail = trail_for(tmp_path)
    await record_n(trail, 5)
    text = lines(trail)
    del text[2]
    trail.path.write_text("".join(text))
    report = verify_trail(trail.directory, trail.key())
    assert kinds(report) == [IssueKind.DELETED]
    assert report.issues[0].seqs == (3,) and report.issues[0].line == 3  # missing before the line now 3rd


async def test_reordered_lines(tmp_path):
    trail = trail_for(tmp_path)
    await record_n(trail, 5)
    text = lines(trail)
    text[1], text[2] = text[2], text[1]
    trail.path.write_text("".join(text))
    report = verify_trail(trail.directory, trail.key())
    assert kinds(report) == [IssueKind.REORDERED]
    assert report.issues[0].line == 3 and report.issues[0].seqs == (2,)


async def test_truncated_tail_clean_cut_and_partial_line(tmp_path, store):
    trail = trail_for(tmp_path, store)
    await record_n(trail, 4)
    text = lines(trail)
    trail.path.write_text("".join(text[:2]))
    report = verify_trail(trail.directory, trail.key())
    assert kinds(report) == [IssueKind.TRUNCATED] and report.issues[0].seqs == (3, 4)
    trail.path.write_text("".join(text[:3]) + text[3][:40])
    report = verify_trail(trail.directory, trail.key(), await store.audit.all())
    assert IssueKind.TRUNCATED in kinds(report)
    assert any(i.kind is IssueKind.DATABASE and "not in the files" in i.message for i in report.issues)


async def test_edited_database_row_is_found(tmp_path, store):
    trail = trail_for(tmp_path, store)
    await record_n(trail, 2)
    await store.db.execute("UPDATE audit_events SET result = 'forged' WHERE id = 1")
    report = verify_trail(trail.directory, trail.key(), await store.audit.all())
    assert any(i.kind is IssueKind.DATABASE and "row #1 was edited" in i.message for i in report.issues)


async def test_rotation_keeps_the_chain_verifiable(tmp_path, store):
    trail = trail_for(tmp_path, store, max_file_bytes=1200)
    events = await record_n(trail, 12)
    rotated = sorted(trail.directory.glob("audit-*.jsonl"))
    assert len(rotated) >= 2
    first_of_active = json.loads(lines(trail)[0])
    prev_file_last = json.loads(rotated[-1].read_text().splitlines()[-1])
    assert first_of_active["prev_hash"] == prev_file_last["hash"]
    report = verify_trail(trail.directory, trail.key(), await store.audit.all())
    assert report.ok, report.issues
    assert report.last_seq == events[-1].seq and len(report.files) == len(rotated) + 1
    rotated[0].unlink()  # removing an old file by hand is a deletion, not retention
    report = verify_trail(trail.directory, trail.key(), await store.audit.all())
    assert IssueKind.DELETED in kinds(report)


class Clock:
    """Stands in for the `time` module in console.audit.trail: records carry, and retention reads, this time."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock(1_700_000_000.0)
    monkeypatch.setattr("console.audit.trail.time", fake)
    return fake


def file_records(trail):
    return [AuditEvent.from_record(json.loads(line))
            for p in trail_files(trail.directory) for line in p.read_text().splitlines()]


async def test_retention_removes_whole_old_files_and_stays_verifiable(tmp_path, store, clock):
    trail = trail_for(tmp_path, store, max_file_bytes=1200, retention_days=1)
    await record_n(trail, 8)
    old = sorted(trail.directory.glob("audit-*.jsonl"))
    assert old
    clock.now += 2 * DAY  # every record so far is older than the retention period
    await record_n(trail, 1, start=8)
    assert not any(p in old for p in trail.directory.glob("audit-*.jsonl"))
    report = verify_trail(trail.directory, trail.key(), await store.audit.all())
    assert report.ok, report.issues
    assert report.first_seq and report.first_seq > 1


async def test_quiet_trail_prunes_old_records_of_the_active_file(tmp_path, store, clock):
    trail = trail_for(tmp_path, store, retention_days=1)  # 10 MiB files: a few records never fill one
    await record_n(trail, 3)
    assert not list(trail.directory.glob("audit-*.jsonl"))
    clock.now += 2 * DAY
    await record_n(trail, 1, start=3)
    assert [r.seq for r in file_records(trail)] == [4]
    assert [e.seq for e in await store.audit.all()] == [4]  # the database copy is pruned with the files
    report = verify_trail(trail.directory, trail.key(), await store.audit.all())
    assert report.ok, report.issues  # the head's pruned_through tells the gap from a deletion
    assert report.first_seq == 4


async def test_retention_keeps_every_record_inside_the_period_and_bounds_the_rest(tmp_path, store, clock):
    retention = 10
    trail = trail_for(tmp_path, store, retention_days=retention)
    written: dict[int, float] = {}
    for day in range(45):  # one event a day: the active file never reaches max_file_bytes
        written.update((e.seq, e.ts) for e in await record_n(trail, 1, start=day))
        for path in trail.directory.glob("audit-*.jsonl"):
            os.utime(path, (0, 0))  # a copy or restore can change mtimes: retention goes by the records' time
        kept = {r.seq: r.ts for r in file_records(trail)}
        cutoff = clock.now - retention * DAY
        assert all(ts < cutoff for seq, ts in written.items() if seq not in kept)  # none inside the period goes
        assert set(kept) == set(range(min(kept), max(written) + 1))  # only ever whole oldest files go
        assert clock.now - min(kept.values()) <= (2 * retention + 1) * DAY  # documented bound, plus one day
        assert [e.seq for e in await store.audit.all()] == sorted(kept)
        clock.now += DAY
    report = verify_trail(trail.directory, trail.key(), await store.audit.all())
    assert report.ok, report.issues
    assert report.first_seq and report.first_seq > 1


def test_world_readable_key_is_refused(tmp_path):
    trail = trail_for(tmp_path)
    trail.key()
    os.chmod(trail.key_file, 0o644)
    with pytest.raises(ConfigError, match="readable by group or others"):
        trail_for(tmp_path).key()


_WRITER = """
import asyncio, sys
from pathlib import Path
from console.audit.trail import AuditTrail
async def main():
    t = AuditTrail(Path(sys.argv[1]), key_file=Path(sys.argv[1]) / "audit.key")
    for i in range(25):
        await t.record("probe", engine="e", target=sys.argv[2], params={}, result="ok", duration_s=None)
asyncio.run(main())
"""


def test_two_processes_append_without_breaking_the_chain(tmp_path):
    trail = trail_for(tmp_path)
    trail.key()  # create the key first so both writers share it
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(trail.directory), name]) for name in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    report = verify_trail(trail.directory, trail.key())
    assert report.ok, report.issues
    assert report.records == 50 and report.last_seq == 50


async def test_marker_for_the_audit_pane(tmp_path):
    trail = trail_for(tmp_path)
    await record_n(trail, 1)
    good = lines(trail)[0]
    marker = TrailMarker(trail.key())
    assert marker(good) is Mark.VALID
    assert marker(good.replace('"m0"', '"m9"')) is Mark.INVALID
