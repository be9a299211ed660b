"""Hugging Face TGI (`text-generation-launcher`): OpenAI-compatible chat plus `/info` and `/health`.

Facts this adapter relies on (reference/engines-api.md §4):
- `/health` answers 200 (empty) or 503 `{"error":"unhealthy","error_type":"healthcheck"}`: a shard failed its
  health check, which is "down", not "loading".
- `/info` (open even with `--api-key`) has `model_id`, `version`, `max_input_tokens`, `max_total_tokens`;
  `/v1/models` lists the model with `owned_by` = the model id and no context length, so context comes from
  `/info.max_total_tokens`.
- Streams write `data:` without a space (axum), errors as `{"error": ...}` events (an object on the chat route,
  a string with `error_type` elsewhere); the OpenAI base parser accepts all three.
- Guarded routes answer a bare 401 with an empty body.
- TGI is in maintenance mode and serves one model per process.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

from console.engines.base import EngineInfo, Health, ModelInfo, Op
from console.engines.http import error_message_from_body
from console.engines.openai import OpenAICompatEngine, one_model_per_process
from console.errors import EngineTimeoutError, UnreachableError

_ONE_MODEL = "TGI serves the model it was launched with (one per process); relaunch it with another --model-id to {op}"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class TGIEngine(OpenAICompatEngine):
    kind = "tgi"
    metrics_kind: ClassVar[str | None] = "tgi"
    UNSUPPORTED: ClassVar[Mapping[Op, str]] = {
        **one_model_per_process(_ONE_MODEL),
        Op.PULL: "TGI downloads the model at launch; it has no pull API",
        Op.DELETE: "TGI has no API to delete model files",
        Op.SHOW: "TGI has no model details beyond /info; see `enginedeck models --json`",
        Op.SLEEP: "TGI has no sleep mode",
        Op.WAKE: "TGI has no sleep mode",
        Op.LORA_LOAD: "TGI loads LoRA adapters only at launch (--lora-adapters)",
        Op.LORA_UNLOAD: "TGI loads LoRA adapters only at launch (--lora-adapters)",
    }

    async def _server_info(self) -> Mapping[str, Any]:
        body = await self._json("GET", "/info", what="read /info")
        if not isinstance(body, Mapping):
            raise self._bad("answered /info with something that is not an object")
        return body

    async def info(self) -> EngineInfo:
        t0 = time.perf_counter()
        try:
            resp = await self._request("GET", "/health", what="check health", ok=(200, 503))
        except (UnreachableError, EngineTimeoutError) as exc:
            return EngineInfo(self.kind, self.base_url, None, Health.DOWN, reason=str(exc))
        latency = (time.perf_counter() - t0) * 1000
        server = await self._server_info()
        version = server.get("version") if isinstance(server.get("version"), str) else None
        extra = {k: server[k] for k in ("model_id", "max_input_tokens", "max_total_tokens",
                                        "max_concurrent_requests") if k in server}
        if resp.status_code == 503:
            said = error_message_from_body(resp.content) or "no reason given"
            return EngineInfo(self.kind, self.base_url, version, Health.DOWN,
                              reason=f"/health answered 503 ({said}): a shard failed its health check",
                              latency_ms=latency, extra=extra)
        return EngineInfo(self.kind, self.base_url, version, Health.OK, latency_ms=latency, extra=extra)

    async def list_models(self) -> list[ModelInfo]:
        server = await self._server_info()
        context = _int(server.get("max_total_tokens"))
        models = []
        for entry in await self._model_entries():
            m = self._model_info(entry)
            details = {**m.details, **{k: server[k] for k in ("model_sha", "model_pipeline_tag", "max_input_tokens")
                                       if k in server}}
            models.append(ModelInfo(name=m.name, context_length=context, status="loaded", details=details))
        return models

