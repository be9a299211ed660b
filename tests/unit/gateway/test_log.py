"""The signed request log on its own: lines `audit verify` accepts, rotation by size and by age, an edited or removed
line named, a cut-short tail repaired at open."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from console.audit.mark import Mark
from console.audit.signed import verify_file
from console.gateway.log import RequestLog, log_files
from console.gateway.record import Outcome, RequestRecord

KEY = b"k" * 32


def _entry(n: int, model: str = "m") -> dict:
    rec = RequestRecord(request_id=f"r{n}", started=1_765_000_000.0 + n, method="POST", path="/api/chat",
                        client_ip="127.0.0.1", client="anonymous", user_agent="t", upstream="e", model=model,
                        outcome=Outcome.OK, status_code=200)
    return rec.entry()


def test_lines_verify_and_edits_are_named(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, KEY, max_bytes=1 << 20, max_age_s=3600)
    for n in range(5):
        log.write(_entry(n, model="caf\u00e9 \x1b[2J"))  # non-ASCII and an escape stay signed and escaped
    log.close()
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    raw = log.path.read_bytes()
    assert b"\x1b" not in raw
    assert [v.mark for v in verify_file(log.path, KEY)] == [Mark.VALID] * 5
    lines = raw.decode().splitlines()
    edited = json.loads(lines[2])
    edited["status_code"] = 500
    lines[2] = json.dumps(edited, sort_keys=True)
    del lines[4]
    log.path.write_text("\n".join(lines) + "\n")
    verdicts = list(verify_file(log.path, KEY))
    assert [v.lineno for v in verdicts if v.mark is Mark.INVALID] == [3]
    assert len(verdicts) == 4


def test_rotation_by_size_and_age(tmp_path: Path, monkeypatch) -> None:
    log = RequestLog(tmp_path, KEY, max_bytes=2000, max_age_s=3600)
    for n in range(20):
        log.write(_entry(n))
    files = log_files(tmp_path)
    assert len(files) > 3 and files[-1].name == "requests.jsonl"
    assert all(f.stat().st_size <= 2000 for f in files)
    assert sum(1 for f in files for v in verify_file(f, KEY) if v.mark is Mark.VALID) == 20
    log.close()
    aged = RequestLog(tmp_path / "aged", KEY, max_bytes=1 << 20, max_age_s=10)
    aged.write(_entry(0))
    import console.gateway.log as module

    now = module.time.time()
    monkeypatch.setattr(module.time, "time", lambda: now + 11)
    aged.write(_entry(1))
    aged.close()
    assert len(log_files(tmp_path / "aged")) == 2


def test_a_cut_short_tail_is_removed_at_open(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, KEY, max_bytes=1 << 20, max_age_s=3600)
    log.write(_entry(0))
    log.close()
    with log.path.open("ab") as f:
        f.write(b'{"timestamp": "x", "half')
    again = RequestLog(tmp_path, KEY, max_bytes=1 << 20, max_age_s=3600)
    assert again.repaired == len(b'{"timestamp": "x", "half')
    again.write(_entry(1))
    again.close()
    # (The first line's timestamp is a year old, so the second opened a new file: age counts from the first line.)
    assert [v.mark for f in log_files(tmp_path) for v in verify_file(f, KEY)] == [Mark.VALID, Mark.VALID]
