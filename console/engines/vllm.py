"""vLLM: one model per server process, plus sleep mode and runtime LoRA adapters where the server allows them.

What "load" and "unload" mean here (vLLM cannot change its base model without a restart):
- `unload(base)` puts the engine to sleep (`POST /sleep?level=1`), `load(base)` wakes it (`POST /wake_up`).
  Both need the server started with `--enable-sleep-mode` and `VLLM_SERVER_DEV_MODE=1`.
- `load_lora(name, path)` / `unload_lora(name)` add and remove runtime LoRA adapters; they need
  `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True` and `--enable-lora`. `unload(adapter)` also removes an adapter;
  `load(adapter)` cannot, since an adapter needs a path: it says to use `load_lora`.
Which of these a server allows is found by `probe_capabilities()` (once, through `settle_capabilities()`), because
it depends on flags and environment the HTTP API does not list.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from console.engines.base import (
    Capabilities,
    ChatRequest,
    EngineInfo,
    Health,
    LoadedModel,
    ModelInfo,
    Op,
)
from console.engines.openai import OpenAICompatEngine
from console.errors import (
    AuthError,
    BusyError,
    EngineError,
    EngineTimeoutError,
    NotFoundError,
    UnreachableError,
    UnsupportedError,
)

ONE_MODEL = ("vLLM serves one model per process; unload = sleep mode, needs --enable-sleep-mode and "
             "VLLM_SERVER_DEV_MODE=1")
NO_DEV_MODE = "vLLM sleep mode needs VLLM_SERVER_DEV_MODE=1 and --enable-sleep-mode at server start"
NO_SLEEP_FLAG = "this vLLM server runs in dev mode but was started without --enable-sleep-mode"
NO_RUNTIME_LORA = ("runtime LoRA loading is off on this vLLM server: start it with "
                   "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora")
LORA_NEEDS_KEY = "the LoRA routes answered 401: set api_key_env or api_key_file for this engine"
NOT_PROBED = "not checked yet: ask for the engine's info first"
_SLEEP_FLAG_ON = re.compile(r"enable_sleep_mode\W{0,4}(true|True)")


class VLLMEngine(OpenAICompatEngine):
    kind = "vllm"
    metrics_kind = "vllm"
    UNSUPPORTED: ClassVar[Mapping[Op, str]] = {
        Op.LOAD: ONE_MODEL,
        Op.UNLOAD: ONE_MODEL,
        Op.SWAP: "vLLM serves one model per process; to change it, restart the server with another --model",
        Op.PULL: "vLLM loads the model named at start; fetch weights with the Hugging Face CLI",
        Op.DELETE: "vLLM does not manage model files",
        Op.SHOW: "vLLM has no model-details API beyond /v1/models",
        Op.SLEEP: NOT_PROBED,
        Op.WAKE: NOT_PROBED,
        Op.LORA_LOAD: NOT_PROBED,
        Op.LORA_UNLOAD: NOT_PROBED,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._probed = False
        self._dev_mode = False
        self._version: str | None = None

    # -- capabilities -------------------------------------------------------------------------------------

    async def probe_capabilities(self) -> Capabilities:
        """Find out whether sleep mode and runtime LoRA are on. Safe: the probes change nothing."""
        sleep_reason = await self._probe_sleep()
        lora_reason = await self._probe_lora()
        for op in (Op.SLEEP, Op.WAKE):
            self._set_capability(op, sleep_reason)
        for op in (Op.LORA_LOAD, Op.LORA_UNLOAD):
            self._set_capability(op, lora_reason)
        can_load = sleep_reason is None or lora_reason is None
        for op in (Op.LOAD, Op.UNLOAD):
            self._set_capability(op, None if can_load else ONE_MODEL)
        self._probed = True
        return self._caps

    async def _probe_sleep(self) -> str | None:
        try:
            await self._json("GET", "/is_sleeping", what="ask whether it sleeps")
        except NotFoundError:
            self._dev_mode = False
            return NO_DEV_MODE
        self._dev_mode = True
        try:
            resp = await self._request("GET", "/server_info", what="read server info",
                                       params={"config_format": "json"})
        except EngineError:
            return NO_SLEEP_FLAG
        return None if _SLEEP_FLAG_ON.search(resp.text) else NO_SLEEP_FLAG

    async def _probe_lora(self) -> str | None:
        # An empty body is refused (400/422) by a server whose route exists and loads nothing; without
        # VLLM_ALLOW_RUNTIME_LORA_UPDATING the route is not registered at all, so it answers 404.
        try:
            await self._request("POST", "/v1/load_lora_adapter", what="check runtime LoRA", json={},
                                ok=(200, 400, 422))
        except NotFoundError:
            return NO_RUNTIME_LORA
        except AuthError:
            return LORA_NEEDS_KEY
        except (UnreachableError, EngineTimeoutError, BusyError):
            raise
        except EngineError:
            pass  # a 5xx to a body it could not use still shows the route exists
        return None

    # -- health -------------------------------------------------------------------------------------------

    async def info(self) -> EngineInfo:
        """/health (200 empty = ok, 503 = engine dead), /version, and sleep state when dev mode answers.

        A refused connection is DOWN; vLLM also refuses while it loads the model, which the reason says.
        """
        t0 = time.perf_counter()
        try:
            await self._request("GET", "/health", what="check health")
        except UnreachableError as exc:
            return self._info(Health.DOWN, f"{exc} (vLLM also refuses connections while it loads a model)")
        except EngineTimeoutError as exc:
            return self._info(Health.DOWN, str(exc))
        except BusyError:
            return self._info(Health.DOWN, "the engine is dead: GET /health answered 503; restart vLLM")
        latency = (time.perf_counter() - t0) * 1000
        if self._version is None:
            try:
                body = await self._json("GET", "/version", what="read the version")
                self._version = str(body["version"]) if isinstance(body, Mapping) and "version" in body else None
            except EngineError:
                self._version = None
        await self.settle_capabilities()
        health = Health.SLEEPING if self._dev_mode and await self.is_sleeping() else Health.OK
        return self._info(health, "", latency)

    def _info(self, health: Health, reason: str, latency: float | None = None) -> EngineInfo:
        caps = self._caps
        extra = {"dev_mode": self._dev_mode, "sleep_mode": caps.supports(Op.SLEEP),
                 "runtime_lora": caps.supports(Op.LORA_LOAD)} if self._probed else {}
        return EngineInfo(self.kind, self.base_url, self._version, health, reason=reason, latency_ms=latency,
                          extra=extra)

    # -- models -------------------------------------------------------------------------------------------

    async def loaded_models(self) -> list[LoadedModel]:
        """The served model (status "sleeping" while asleep) and every loaded LoRA adapter."""
        models = await self.list_models()
        asleep = self._dev_mode and await self.is_sleeping()
        return [
            LoadedModel(name=m.name, context_length=m.context_length,
                        status="sleeping" if asleep and m.parent is None else "loaded",
                        details={k: v for k, v in m.details.items() if k in ("root", "parent", "owned_by")})
            for m in models
        ]

    async def _find(self, model: str) -> ModelInfo | None:
        return next((m for m in await self.list_models() if m.name == model), None)

    async def load(self, model: str, keep_alive: str | float | None = None) -> None:
        """Wake the base model; an adapter that is already loaded is a no-op; a new one needs `load_lora`."""
        self.capabilities.require(Op.LOAD, self.name)
        found = await self._find(model)
        if found is None:
            raise UnsupportedError(
                f"cannot load {model!r}: a LoRA adapter needs its path; use load_lora(name, path)", engine=self.name)
        if found.parent is None:
            await self.wake()

    async def unload(self, model: str) -> None:
        """Sleep the base model (level 1), or remove a LoRA adapter."""
        self.capabilities.require(Op.UNLOAD, self.name)
        found = await self._find(model)
        if found is None:
            raise NotFoundError(f"serves no model or adapter named {model!r}", engine=self.name,
                                hint="check the name with `enginedeck models`")
        if found.parent is None:
            await self.sleep()
        else:
            await self.unload_lora(model)

    # -- sleep mode ---------------------------------------------------------------------------------------

    async def is_sleeping(self) -> bool:
        body = await self._json("GET", "/is_sleeping", what="ask whether it sleeps")
        return bool(body.get("is_sleeping")) if isinstance(body, Mapping) else False

    async def sleep(self, level: int = 1) -> None:
        """Level 1 moves the weights to CPU memory and drops the KV cache; level 2 drops both."""
        self.capabilities.require(Op.SLEEP, self.name)
        await self._request("POST", "/sleep", what="sleep", params={"level": str(level)}, ok=(200, 204))

    async def wake(self) -> None:
        self.capabilities.require(Op.WAKE, self.name)
        await self._request("POST", "/wake_up", what="wake up", ok=(200, 204))

    # -- runtime LoRA -------------------------------------------------------------------------------------

    async def load_lora(self, name: str, path: str) -> None:
        """Add a LoRA adapter from `path` (a directory on the server's machine) and serve it as `name`."""
        self.capabilities.require(Op.LORA_LOAD, self.name)
        await self._request("POST", "/v1/load_lora_adapter", what=f"load LoRA adapter {name!r}",
                            json={"lora_name": name, "lora_path": path})

    async def unload_lora(self, name: str) -> None:
        self.capabilities.require(Op.LORA_UNLOAD, self.name)
        await self._request("POST", "/v1/unload_lora_adapter", what=f"unload LoRA adapter {name!r}",
                            json={"lora_name": name})

    # -- chat ---------------------------------------------------------------------------------------------

    def _chat_payload(self, request: ChatRequest) -> dict[str, Any]:
        """Ask for usage on every chunk too, so each content event knows how many tokens it carries."""
        payload = super()._chat_payload(request)
        payload["stream_options"] = {"include_usage": True, "continuous_usage_stats": True,
                                     **payload.get("stream_options", {})}
        return payload
