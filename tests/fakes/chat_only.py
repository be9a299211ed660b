"""A base for fake engines that only chat: the rest of the Engine protocol answers empty or refuses."""

from __future__ import annotations

from console.engines.base import Capabilities, Engine, EngineInfo, LoadedModel, ModelInfo


class ChatOnlyEngine(Engine):
    """Subclasses give `kind` and `chat()`; nothing else of the engine is asked for by the probe."""

    def __init__(self, name: str) -> None:
        super().__init__(name, f"http://{name}")

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    async def info(self) -> EngineInfo:
        raise NotImplementedError("a chat-only fake has no info")

    async def list_models(self) -> list[ModelInfo]:
        return []

    async def loaded_models(self) -> list[LoadedModel]:
        return []
