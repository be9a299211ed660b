"""SGLang (`python -m sglang.launch_server`): OpenAI-compatible chat plus its native info routes.

Facts this adapter relies on (reference/engines-api.md §3):
- `/health` answers 503 (empty body) while the server starts and 200 once a test generation went through; it
  is the one route `--api-key` leaves open, so it also tells "up but our key is wrong" from "down".
- `/get_server_info` carries `version`; `/get_model_info` carries `model_path`. Both need the key.
- `/v1/models` lists the one served model with `max_model_len` (the context length).
- Errors of the OpenAI routes are flat `{"object":"error","message":...}`; 401 is `{"error":"Unauthorized"}`.
- One model per process: loading another means restarting the server with another `--model-path`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import ClassVar

from console.engines.base import EngineInfo, Health, ModelInfo, Op
from console.engines.openai import OpenAICompatEngine, one_model_per_process
from console.errors import BusyError, EngineTimeoutError, NotFoundError, UnreachableError

_ONE_MODEL = ("SGLang serves the model it was started with (one per process); restart it with another "
              "--model-path to {op}")


class SGLangEngine(OpenAICompatEngine):
    kind = "sglang"
    metrics_kind: ClassVar[str | None] = "sglang"
    UNSUPPORTED: ClassVar[Mapping[Op, str]] = {
        **one_model_per_process(_ONE_MODEL),
        Op.PULL: "SGLang loads weights from a path or the HF cache given at start; it has no pull API",
        Op.DELETE: "SGLang has no API to delete model files",
        Op.SHOW: "SGLang has no model details beyond /get_model_info; see `enginedeck models --json`",
        Op.SLEEP: "enginedeck does not drive SGLang's release_memory_occupation yet",
        Op.WAKE: "enginedeck does not drive SGLang's resume_memory_occupation yet",
        Op.LORA_LOAD: "enginedeck does not drive SGLang's /load_lora_adapter yet",
        Op.LORA_UNLOAD: "enginedeck does not drive SGLang's /unload_lora_adapter yet",
    }

    _version: str | None = None

    async def info(self) -> EngineInfo:
        """Health from `/health` (open even with --api-key); version from `/get_server_info`, read once.

        A wrong or missing key raises AuthError from `/get_server_info`: the engine is up, the key is ours to fix.
        """
        t0 = time.perf_counter()
        try:
            await self._request("GET", "/health", what="check health")
        except (UnreachableError, EngineTimeoutError) as exc:
            return EngineInfo(self.kind, self.base_url, None, Health.DOWN, reason=str(exc))
        except BusyError:
            return EngineInfo(self.kind, self.base_url, self._version, Health.LOADING,
                              reason="starting, or its health check generation failed (/health answered 503)")
        latency = (time.perf_counter() - t0) * 1000
        if self._version is None:
            self._version = await self._read_version()
        return EngineInfo(self.kind, self.base_url, self._version, Health.OK, latency_ms=latency)

    async def list_models(self) -> list[ModelInfo]:
        """The one served model, which is loaded for as long as the server runs."""
        return [replace(m, status="loaded") for m in await super().list_models()]

    async def _read_version(self) -> str | None:
        # Newer builds may rename the route to /server_info and keep /get_server_info as a deprecated alias.
        for path in ("/get_server_info", "/server_info"):
            try:
                server = await self._json("GET", path, what="read the server info")
            except NotFoundError:
                continue
            version = server.get("version") if isinstance(server, Mapping) else None
            return version if isinstance(version, str) else None
        return None
