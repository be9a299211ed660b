"""Every read of every adapter against endpoints that attack at the HTTP level (tests/fakes/wire_attacks.py).

Each call must end within its deadline plus a margin, with a typed EngineError (or a DOWN health that carries
one), and without holding more than its limit in memory. The deadlines and limits here are small, so that an
unbounded read shows as a timeout of the test or a memory jump, not as a slow pass.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
import pytest

from console.config import MIB, EngineConfig, Timeouts, WireLimits
from console.engines.base import ChatMessage, ChatRequest, Engine, EventKind, Health
from console.engines.detect import scan_loopback
from console.engines.ollama import OllamaEngine
from console.engines.vllm import VLLMEngine
from console.errors import EngineError, EngineTimeoutError, LimitError
from tests.fakes.wire_attacks import ATTACKS, attack_server

DEADLINE_S = 1.0
MARGIN_S = 4.0  # generous: the box may be busy; an unbounded read takes far longer (or forever)
LIMITS = WireLimits(models_bytes=MIB, ps_bytes=MIB, props_bytes=MIB, metrics_bytes=MIB, show_bytes=MIB,
                    other_bytes=MIB, line_bytes=256 * 1024, stream_bytes=4 * MIB)
RSS_GROWTH_LIMIT = 150 * MIB

Call = Callable[[Engine], Awaitable[Any]]


async def _chat(engine: Engine, max_tokens: int | None = 8) -> Any:
    request = ChatRequest("m", (ChatMessage("user", "hi"),), max_tokens=max_tokens)
    events = [ev async for ev in engine.chat(request)]
    errors = [ev.error for ev in events if ev.kind is EventKind.ERROR]
    if errors:
        raise errors[0]  # type: ignore[misc]
    return events


async def _info(engine: Engine) -> Any:
    info = await engine.info()
    assert info.health is not Health.OK or info.version is not None
    return info


CALLS: dict[str, Call] = {
    "info": _info,
    "list_models": lambda e: e.list_models(),
    "loaded_models": lambda e: e.loaded_models(),
    "chat": _chat,
    "chat_unbounded": lambda e: _chat(e, max_tokens=None),
}
KINDS: dict[str, type[Engine]] = {"ollama": OllamaEngine, "vllm": VLLMEngine}


def _engine(kind: str, url: str) -> Engine:
    cfg = EngineConfig(name="attacked", url=url, kind=kind, timeouts=Timeouts.within(DEADLINE_S, connect_s=1.0),
                       limits=LIMITS)
    return KINDS[kind](cfg)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("call", sorted(CALLS))
async def test_every_read_ends_in_time_with_a_typed_error_and_bounded_memory(attack: str, kind: str,
                                                                                call: str) -> None:
    gc.collect()
    rss_before = psutil.Process().memory_info().rss
    with attack_server(attack) as url:
        started = time.monotonic()
        async with _engine(kind, url) as engine:
            try:
                result = await asyncio.wait_for(CALLS[call](engine), DEADLINE_S + MARGIN_S)
            except EngineError as exc:
                outcome: Any = exc
            else:
                outcome = result
        elapsed = time.monotonic() - started
    growth = psutil.Process().memory_info().rss - rss_before
    assert elapsed < DEADLINE_S + MARGIN_S
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew {growth / MIB:.0f} MiB"
    if call == "info":  # down with the reason, or (a bad answer: the engine is up, the problem is ours) raised
        assert isinstance(outcome, EngineError) or (outcome.health is Health.DOWN and outcome.reason), outcome
    elif attack in ("invalid_utf8",) and call != "chat":
        pass  # the lists carry the names as replaced text, or refuse the shape: both are answers
    else:
        assert isinstance(outcome, EngineError), f"{attack} {call} answered {outcome!r}"


@pytest.mark.parametrize("attack, call, kind, wanted, words", [
    ("endless_json", "list_models", "ollama", LimitError, "GET /api/tags: the answer passed 1 MiB (limits.models)"),
    ("long_length", "loaded_models", "ollama", LimitError, "GET /api/ps: the answer passed 1 MiB (limits.ps)"),
    ("gzip_bomb", "list_models", "vllm", LimitError, "GET /v1/models: the answer passed 1 MiB (limits.models)"),
    ("drip", "list_models", "ollama", EngineTimeoutError,
     "GET /api/tags: no whole answer within 1 s (request_timeout)"),
    ("drip_head", "list_models", "vllm", EngineTimeoutError, "GET /v1/models: no answer within 1 s (request_timeout)"),
    ("huge_line", "chat", "vllm", LimitError, "POST /v1/chat/completions: one line passed 256 KiB (limits.line)"),
    ("huge_line", "chat", "ollama", LimitError, "POST /api/chat: one line passed 256 KiB (limits.line)"),
    ("endless_lines", "chat_unbounded", "ollama", LimitError,
     "POST /api/chat: the stream passed 4 MiB (limits.stream)"),
    ("endless_lines", "chat", "vllm", LimitError,
     "POST /v1/chat/completions: the reply went on past 80 output chunks although at most 8 tokens were asked for"),
    ("drip", "chat", "vllm", EngineTimeoutError,
     "POST /v1/chat/completions: no first line within 1 s (first_byte_timeout)"),
    ("deep_json", "list_models", "ollama", EngineError, "not JSON"),
    ("interim_storm", "list_models", "ollama", EngineError, "interim"),
    ("redirect_loop", "list_models", "vllm", EngineError, "answered 302"),
])
async def test_the_error_names_the_engine_the_endpoint_and_the_limit(attack: str, call: str, kind: str,
                                                                     wanted: type[Exception], words: str) -> None:
    with attack_server(attack) as url:
        async with _engine(kind, url) as engine:
            with pytest.raises(wanted) as err:
                await asyncio.wait_for(CALLS[call](engine), DEADLINE_S + MARGIN_S)
    assert words in str(err.value) and str(err.value).startswith("attacked: ")


async def test_tls_spoken_to_a_plain_port_is_a_clear_error() -> None:
    with attack_server("endless_json") as url:
        cfg = EngineConfig(name="attacked", url=url.replace("http://", "https://"), kind="vllm", verify_tls=False,
                           timeouts=Timeouts.within(DEADLINE_S, connect_s=1.0), limits=LIMITS)
        async with VLLMEngine(cfg) as engine:
            with pytest.raises(EngineError):
                await asyncio.wait_for(engine.list_models(), DEADLINE_S + MARGIN_S)
            with pytest.raises(EngineError):
                await asyncio.wait_for(_chat(engine), DEADLINE_S + MARGIN_S)


@pytest.mark.parametrize("attack", ["endless_json", "drip_head", "gzip_bomb", "interim_storm", "not_http"])
async def test_the_discovery_scan_leaves_out_a_hostile_port_in_time(attack: str) -> None:
    with attack_server(attack) as url:
        port = int(url.rsplit(":", 1)[1])
        started = time.monotonic()
        found = await asyncio.wait_for(scan_loopback([port], timeout_s=DEADLINE_S, limits=LIMITS),
                                       DEADLINE_S + MARGIN_S)
    assert found == [] and time.monotonic() - started < DEADLINE_S + MARGIN_S
