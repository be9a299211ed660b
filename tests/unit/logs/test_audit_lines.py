"""How audit records and signed lines read in a pane or `enginedeck logs`: what matters first (action, engine,
target, result) within 80 columns, the hashes only in the raw line, and a level a filter can use (from the
record's result, or the line's signature mark: an invalid line is an error whatever it says)."""

from __future__ import annotations

import hashlib
import hmac
import json

from console.audit.mark import Mark
from console.audit.trail import AuditTrail
from console.config import Config
from console.logs.filter import LogFilter
from console.logs.line import Level
from console.logs.parse import LineParser
from console.logs.spec import SourceSpec, build_source


async def trail_lines(tmp_path, monkeypatch, *records, forge: str | None = None):
    monkeypatch.setenv("SSH_CONNECTION", "10.0.0.7 52344 10.0.0.1 22")
    config = Config(data_dir=tmp_path / "data")
    trail = AuditTrail.for_config(config, None)
    for action, target, result in records:
        await trail.record(action, engine="ollama", target=target, params={"keep_alive": "5m"}, result=result,
                           duration_s=1.25)
    if forge is not None:  # a copy of the first record with its target changed: hash and HMAC no longer hold
        first = trail.path.read_text().splitlines()[0]
        trail.path.write_text(trail.path.read_text() + first.replace('"llama3"', f'"{forge}"') + "\n")
    source = build_source(SourceSpec("trail", ""), config=config, lines=100, follow=False)
    return [e async for e in source.events()]


async def test_audit_record_reads_what_matters_first(tmp_path, monkeypatch):
    [line] = await trail_lines(tmp_path, monkeypatch, ("load", "llama3", "ok"))
    assert line.fmt == "audit" and line.mark is Mark.VALID and line.level is Level.INFO
    assert line.text.startswith("load ok  llama3  on ollama  1.25 s  user=")
    assert "from=10.0.0.7" in line.text and "seq=1" in line.text and "keep_alive=5m" in line.text
    assert line.text.index("llama3") < 20  # action, result and target come first, inside an 80-column pane
    assert '"hash"' in line.raw and "hash" not in line.text and "hmac" not in line.text  # in the raw line only
    fields = dict(line.fields)
    assert fields["target"] == "llama3" and fields["result"] == "ok" and "hash" not in fields
    assert line.ts is not None


async def test_level_filter_keeps_failed_and_tampered_records(tmp_path, monkeypatch):
    """Before, audit records had no level, so `v` (or --level warn) hid every one of them."""
    lines = await trail_lines(tmp_path, monkeypatch, ("load", "llama3", "ok"),
                              ("unload", "qwen3", "error: engine unreachable"), ("probe start", "smol", "cancelled"),
                              forge="forged")
    assert [(line.level, line.mark) for line in lines] == [
        (Level.INFO, Mark.VALID), (Level.ERROR, Mark.VALID), (Level.WARN, Mark.VALID), (Level.ERROR, Mark.INVALID)]
    assert [line.text.split("  on ")[0] for line in lines if LogFilter(Level.WARN).matches(line)] == [
        "unload error: engine unreachable  qwen3", "probe start cancelled  smol", "load ok  forged"]
    assert len([line for line in lines if LogFilter(Level.INFO).matches(line)]) == 4


def _signed(obj: dict, key: bytes = b"k") -> str:
    body = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return json.dumps({**obj, "signature": hmac.new(key, body, hashlib.sha256).hexdigest()})


def test_signed_lines_take_their_level_from_their_mark():
    from console.audit.signed import SignedMarker

    parser = LineParser("audit:proxy.jsonl", marker=SignedMarker(b"k"))
    valid = parser.parse(_signed({"path": "/v1/chat", "status": 200}))
    unsigned = parser.parse(json.dumps({"path": "/v1/chat", "status": 200}))
    forged = parser.parse(_signed({"path": "/v1/chat", "status": 200, "level": "info"}).replace("200", "500"))
    assert (valid.mark, valid.level) == (Mark.VALID, Level.INFO)
    assert (unsigned.mark, unsigned.level) == (Mark.UNSIGNED, Level.WARN)
    assert (forged.mark, forged.level) == (Mark.INVALID, Level.ERROR)  # whatever level the line claims


def test_signed_lines_keep_their_own_level_and_leave_the_signature_out_of_the_text(tmp_path):
    from console.audit.signed import SignedMarker
    from console.logs.parse import signed_record

    parser = LineParser("audit:proxy.jsonl", marker=SignedMarker(b"k"), shape=signed_record)
    line = parser.parse(_signed({"level": "warn", "msg": "slow upstream", "ms": 900}))
    assert (line.mark, line.level) == (Mark.VALID, Level.WARN)
    assert line.text == "slow upstream  ms=900" and "signature" in line.raw
