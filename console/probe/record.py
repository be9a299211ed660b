"""What one probe request measured, and the per-request figures derived from it (definitions in docs/probe.md).

All times are `time.perf_counter_ns()` values from one monotonic clock. Content-bearing chunks are those with
non-empty content, reasoning or a tool call: a role-only, empty, keep-alive or usage chunk is not a token and
must not start the TTFT clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from console.engines.base import TokenSource
from console.errors import (
    AuthError,
    BusyError,
    EngineError,
    EngineTimeoutError,
    NotFoundError,
    StreamError,
    UnreachableError,
)


class ErrorKind(StrEnum):
    """Why a request failed. Failed requests are left out of every latency figure and counted here instead."""

    HTTP_4XX = "http_4xx"
    BUSY = "busy"  # 429 / 503: the engine refused for load
    HTTP_5XX = "http_5xx"
    TIMEOUT = "timeout"
    DISCONNECT = "disconnect"  # connection refused or broken, or the stream ended without its final chunk
    EMPTY = "empty_stream"  # the stream finished without one content-bearing chunk
    INVALID = "invalid"  # timestamps that cannot be right (TTFT <= 0, first after last)
    DROPPED = "dropped"  # open loop: due while the in-flight cap was full, so never sent


def classify(exc: EngineError) -> ErrorKind:
    if isinstance(exc, BusyError):
        return ErrorKind.BUSY
    if isinstance(exc, EngineTimeoutError):
        return ErrorKind.TIMEOUT
    if isinstance(exc, AuthError | NotFoundError):
        return ErrorKind.HTTP_4XX
    if isinstance(exc, UnreachableError | StreamError):
        return ErrorKind.DISCONNECT
    status = exc.status
    if status is not None and 400 <= status < 500:
        return ErrorKind.HTTP_4XX
    if status is not None and status >= 500:
        return ErrorKind.HTTP_5XX
    return ErrorKind.DISCONNECT


@dataclass(frozen=True)
class RequestRecord:
    index: int  # order of issue within the level
    tag: str  # the unique marker in the prompt (also lets a test server match its own records)
    warmup: bool
    t_send_ns: int  # the request's bytes written to the socket (else: handed to the engine client)
    t_end_ns: int  # final chunk, error, or end of stream
    t_first_ns: int | None = None  # first content-bearing chunk (content, reasoning or tool call)
    t_first_answer_ns: int | None = None  # first answer content (not reasoning)
    t_last_ns: int | None = None  # last content-bearing chunk
    chunks: int = 0  # content-bearing chunks
    chunk_tokens_known: bool = False  # every content chunk carried the server's token count
    first_chunk_tokens: int | None = None
    gaps_ns: tuple[int, ...] = ()  # between consecutive content chunks
    gap_tokens: tuple[int, ...] = ()  # tokens carried by the later chunk of each gap, when known
    tokens_out: int | None = None
    tokens_in: int | None = None
    token_source: TokenSource | None = None
    # Engine-side timings of this reply, where the engine reports them (Ollama, llama.cpp timings).
    load_ms: float | None = None
    prompt_ms: float | None = None
    generation_ms: float | None = None
    total_ms: float | None = None
    error: ErrorKind | None = None
    error_message: str = ""
    http_status: int | None = None  # the engine's status when it answered the request with an error
    # Open loop: when the request was due by the arrival schedule. Its latencies are measured from here, not from
    # the send, so a client that sends late cannot hide the wait (no coordinated omission).
    t_sched_ns: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def t_start_ns(self) -> int:
        """Where this request's latencies start: its scheduled arrival in open loop, else its send."""
        return self.t_send_ns if self.t_sched_ns is None else self.t_sched_ns

    @property
    def send_lag_s(self) -> float | None:
        """Open loop: how late the request's bytes left after it was due (None in closed loop)."""
        return None if self.t_sched_ns is None else (self.t_send_ns - self.t_sched_ns) / 1e9

    @property
    def ttft_s(self) -> float | None:
        return None if self.t_first_ns is None else (self.t_first_ns - self.t_start_ns) / 1e9

    @property
    def ttfa_s(self) -> float | None:
        return None if self.t_first_answer_ns is None else (self.t_first_answer_ns - self.t_start_ns) / 1e9

    @property
    def e2e_s(self) -> float | None:
        """Send (open loop: scheduled arrival) to the last content-bearing chunk (a trailing usage chunk does not
        lengthen it)."""
        return None if self.t_last_ns is None else (self.t_last_ns - self.t_start_ns) / 1e9

    @property
    def busy_s(self) -> float:
        """Send to end of stream: how long this request occupied its stream (Little's law)."""
        return (self.t_end_ns - self.t_send_ns) / 1e9

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first chunk: (t_last − t_first) / (N_out − k₁)."""
        if self.t_first_ns is None or self.t_last_ns is None or self.tokens_out is None:
            return None
        after_first = self.tokens_out - (self.first_chunk_tokens or 1)
        if after_first < 1:
            return None
        return (self.t_last_ns - self.t_first_ns) / 1e9 / after_first

    @property
    def decode_tok_s(self) -> float | None:
        tpot = self.tpot_s
        return 1.0 / tpot if tpot else None

    @property
    def max_stall_s(self) -> float | None:
        return max(self.gaps_ns) / 1e9 if self.gaps_ns else None

    def itl_samples_s(self) -> list[float]:
        """Inter-token gaps: each chunk gap spread over the tokens the chunk carried when the server said how
        many; otherwise one sample per chunk gap (inter-chunk latency, labelled so by the level summary)."""
        if not self.chunk_tokens_known:
            return [g / 1e9 for g in self.gaps_ns]
        out: list[float] = []
        for gap, k in zip(self.gaps_ns, self.gap_tokens, strict=True):
            if k > 0:
                out.extend([gap / 1e9 / k] * k)
        return out

    @property
    def queue_ms(self) -> float | None:
        """Ollama: the time the request waited for a slot ≈ total − load − prompt eval − eval."""
        total, load, prompt, gen = self.total_ms, self.load_ms, self.prompt_ms, self.generation_ms
        if total is None or load is None or prompt is None or gen is None:
            return None
        return max(0.0, total - load - prompt - gen)

    @property
    def server_decode_tok_s(self) -> float | None:
        if self.tokens_out is None or not self.generation_ms:
            return None
        return self.tokens_out / (self.generation_ms / 1000.0)
