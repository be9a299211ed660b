"""Engines and registries for the watch tests: engines that answer what a test says, or never answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from console.engines.base import Capabilities, Engine, EngineInfo, Health, LoadedModel, MetricsSnapshot, Op
from console.engines.registry import EngineEntry


class StubEngine(Engine):
    kind = "vllm"

    def __init__(self, name: str, *, loaded: Sequence[LoadedModel] = (), health: Health = Health.OK,
                 metrics: MetricsSnapshot | None = None, hang: bool = False, hang_models: float = 0) -> None:
        super().__init__(name, f"http://127.0.0.1:1/{name}")
        self.loaded = list(loaded)
        self.health = health
        self.snapshot = metrics
        self.hang = hang
        self.hang_models = hang_models

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities({} if self.snapshot is not None else {Op.METRICS: "none here"})

    async def info(self) -> EngineInfo:
        if self.hang:
            await asyncio.Event().wait()
        return EngineInfo(self.kind, self.base_url, "0.9", self.health, latency_ms=12.0)

    async def list_models(self):
        return []

    async def loaded_models(self) -> list[LoadedModel]:
        if self.hang_models:
            await asyncio.sleep(self.hang_models)
        return self.loaded

    async def metrics(self) -> MetricsSnapshot:
        assert self.snapshot is not None
        return self.snapshot

    def chat(self, request):
        raise NotImplementedError


@dataclass
class StubRegistry:
    engines: list[Engine] = field(default_factory=list)

    async def refresh(self, on_entry=None) -> list[EngineEntry]:
        return [EngineEntry(name=e.name, url=e.base_url, kind=e.kind, engine=e, error=None, source="config")
                for e in self.engines]
