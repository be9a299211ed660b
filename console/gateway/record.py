"""One request through the gateway, as it happened: the fields of its signed log line (docs/gateway.md)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class Outcome(enum.StrEnum):
    OK = "ok"  # the engine's answer reached the client whole, with a status under 400
    UPSTREAM_ERROR = "upstream_error"  # the engine answered 4xx/5xx, could not be reached, or broke off
    CLIENT_DISCONNECT = "client_disconnect"  # the client went away first (the engine's request was cancelled)
    TIMEOUT = "timeout"  # a deadline passed: the engine's, the client's body, or the drain at shutdown
    REJECTED = "rejected"  # refused by the gateway: no valid key, a body too large


@dataclass
class RequestRecord:
    request_id: str
    started: float  # wall clock (time.time()) when the request arrived
    method: str
    path: str
    client_ip: str
    client: str  # the gateway key's id, `key:<fingerprint>` of the client's own key, or `anonymous`
    user_agent: str
    upstream: str
    request_hash: str = ""  # sha256 (hex) of the request body as the client sent it
    model: str | None = None
    stream: bool | None = None  # the answer was a stream (SSE or NDJSON)
    status_code: int | None = None  # the status the client got; None when it got none
    latency_ms: float = 0.0  # arrival to the last byte sent (or the end of the attempt)
    ttft_ms: float | None = None  # arrival to the first byte of the answer's body sent to the client
    tokens_in: int | None = None  # the engine's own counts (gateway/tokens.py); None when it said none
    tokens_out: int | None = None
    outcome: Outcome = Outcome.OK
    bytes_in: int = 0  # request body
    bytes_out: int = 0  # answer body, as forwarded
    error: str | None = None  # what went wrong, in one line, secrets redacted

    def entry(self) -> dict[str, Any]:
        """The log line's fields (before its signature)."""
        stamp = datetime.fromtimestamp(self.started, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {
            "timestamp": stamp, "method": self.method, "path": self.path, "client_ip": self.client_ip,
            "request_hash": self.request_hash, "status_code": self.status_code,
            "latency_ms": round(self.latency_ms, 3), "request_id": self.request_id, "client": self.client,
            "user_agent": self.user_agent, "model": self.model, "stream": self.stream,
            "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 3), "outcome": self.outcome.value,
            "upstream": self.upstream, "bytes_in": self.bytes_in, "bytes_out": self.bytes_out, "error": self.error,
        }
