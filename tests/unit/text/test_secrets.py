"""console/secrets.py: what is remembered, the forms that are redacted, and the chokepoints that apply it."""

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from console import secrets
from console.config import EngineConfig, read_secret_file
from console.engines.http import error_for_status
from console.errors import EngineError
from console.logs.parse import LineParser
from console.logs.sanitize import neutralise, one_line
from console.secrets import REDACTED, redact, redact_data, remember

KEY = "sk-ed-7Qm/x+Zp9=Lw2&aB"


def test_nothing_remembered_leaves_text_alone():
    text = f"Authorization: Bearer {KEY}"
    assert not secrets.active()
    assert redact(text) is text
    assert redact_data({"a": [text]}) == {"a": [text]}


@pytest.mark.parametrize("form", [
    KEY,
    json.dumps(KEY)[1:-1],  # Python's escaping (the / is not escaped, & is kept)
    KEY.replace("&", "\\u0026"),  # Go's encoding/json
    quote(KEY, safe=""),  # in an echoed URL
    quote(KEY, safe="").replace("%20", "+"),
])
def test_every_form_of_a_key_is_redacted(form):
    remember(KEY)
    out = redact(f'{{"error":"proxy refused: Authorization: Bearer {form} (sent to /v1)"}}')
    assert "Bearer [redacted] (sent to /v1)" in out
    assert "7Qm" not in out


def test_a_key_cut_off_at_the_end_of_a_text_goes_too():
    remember(KEY)
    body = f"echo: Authorization: Bearer {KEY}"[:-5]
    assert redact(body) == "echo: Authorization: Bearer [redacted]"
    assert redact(body + "…") == "echo: Authorization: Bearer [redacted]…"
    assert redact(repr(body)) == "'echo: Authorization: Bearer [redacted]'"
    # a short beginning is too common to mean the key: left alone
    assert redact("the prefix sk-ed-7") == "the prefix sk-ed-7"


def test_short_values_and_the_marker_are_not_remembered():
    for value in ("", "abc", "dact", "red"):
        remember(value)
    assert not secrets.active()
    remember("abcd")
    assert redact("xabcdx") == f"x{REDACTED}x"
    assert redact(redact("abcd abcd")) == f"{REDACTED} {REDACTED}"  # twice changes nothing


def test_keys_are_remembered_when_read(tmp_path, monkeypatch):
    monkeypatch.setenv("ED_TEST_KEY", f"  {KEY}\n")
    assert EngineConfig("e", "http://x", api_key_env="ED_TEST_KEY").resolve_api_key() == KEY
    assert redact(KEY) == REDACTED
    secrets.forget_all()
    path = Path(tmp_path / "k")
    path.write_text("file-key-0123456789\n")
    path.chmod(0o600)
    assert read_secret_file(path, what="key") == "file-key-0123456789"
    assert redact("x file-key-0123456789 y") == f"x {REDACTED} y"


def test_engine_errors_and_their_hints_are_redacted_when_made():
    remember(KEY)
    err = error_for_status(502, json.dumps({"error": f"upstream said: Bearer {KEY}"}).encode(), engine="e")
    assert isinstance(err, EngineError) and KEY not in str(err) and KEY not in err.args[0]
    assert "Bearer [redacted]" in str(err)
    assert KEY not in str(EngineError("x", hint=f"try {KEY}"))


def test_display_and_log_lines_are_redacted():
    remember(KEY)
    assert neutralise(f"key {KEY}") == f"key {REDACTED}"
    # a control character inside the key does not smuggle it past: controls go first
    assert neutralise(f"key {KEY[:5]}\x07{KEY[5:]}") == f"key {REDACTED}"
    assert KEY not in one_line(f"a\n{KEY}\n")
    line = LineParser("f").parse(json.dumps({"level": "error", "msg": f"auth {KEY}", "hdr": f"Bearer {KEY}"}))
    assert KEY not in line.text and all(KEY not in v for _, v in line.fields)
    assert KEY in line.raw  # kept as read, for signature checks; shown only through neutralise


async def test_store_writes_are_redacted(store):
    remember(KEY)
    session = await store.sessions.create(title=f"t {KEY}", params={"note": KEY})
    mid = await store.sessions.add_message(session.id, "assistant", f"said {KEY}")
    await store.sessions.update_message(mid, error=f"broke: {KEY}", content=f"more {KEY}")
    await store.model_events.record(engine="e", engine_kind="ollama", model="m", op="load", duration_s=1.0, ok=False,
                                    error=f"answered 502: {KEY}", detail={"why": KEY})
    doc = await store.sessions.export(session.id)  # an import of a file written elsewhere, with the key in it
    doc["session"]["title"], doc["messages"][0]["content"] = KEY, KEY
    await store.sessions.import_session(doc)
    await store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    await store.close()
    data = b"".join(p.read_bytes() for p in store.path.parent.glob(store.path.name + "*"))
    assert KEY.encode() not in data and json.dumps(KEY)[1:-1].encode() not in data
    assert REDACTED.encode() in data
