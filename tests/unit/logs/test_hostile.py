"""Every log line is untrusted: what a parser produces must be inert on a terminal and in markup."""

import json

import pytest

from console.logs.parse import LineParser
from console.logs.sanitize import escape_markup

HOSTILE = {
    "osc52": "x \x1b]52;c;ZXZpbA==\x07 y",
    "title": "x \x1b]0;owned\x1b\\ y",
    "title-bel": "x \x1b]2;owned\x07 y",
    "csi-move": "x \x1b[10;20H\x1b[2K y",
    "bel": "x \x07\x07 y",
    "backspace": "error\x08\x08\x08\x08\x08ok",
    "c1": "x \x9b31m \x9d0;t\x9c \x85 y",
    "link": "x [link=http://evil]click[/link] y",
    "cr": "real\rfake",
}


def _assert_inert(text: str) -> None:
    assert not any((ord(c) < 32 and c not in "\t") or 0x7F <= ord(c) <= 0x9F for c in text), repr(text)


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("wrap", ["plain", "slog", "vllm", "json", "journal"])
def test_hostile_lines_come_out_inert(name, wrap):
    payload = HOSTILE[name]
    raw = {
        "plain": payload,
        "slog": f"time=2025-11-22T06:50:01Z level=INFO msg={json.dumps(payload)} k={json.dumps(payload)}",
        "vllm": f"INFO 11-22 06:50:01 [a.py:1] {payload}",
        "json": json.dumps({"msg": payload, payload: payload}),
        "journal": json.dumps({"MESSAGE": payload, "PRIORITY": "6", "__REALTIME_TIMESTAMP": "1", "X": payload}),
    }[wrap]
    line = LineParser("t").parse(raw)
    _assert_inert(line.text)
    for key, value in line.fields:
        _assert_inert(key)
        _assert_inert(value)
    assert line.raw == raw  # the raw line is kept, for the raw view (which neutralises it again)


def test_markup_in_a_line_stays_literal_once_escaped():
    from textual.content import Content

    line = LineParser("t").parse(HOSTILE["link"])
    content = Content.from_markup(escape_markup(line.text))
    assert content.plain == line.text and not content.spans
