import hashlib
import hmac
import json

import pytest

from console.audit.mark import Mark
from console.audit.signed import SignedMarker, verify_file, verify_line

KEY = b"proxy-secret"


def signed(obj, *, separators=(",", ":"), ensure_ascii=True, key=KEY):
    body = json.dumps(obj, sort_keys=True, separators=separators, ensure_ascii=ensure_ascii).encode()
    return json.dumps({**obj, "signature": hmac.new(key, body, hashlib.sha256).hexdigest()})


@pytest.mark.parametrize("separators, ensure_ascii, name", [
    ((",", ":"), True, "compact"), ((", ", ": "), True, "default"), ((",", ":"), False, "compact-utf8"),
])
def test_valid_lines_say_which_serialisation_matched(separators, ensure_ascii, name):
    line = signed({"ts": 1, "path": "/v1/chat", "user": "zoë"}, separators=separators, ensure_ascii=ensure_ascii)
    verdict = verify_line(line, KEY)
    assert (verdict.mark, verdict.serialisation) == (Mark.VALID, name)


def test_tampered_unsigned_and_garbage_lines(tmp_path):
    good = signed({"ts": 1, "status": 200})
    tampered = good.replace("200", "500")
    other_key = signed({"ts": 2}, key=b"wrong")
    path = tmp_path / "audit.jsonl"
    path.write_text("\n".join([good, tampered, json.dumps({"ts": 3}), "", "{not json", other_key, "[1]"]) + "\n")
    verdicts = list(verify_file(path, KEY))
    assert [(v.lineno, v.mark) for v in verdicts] == [
        (1, Mark.VALID), (2, Mark.INVALID), (3, Mark.UNSIGNED), (5, Mark.INVALID), (6, Mark.INVALID),
        (7, Mark.INVALID)]
    assert verdicts[1].reason == "signature does not match" and verdicts[3].reason == "not valid JSON"


def test_marker_for_panes():
    marker = SignedMarker(KEY)
    assert marker(signed({"a": 1})) is Mark.VALID
    assert marker('{"a": 1}') is Mark.UNSIGNED
