"""One poll of one engine: bounded in time, never raising, and reusing a fresh healthy `info` answer."""

from __future__ import annotations

import asyncio

from console.engines.base import Capabilities, Engine, EngineInfo, Health, LoadedModel, Op
from console.engines.poll import poll_engine
from console.errors import UnreachableError


class Counting(Engine):
    kind = "ollama"

    def __init__(self) -> None:
        super().__init__("e", "http://127.0.0.1:1")
        self.info_calls = self.loaded_calls = 0
        self.down = False
        self.hang = False
        self.hang_loaded = False

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities({Op.METRICS: "none"})

    async def info(self) -> EngineInfo:
        self.info_calls += 1
        if self.hang:
            await asyncio.Event().wait()
        return EngineInfo(self.kind, self.base_url, "1", Health.DOWN if self.down else Health.OK, latency_ms=1.0)

    async def list_models(self):
        return []

    async def loaded_models(self) -> list[LoadedModel]:
        self.loaded_calls += 1
        if self.hang_loaded:
            await asyncio.Event().wait()
        if self.down:
            raise UnreachableError("cannot connect", engine=self.name)
        return [LoadedModel("m")]

    def chat(self, request):
        raise NotImplementedError


async def test_info_is_reused_while_the_engine_answers_and_asked_again_when_it_stops():
    engine = Counting()
    first = await poll_engine(engine)
    second = await poll_engine(engine, previous=first)
    assert (engine.info_calls, engine.loaded_calls) == (1, 2)
    assert second.health is Health.OK and second.loaded == (LoadedModel("m"),) and second.info_at == first.info_at
    engine.down = True
    third = await poll_engine(engine, previous=second)
    assert engine.info_calls == 2 and third.health is Health.DOWN  # no stale "ok" after the engine went away


async def test_a_hung_engine_costs_its_deadline_and_says_so():
    engine = Counting()
    engine.hang = True
    status = await asyncio.wait_for(poll_engine(engine, deadline_s=0.2), timeout=5)
    assert status.health is Health.DOWN and status.error == "no answer within 0.2 s"


async def test_a_list_that_runs_out_of_time_says_timed_out():
    # asyncio's TimeoutError has no text of its own: the error said "loaded models: " and nothing more.
    engine = Counting()
    engine.hang_loaded = True
    status = await asyncio.wait_for(poll_engine(engine, deadline_s=0.2), timeout=5)
    assert status.error == "loaded models: timed out"
