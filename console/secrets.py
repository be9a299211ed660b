"""The secret values this process has read, and their redaction from every text that leaves it.

A secret is remembered the moment it is read: an engine's API key (`EngineConfig.resolve_api_key`), a key file
(`config.read_secret_file`: engine keys, the audit trail's HMAC key, the keys `logs --key-file` and `audit
verify --key-file` read) and a key from the environment (`audit/keys.py`). From then on `redact` replaces it
wherever it turns up in untrusted text. It is applied where text is made, shown or kept: every error's message
and hint (`errors.py`), everything displayed (`logs/sanitize.neutralise`, which the TUI and the CLI tables use),
the CLI's JSON, the store's writes and the audit trail's records. An engine or a proxy that echoes the
`Authorization` header in an error body therefore shows `Bearer [redacted]`.

A key travels in more than one form: as it is (also inside `Bearer KEY`), escaped inside an echoed JSON body
(Python's and Go's escaping) and percent-encoded inside an echoed URL; each form is redacted. An error body cut
to a few hundred characters may end in the first part of a key: a tail of at least TAIL_MIN characters that
begins a key is redacted too.

Values shorter than MIN_LENGTH are not remembered (redacting every "abc" from every text would hide text and
protect nothing), nor a value inside the marker itself, so redacting twice changes nothing. With no secret
remembered, `redact` returns its argument after one test. Nothing here imports the rest of enginedeck, so
config.py and errors.py can use it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"
MIN_LENGTH = 4
TAIL_MIN = 8
# What may follow a cut-off key at the end of a text: closing quotes and brackets, an ellipsis, white space.
_CLOSERS = "\"'`)]}>…\n\t "

_lock = threading.Lock()
_forms: tuple[str, ...] = ()  # every form of every remembered secret, longest first
_heads: frozenset[str] = frozenset()  # the first TAIL_MIN characters of each form longer than that
_window = 0  # how much of a text's end can hold a cut-off form and what closes it


def _go_escape(text: str) -> str:
    """Go's encoding/json (Ollama, many proxies) also escapes <, > and & inside strings."""
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def forms_of(value: str) -> set[str]:
    """The shapes `value` takes in echoed text."""
    import json  # here, not at import: errors.py imports this module on every start
    from urllib.parse import quote, quote_plus

    escaped = json.dumps(value)[1:-1]
    return {value, escaped, json.dumps(value, ensure_ascii=False)[1:-1], _go_escape(escaped),
            quote(value, safe=""), quote_plus(value, safe="")}


def remember(value: str | bytes | None) -> None:
    """Redact `value` from now on, in this process. Bytes that are not UTF-8 cannot appear in text: ignored."""
    global _forms, _heads, _window
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return
    if not value or len(value) < MIN_LENGTH or value in REDACTED:
        return
    with _lock:
        if value in _forms:
            return
        forms = tuple(sorted(set(_forms) | forms_of(value), key=len, reverse=True))
        _heads = frozenset(f[:TAIL_MIN] for f in forms if len(f) > TAIL_MIN)
        _window = len(forms[0]) + 16
        _forms = forms  # last: a reader that sees the new forms sees the heads that go with them


def forget_all() -> None:
    """For tests: a process that read a key keeps it for its lifetime."""
    global _forms, _heads, _window
    with _lock:
        _forms, _heads, _window = (), frozenset(), 0


def active() -> bool:
    return bool(_forms)


def redact(text: str) -> str:
    """`text` with every remembered secret, in each of its forms, replaced by REDACTED."""
    forms = _forms
    if not forms or not text:
        return text
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    end = text[-_window:]
    for head in _heads:  # a cheap test first: most texts end in no key's beginning
        if head in end:
            return _cut_tail(text, forms)
    return text


def _cut_tail(text: str, forms: tuple[str, ...]) -> str:
    """Redact a key's first TAIL_MIN or more characters when they end the text (before closing quotes etc.)."""
    end = len(text.rstrip(_CLOSERS))
    for form in forms:
        if len(form) <= TAIL_MIN:
            continue  # short keys are only ever redacted whole
        head = form[:TAIL_MIN]
        i = text.find(head, max(0, end - len(form) + 1), end)
        while i != -1:
            if form.startswith(text[i:end]):
                return text[:i] + REDACTED + text[end:]
            i = text.find(head, i + 1, end)
    return text


def redact_data(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings) with every string redacted, keys included."""
    if not _forms:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact_data(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    return value


def redact_params(params: Any) -> tuple[Any, ...]:
    """SQL parameters with every string redacted (numbers, bytes and None pass as they are)."""
    if not _forms:
        return tuple(params)
    return tuple(redact(p) if isinstance(p, str) else p for p in params)
