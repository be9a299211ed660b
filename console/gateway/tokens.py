"""The engine's own token counts, read from an answer as it passes through the gateway, without changing a byte.

Where each kind of answer says them:
- OpenAI-compatible (`/v1/...`): `usage.prompt_tokens` / `usage.completion_tokens`: in a whole answer, and in a
  stream's last chunk when the client asked for it (`stream_options.include_usage`), or the gateway did
  (console/gateway/usage.py: it is fed the stream before that event is cut).
- llama.cpp's server also sends `timings.prompt_n` / `timings.predicted_n` in a stream's last chunk, asked or not:
  used when there is no `usage`.
- Ollama (`/api/chat`, `/api/generate`): `prompt_eval_count` / `eval_count` in the last line (`done: true`) or
  the whole answer.
A stream that says none of these leaves the counts empty (null in the log): nothing is estimated. `finished` says
the stream's own end went by (`data: [DONE]`, Ollama's `"done": true`): a client that leaves after it had its answer.

Only lines holding one of MARKERS are parsed, so the cost of a stream is a substring search per read.
"""

from __future__ import annotations

import json
from typing import Any

MARKERS = (b'"usage"', b'"eval_count"', b'"timings"', b'"prompt_eval_count"', b"[DONE]", b'"done":true',
           b'"done": true')
HELD_MAX = 1 << 20  # the unfinished line kept between reads (the upstream side refuses longer lines anyway)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class TokenCounter:
    def __init__(self, *, streaming: bool) -> None:
        self.streaming = streaming
        self.tokens_in: int | None = None
        self.tokens_out: int | None = None
        self._held = bytearray()
        self._from_usage = False
        self.finished = False  # the stream's own end went by: `data: [DONE]`, or Ollama's `"done": true` line

    def feed(self, data: bytes) -> None:
        held = self._held
        if not self.streaming:
            if len(held) + len(data) <= HELD_MAX * 16:  # a whole answer: parsed at the end, within `other`
                held += data
            return
        if not held and not any(m in data for m in MARKERS):
            nl = data.rfind(b"\n")
            held += data[nl + 1:] if nl != -1 else data[-HELD_MAX:]
            return
        held += data
        nl = held.rfind(b"\n")
        if nl == -1:
            if len(held) > HELD_MAX:
                del held[:-HELD_MAX]
            return
        complete = bytes(held[:nl])
        del held[:nl + 1]
        if any(m in complete for m in MARKERS):
            for line in complete.split(b"\n"):
                if any(m in line for m in MARKERS):
                    self._take(line)

    def end(self) -> None:
        """The body ended: a whole answer is read, a stream's last line without its newline too."""
        held, self._held = bytes(self._held), bytearray()
        if held and any(m in held for m in MARKERS):
            self._take(held)

    def _take(self, line: bytes) -> None:
        line = line.strip()
        if line.startswith(b"data:"):
            line = line[5:].strip()
        if line == b"[DONE]":
            self.finished = True
            return
        try:
            obj: Any = json.loads(line)
        except (ValueError, RecursionError):
            return
        if not isinstance(obj, dict):
            return
        if obj.get("done") is True:
            self.finished = True
        if isinstance(usage := obj.get("usage"), dict):
            tin, tout = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
            if tin is not None or tout is not None:
                self.tokens_in, self.tokens_out, self._from_usage = tin, tout, True
                return
        if not self._from_usage and isinstance(timings := obj.get("timings"), dict):
            tin, tout = _int(timings.get("prompt_n")), _int(timings.get("predicted_n"))
            if tin is not None or tout is not None:
                self.tokens_in, self.tokens_out = tin, tout
        if "eval_count" in obj or "prompt_eval_count" in obj:
            self.tokens_in = _int(obj.get("prompt_eval_count"))
            self.tokens_out = _int(obj.get("eval_count"))
