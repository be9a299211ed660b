"""Replay a workload: the requests of a gateway's capture (console/gateway/capture.py writes it; docs/gateway.md),
by their shape, against any engine (`enginedeck probe ENGINE MODEL --workload FILE`).

What is replayed of each captured request: its prompt length (the engine's own count of it when the capture has
one, else its text at ~4 characters a token) and its max tokens (`max_tokens`, `max_completion_tokens` or Ollama's
`options.num_predict`; else the number of tokens the engine gave it; else DEFAULT_MAX_TOKENS). The prompt itself is
not resent: the probe's deterministic prompt of that length is (console/probe/prompts.py), so a replay carries no
captured text and needs no tokenizer. Requests that are not chat or generate calls (model lists, ...) are skipped.

Two ways to send them:
- closed loop (default): `concurrency` streams take the requests in their captured order, each sending the next
  when its last one ended;
- open loop (`arrivals=True`): each request leaves at its recorded offset from the first arrival (divided by
  `speed`), whether or not the ones before it have ended; how late each left (the client's lag) is reported.
Each request goes through `probe/request.py: measure`, the probe's own stamped path.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from console.engines.base import ChatMessage, ChatRequest, Engine
from console.errors import ConfigError
from console.probe.prompts import build_prompt
from console.probe.record import RequestRecord
from console.probe.request import measure
from console.probe.stats import Dist

CHAT_PATHS = ("/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate", "/chat/completions",
              "/completion", "/completions")
CHARS_PER_TOKEN = 4
DEFAULT_MAX_TOKENS = 128
MAX_ITEMS = 100_000
LINE_LIMIT = 64 << 20


@dataclass(frozen=True)
class WorkItem:
    offset_s: float  # after the first captured arrival
    prompt_tokens: int
    max_tokens: int


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _text_chars(body: dict[str, Any]) -> int:
    chars = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict)
                         and isinstance(p.get("text"), str))
    for key in ("prompt", "system"):
        if isinstance(body.get(key), str):
            chars += len(body[key])
    return chars


def item_of(entry: dict[str, Any]) -> tuple[float, int, int] | None:
    """(arrival time, prompt tokens, max tokens) of one capture line; None for a request that is not a chat."""
    path = entry.get("path")
    body = entry.get("body")
    if not isinstance(path, str) or path.rstrip("/") not in CHAT_PATHS or not isinstance(body, dict):
        return None
    t = entry.get("t")
    if not isinstance(t, int | float):
        return None
    options = o if isinstance(o := body.get("options"), dict) else {}
    max_tokens = (_int(body.get("max_tokens")) or _int(body.get("max_completion_tokens"))
                  or _int(options.get("num_predict")) or _int(entry.get("tokens_out")) or DEFAULT_MAX_TOKENS)
    prompt = _int(entry.get("tokens_in")) or max(1, _text_chars(body) // CHARS_PER_TOKEN)
    return float(t), prompt, max_tokens


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as f:
        for n, line in enumerate(iter(lambda: f.readline(LINE_LIMIT), b""), 1):
            if len(line) >= LINE_LIMIT and not line.endswith(b"\n"):
                raise ConfigError(f"{path}:{n}: a line over {LINE_LIMIT >> 20} MiB is not a capture line")
            yield n, line


def load_workload(path: Path) -> list[WorkItem]:
    """The chat requests of a capture file, in arrival order. A file that is not a capture is a ConfigError."""
    raw: list[tuple[float, int, int]] = []
    try:
        for n, line in _lines(path):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                raise ConfigError(f"{path}:{n}: not a JSON line of a gateway capture",
                                  hint="give a capture file (<log dir>/capture/capture.jsonl)") from None
            if isinstance(entry, dict) and (item := item_of(entry)) is not None:
                raw.append(item)
                if len(raw) > MAX_ITEMS:
                    raise ConfigError(f"{path}: more than {MAX_ITEMS} requests", hint="split the capture")
    except OSError as exc:
        raise ConfigError(f"cannot read the workload {path}: {exc.strerror}") from None
    if not raw:
        raise ConfigError(f"{path}: no chat or generate request with a body in it",
                          hint="capture with `enginedeck gateway --capture SIZE` (docs/gateway.md)")
    raw.sort()
    t0 = raw[0][0]
    return [WorkItem(t - t0, p, m) for t, p, m in raw]


@dataclass(frozen=True)
class ReplayResult:
    records: list[RequestRecord]
    items: list[WorkItem]
    lag_s: list[float]  # open loop: how late each request left (the client's own delay)
    wall_s: float

    def summary(self) -> dict[str, Any]:
        ok = [r for r in self.records if r.ok]

        def dist(values: list[float]) -> dict[str, float | None] | None:
            d = Dist.of(values)
            return None if d is None else {"p50": d.p50, "p90": d.p90, "p99": d.p99, "max": d.max}

        return {
            "requests": len(self.records), "errors": len(self.records) - len(ok),
            "ttft_s": dist([r.ttft_s for r in ok if r.ttft_s is not None]),
            "e2e_s": dist([r.e2e_s for r in ok if r.e2e_s is not None]),
            "tokens_in": sum(r.tokens_in or 0 for r in ok), "tokens_out": sum(r.tokens_out or 0 for r in ok),
            "wall_s": self.wall_s, "requests_per_s": len(self.records) / self.wall_s if self.wall_s else None,
            "send_lag_s": dist(self.lag_s) if self.lag_s else None,
            "error_kinds": sorted({r.error.value for r in self.records if r.error is not None}),
        }


def _request(model: str, item: WorkItem, index: int) -> tuple[str, ChatRequest]:
    tag = f"replay-{index}"
    return tag, ChatRequest(model=model, messages=(ChatMessage("user", build_prompt(tag, index, item.prompt_tokens)),),
                            max_tokens=item.max_tokens, temperature=0.0)


async def replay(engine: Engine, model: str, items: list[WorkItem], *, concurrency: int = 1, arrivals: bool = False,
                 speed: float = 1.0, timeout_s: float = 120.0) -> ReplayResult:
    records: list[RequestRecord | None] = [None] * len(items)
    lags: list[float] = []
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        tag, request = _request(model, items[i], i)
        records[i] = await measure(engine, request, index=i, tag=tag, warmup=False, timeout_s=timeout_s)

    if arrivals:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for i, item in enumerate(items):
            due = start + item.offset_s / speed
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            lags.append(max(0.0, loop.time() - due))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    else:
        queue = iter(range(len(items)))

        async def stream() -> None:
            for i in queue:
                await one(i)

        await asyncio.gather(*(stream() for _ in range(max(1, concurrency))))
    return ReplayResult([r for r in records if r is not None], items, lags, time.perf_counter() - t0)
