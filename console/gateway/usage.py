"""Asking the engine for its token counts on a client's OpenAI stream, and cutting what was asked for back out.

An OpenAI-compatible stream carries the engine's counts only when its client asked (`stream_options.include_usage`);
most clients do not, so without this the usage ledger would have requests but no tokens for most vLLM traffic.
When the gateway's `ask_usage` is on (the default), a streamed `/v1/chat/completions` or `/v1/completions` request
whose body has no `stream_options` at all gets `"stream_options":{"include_usage":true}` added before its closing
brace (every other byte of the body as the client sent it; `request_hash` is of the client's body), and the one
event the engine then adds, `choices: []` with `usage`, is read for the record and not passed on. The client gets
the engine's other events, whole and in order; only their cut into pieces may differ (an event split over two
reads goes out once it is complete).

Only for engines whose behaviour with the option is known (docs/engines reference): vLLM, SGLang and Ollama add
exactly that one event and change nothing else. Not llama.cpp: it reports `timings` on every stream anyway, and
with the option it moves them from the finish event onto the usage event. Not TGI, LM Studio or another
OpenAI-compatible server: unverified, so their streams are never touched. A client that sent `stream_options`
itself (asking or declining) is never changed.
"""

from __future__ import annotations

import json
from typing import Any

PATHS = frozenset({b"/v1/chat/completions", b"/v1/completions"})
KINDS = frozenset({"vllm", "sglang", "ollama"})
OPTION = b',"stream_options":{"include_usage":true}'
HELD_MAX = 1 << 20  # an unfinished event kept between reads; past it, what is held goes out as it is


def with_usage_asked(path: bytes, body: bytes, obj: Any) -> bytes | None:
    """The body with the option added, or None when this request is left as it is. `obj`: the body parsed."""
    if path not in PATHS or not isinstance(obj, dict) or obj.get("stream") is not True or "stream_options" in obj:
        return None
    end = body.rfind(b"}")
    return body[:end] + OPTION + body[end:] if end > 0 else None


def _usage_only(event: bytes) -> bool:
    """An SSE event that is the engine's usage chunk: `data: {... "choices": [], "usage": {...}}`."""
    data = event.strip()
    if not data.startswith(b"data:") or b'"usage"' not in data:
        return False
    try:
        obj = json.loads(data[5:])
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict) and obj.get("choices") == [] and isinstance(obj.get("usage"), dict)


class UsageCut:
    """Passes a stream on event by event, without the usage event the gateway asked for."""

    def __init__(self) -> None:
        self._held = bytearray()

    def feed(self, piece: bytes) -> bytes:
        held = self._held
        held += piece
        lf, crlf = held.rfind(b"\n\n"), held.rfind(b"\r\n\r\n")
        end = max(lf + 2 if lf != -1 else 0, crlf + 4 if crlf != -1 else 0)
        if end == 0:  # no complete event yet
            return self.end() if len(held) > HELD_MAX else b""
        out = bytes(held[:end])
        del held[:end]
        return self._cut(out)

    def end(self) -> bytes:
        """What is held when the stream ends (an engine that ends without a blank line)."""
        out, self._held = bytes(self._held), bytearray()
        return self._cut(out)

    @staticmethod
    def _cut(events: bytes) -> bytes:
        if b'"usage"' not in events:
            return events
        sep = b"\r\n\r\n" if b"\r\n\r\n" in events else b"\n\n"
        kept = [e for e in events.split(sep) if not _usage_only(e)]
        return sep.join(kept)
