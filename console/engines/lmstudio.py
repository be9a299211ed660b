"""LM Studio's server (`lms server start`): OpenAI-compatible chat plus its own REST API for model state.

Facts this adapter relies on (reference/engines-api.md §5):
- REST v1 (LM Studio 0.4+): `GET /api/v1/models` → `{"models": [{key, loaded_instances: [{id, config}], ...}]}`;
  `POST /api/v1/models/load {"model"}` → `{"instance_id", "load_time_seconds", "status": "loaded"}`;
  `POST /api/v1/models/unload {"instance_id"}`.
- REST v0 (0.3.6+, legacy): `GET /api/v0/models` → `data[]` with `state` loaded / not-loaded. No load API: an
  older server loads a model on its first request (JIT), so load/unload/swap are unsupported there.
- `/v1/models` carries no context length or state, so neither is read from it.
- Auth is optional (off by default); the 401 body is not documented, any 401 is an AuthError.
Load and unload were contract-tested only (no LM Studio binary runs in CI).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

from console.engines.base import Capabilities, EngineInfo, Health, LoadedModel, ModelInfo, Op
from console.engines.openai import OpenAICompatEngine
from console.errors import BusyError, EngineTimeoutError, NotFoundError, UnreachableError

_NO_REST_V1 = ("this LM Studio has no REST v1 API (added in 0.4), so enginedeck cannot {op} models; it loads a "
               "model on its first request (JIT). Upgrade LM Studio or use `lms load` / `lms unload`")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class LMStudioEngine(OpenAICompatEngine):
    kind = "lmstudio"
    metrics_kind: ClassVar[str | None] = None
    UNSUPPORTED: ClassVar[Mapping[Op, str]] = {
        Op.PULL: "download models in LM Studio's Discover tab or with `lms get`",
        Op.DELETE: "delete models in LM Studio's My Models tab (enginedeck does not remove model files)",
        Op.SHOW: "LM Studio's details are in `enginedeck models --json` (from /api/v1/models)",
        Op.METRICS: "LM Studio has no /metrics endpoint",
        Op.SLEEP: "LM Studio has no sleep mode; it evicts idle JIT-loaded models after their TTL",
        Op.WAKE: "LM Studio has no sleep mode",
        Op.LORA_LOAD: "LM Studio has no LoRA adapter API",
        Op.LORA_UNLOAD: "LM Studio has no LoRA adapter API",
    }

    _api: str | None = None  # "v1" or "v0", learnt from the first models read

    # -- REST model list ----------------------------------------------------------------------------------

    async def _rest_models(self) -> list[Mapping[str, Any]]:
        """The REST model entries: v1 when the server has it, else v0. Sets the API level and capabilities."""
        if self._api != "v0":
            try:
                body = await self._json("GET", "/api/v1/models", what="list models (REST v1)")
            except NotFoundError:
                body = None
            if isinstance(body, Mapping) and isinstance(body.get("models"), list):
                self._set_api("v1")
                return [e for e in body["models"] if isinstance(e, Mapping) and _str(e.get("key"))]
            if body is not None and not (isinstance(body, Mapping) and "error" in body):
                raise self._bad("answered /api/v1/models without a `models` list")
        body = await self._json("GET", "/api/v0/models", what="list models (REST v0)")
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, list):
            raise self._bad("answered /api/v0/models without a `data` list")
        self._set_api("v0")
        return [e for e in data if isinstance(e, Mapping) and _str(e.get("id"))]

    def _set_api(self, api: str) -> None:
        self._api = api
        for op, verb in ((Op.LOAD, "load"), (Op.UNLOAD, "unload"), (Op.SWAP, "swap")):
            self._set_capability(op, None if api == "v1" else _NO_REST_V1.format(op=verb))

    async def probe_capabilities(self) -> Capabilities:
        await self._rest_models()
        return self.capabilities

    # -- health -------------------------------------------------------------------------------------------

    async def info(self) -> EngineInfo:
        t0 = time.perf_counter()
        try:
            await self._rest_models()
        except (UnreachableError, EngineTimeoutError) as exc:
            return EngineInfo(self.kind, self.base_url, None, Health.DOWN, reason=str(exc))
        except BusyError as exc:
            return EngineInfo(self.kind, self.base_url, None, Health.LOADING, reason=str(exc))
        latency = (time.perf_counter() - t0) * 1000
        return EngineInfo(self.kind, self.base_url, None, Health.OK, latency_ms=latency,
                          extra={"rest_api": self._api})

    # -- models -------------------------------------------------------------------------------------------

    async def list_models(self) -> list[ModelInfo]:
        entries = await self._rest_models()
        return [self._v1_model(e) if self._api == "v1" else self._v0_model(e) for e in entries]

    @staticmethod
    def _v1_model(e: Mapping[str, Any]) -> ModelInfo:
        quant = e.get("quantization")
        instances = [i for i in e.get("loaded_instances") or () if isinstance(i, Mapping)]
        return ModelInfo(
            name=e["key"],
            size=_int(e.get("size_bytes")),
            family=_str(e.get("architecture")),
            quantization=_str(quant.get("name")) if isinstance(quant, Mapping) else _str(quant),
            parameter_size=_str(e.get("params_string")),
            context_length=_int(e.get("max_context_length")),
            status="loaded" if instances else "not-loaded",
            details={k: e[k] for k in ("display_name", "publisher", "type", "format", "capabilities",
                                       "selected_variant") if k in e}
            | {"instances": [i.get("id") for i in instances]},
        )

    @staticmethod
    def _v0_model(e: Mapping[str, Any]) -> ModelInfo:
        return ModelInfo(
            name=e["id"],
            family=_str(e.get("arch")),
            quantization=_str(e.get("quantization")),
            context_length=_int(e.get("max_context_length")),
            status=_str(e.get("state")),
            details={k: e[k] for k in ("type", "publisher", "compatibility_type") if k in e},
        )

    async def loaded_models(self) -> list[LoadedModel]:
        entries = await self._rest_models()
        if self._api != "v1":
            return [LoadedModel(name=m.name, status="loaded", details=dict(m.details))
                    for m in map(self._v0_model, entries) if m.status == "loaded"]
        loaded = []
        for e in entries:
            for inst in e.get("loaded_instances") or ():
                if not isinstance(inst, Mapping):
                    continue
                config = c if isinstance(c := inst.get("config"), Mapping) else {}
                loaded.append(LoadedModel(
                    name=e["key"], size=_int(e.get("size_bytes")), context_length=_int(config.get("context_length")),
                    status="loaded", details={"instance_id": inst.get("id"), "config": dict(config)},
                ))
        return loaded

    # -- load / unload ------------------------------------------------------------------------------------

    async def load(self, model: str, keep_alive: str | float | None = None) -> None:
        """POST /api/v1/models/load. `keep_alive` is ignored: LM Studio's load API has no TTL, a model loaded
        this way stays until it is unloaded."""
        await self.probe_capabilities()
        self.capabilities.require(Op.LOAD, self.name)
        body = await self._json("POST", "/api/v1/models/load", what=f"load {model}", model=model,
                                json={"model": model})
        if not isinstance(body, Mapping) or body.get("status") not in (None, "loaded"):
            raise self._bad(f"answered the load of {model} with {str(body)[:120]!r}")

    async def unload(self, model: str) -> None:
        """Unload every loaded instance of `model` (a model key or an instance id)."""
        await self.probe_capabilities()
        self.capabilities.require(Op.UNLOAD, self.name)
        instances = [str(lm.details["instance_id"]) for lm in await self.loaded_models()
                     if model in (lm.name, lm.details.get("instance_id"))]
        if not instances:
            raise NotFoundError(f"{model} is not loaded", engine=self.name,
                                hint="see what is loaded with `enginedeck ps`")
        for instance_id in instances:
            await self._json("POST", "/api/v1/models/unload", what=f"unload {instance_id}",
                             json={"instance_id": instance_id})
