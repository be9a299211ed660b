"""The closed loop of one level over a set of its streams: warm-up, numbered tickets, fillers.

The same loop runs in the probe's own process (small levels) and in each worker process of a large level
(console/probe/workers.py); only where the tickets come from and where the records go differ. Each stream sends
one warm-up request, then takes numbered tickets until the level's measured requests are all issued; a stream
whose tickets are gone keeps sending filler requests until `all_done` is set, so every measured request ran under
the full load. Fillers are then cancelled and never counted.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from console.engines.base import ChatMessage, ChatRequest, Engine
from console.probe.figures import LevelTrace
from console.probe.overhead import OverheadMeter
from console.probe.prompts import build_prompt, prompt_tag
from console.probe.record import RequestRecord
from console.probe.request import measure

if TYPE_CHECKING:
    from console.probe.params import ProbeParams

CONTINUOUS_USAGE_KINDS = ("vllm",)


def build_request(kind: str, model: str, params: ProbeParams, tag: str, index: int) -> ChatRequest:
    extra: dict[str, Any] = {"ignore_eos": True} if params.ignore_eos else {}
    if kind in CONTINUOUS_USAGE_KINDS:
        # Cumulative usage on every chunk gives each chunk's token count: per-token ITL, exact k1 for TPOT.
        extra["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
    return ChatRequest(
        model=model, messages=(ChatMessage("user", build_prompt(tag, index, params.prompt_tokens)),),
        temperature=params.temperature, max_tokens=params.max_tokens, seed=params.seed, extra=extra,
    )


class LevelStreams:
    """Streams of one level. `next_ticket()` hands out the level's measured-request numbers (shared by every
    process of the level); `on_record` receives each measured record; `on_first_ticket` fires once, when
    ticket 0 is taken (the level's measuring phase begins)."""

    def __init__(self, engine: Engine, model: str, params: ProbeParams, level: int, *,
                 next_ticket: Callable[[], int], on_record: Callable[[RequestRecord], None],
                 on_first_ticket: Callable[[], None], trace: LevelTrace, meter: OverheadMeter) -> None:
        self.engine = engine
        self.model = model
        self.params = params
        self.level = level
        self.total = params.requests_for(level)
        self.next_ticket = next_ticket
        self.on_record = on_record
        self.on_first_ticket = on_first_ticket
        self.trace = trace
        self.meter = meter

    def _request(self, tag: str, index: int) -> ChatRequest:
        return build_request(self.engine.kind, self.model, self.params, tag, index)

    async def _stream(self, sid: int) -> None:
        level, timeout, trace = self.level, self.params.timeout_s, self.trace
        if self.params.warmup:
            tag = prompt_tag(level, sid, warmup=True)
            await measure(self.engine, self._request(tag, sid), index=sid, tag=tag, warmup=True,
                          timeout_s=timeout, trace=trace)
        while True:
            i = self.next_ticket()
            if i >= self.total:
                break
            if i == 0:
                self.on_first_ticket()
            tag = prompt_tag(level, i)
            rec = await measure(self.engine, self._request(tag, i), index=i, tag=tag, warmup=False,
                                timeout_s=timeout, meter=self.meter, trace=trace)
            self.on_record(rec)
        # Keep this stream's share of the load on until the last measured request is done. A failed filler
        # ends the stream's fillers, so a refusing engine is not hammered in a tight loop.
        for f in itertools.count():
            tag = prompt_tag(level, f * level + sid, filler=True)
            rec = await measure(self.engine, self._request(tag, sid), index=-1, tag=tag, warmup=True,
                                timeout_s=timeout, trace=trace)
            if not rec.ok:
                return

    async def run(self, sids: Iterable[int], all_done: asyncio.Event) -> None:
        """Run streams `sids` until `all_done` is set; then cancel them. A stream that raises (a bug in the
        probe, never an engine failure: those become records) ends the level with that exception."""
        tasks = {asyncio.create_task(self._stream(s), name=f"probe-c{self.level}-s{s}") for s in sids}
        waiter = asyncio.create_task(all_done.wait(), name=f"probe-c{self.level}-done")
        try:
            pending: set[asyncio.Task[Any]] = {waiter, *tasks}
            while not all_done.is_set():
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in finished:
                    if not t.cancelled() and (exc := t.exception()) is not None:
                        raise exc
        finally:
            for t in (waiter, *tasks):
                t.cancel()
            await asyncio.gather(waiter, *tasks, return_exceptions=True)
