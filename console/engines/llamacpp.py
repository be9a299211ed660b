"""llama.cpp `llama-server`: single-model mode (`-m`) and router mode (`--models-dir` / `--models-preset`).

Router mode is detected from the models list: its entries carry a `status` object (read once, by
`settle_capabilities()`; until then load/unload/swap say the mode is not known yet). There, `load`/`unload` post
to /models/load|unload and wait (bounded) until the status says so; `swap` is the base-class swap, so the old
model is loaded back if the new one fails. GET routes that belong to one model (/props, /slots, /metrics) take
`?model=`; chat is routed by the `model` field of the body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from console.engines.base import (
    Capabilities,
    EngineInfo,
    Health,
    LoadedModel,
    MetricsSnapshot,
    ModelInfo,
    Op,
    SlotState,
)
from console.engines.metrics import combine_snapshots, parse_metrics
from console.engines.openai import OpenAICompatEngine
from console.errors import (
    AuthError,
    BadResponseError,
    BusyError,
    EngineTimeoutError,
    NotFoundError,
    UnreachableError,
    UnsupportedError,
)

SINGLE_MODEL = ("llama-server started with -m serves one model; start it in router mode (--models-dir) to load "
                "and unload")
NOT_PROBED = ("not known yet whether this llama-server runs in router mode (it can load and unload) or with -m "
              "(one model): enginedeck has not read its models list")
NO_METRICS = "llama-server was started without --metrics"
NO_SLOTS = "llama-server was started with --no-slots, so /slots does not answer"
LOAD_TIMEOUT_S = 300.0
POLL_S = 0.1
RESIDENT = ("loaded", "loading", "sleeping")
_CTX_FLAGS = ("-c", "--ctx-size")


@dataclass(frozen=True)
class Slot:
    """One llama-server slot (a parallel sequence) from /slots."""

    id: int
    n_ctx: int | None
    processing: bool
    details: Mapping[str, Any] = field(default_factory=dict)


def _ctx_from_args(args: Any) -> int | None:
    """The context size a router child was (or will be) started with, read from its argv."""
    if not isinstance(args, Sequence) or isinstance(args, str):
        return None
    for flag, value in zip(args, list(args)[1:], strict=False):
        if flag in _CTX_FLAGS and isinstance(value, str) and value.isdigit():
            return int(value)
    return None


def _parameter_size(n_params: Any) -> str | None:
    if not isinstance(n_params, int) or n_params <= 0:
        return None
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n_params >= scale:
            return f"{n_params / scale:.3g}{unit}"
    return str(n_params)


class LlamaCppEngine(OpenAICompatEngine):
    kind = "llamacpp"
    metrics_kind = "llamacpp"
    # load/unload/swap depend on the mode, learnt by `probe_capabilities()`; until then they say so.
    UNSUPPORTED: ClassVar[Mapping[Op, str]] = {
        Op.LOAD: NOT_PROBED,
        Op.UNLOAD: NOT_PROBED,
        Op.SWAP: NOT_PROBED,
        Op.PULL: "llama-server has no pull enginedeck can use offline; copy GGUF files into the router's models dir",
        Op.DELETE: "llama-server does not delete model files; remove the GGUF from its models dir",
        Op.SHOW: "llama-server has no model-details API beyond /v1/models and /props",
        Op.SLEEP: "llama-server sleeps by itself after --sleep-idle-seconds; it has no sleep call",
        Op.WAKE: "llama-server wakes by itself on the next request",
        Op.LORA_LOAD: "llama-server takes LoRA adapters at start (--lora); it has no runtime loading",
        Op.LORA_UNLOAD: "llama-server takes LoRA adapters at start (--lora); it has no runtime unloading",
    }

    def __init__(self, *args: Any, load_timeout_s: float = LOAD_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.load_timeout_s = load_timeout_s
        self.router: bool | None = None  # None until probed

    # -- capabilities -------------------------------------------------------------------------------------

    async def probe_capabilities(self) -> Capabilities:
        """Router mode shows in the models list (entries with `status`); /models is public even with a key."""
        entries = await self._model_entries()
        self.router = any(isinstance(e.get("status"), Mapping) for e in entries)
        for op in (Op.LOAD, Op.UNLOAD, Op.SWAP):
            self._set_capability(op, None if self.router else SINGLE_MODEL)
        return self._caps

    async def _is_router(self) -> bool:
        await self.settle_capabilities()
        return bool(self.router)

    # -- health -------------------------------------------------------------------------------------------

    async def info(self) -> EngineInfo:
        """/health (503 while loading), then /props for the version, slots and context."""
        t0 = time.perf_counter()
        try:
            await self._request("GET", "/health", what="check health")
        except (UnreachableError, EngineTimeoutError) as exc:
            return EngineInfo(self.kind, self.base_url, None, Health.DOWN, reason=str(exc))
        except BusyError as exc:
            return EngineInfo(self.kind, self.base_url, None, Health.LOADING, reason=str(exc))
        latency = (time.perf_counter() - t0) * 1000
        await self.settle_capabilities()
        extra: dict[str, Any] = {"router": self.router}
        version = None
        health = Health.OK
        try:
            props = await self.props()
        except AuthError as exc:
            extra["props"] = str(exc)  # /health and /models are public, /props is not: say why it is missing
        else:
            version = props.get("build_info") if isinstance(props.get("build_info"), str) else None
            settings = props.get("default_generation_settings")
            n_ctx = settings.get("n_ctx") if isinstance(settings, Mapping) else None
            extra.update({k: props[k] for k in ("total_slots", "model_path", "model_alias") if k in props})
            if isinstance(n_ctx, int) and n_ctx > 0:
                extra["n_ctx"] = n_ctx
            if props.get("endpoint_metrics") is False:
                self._set_capability(Op.METRICS, NO_METRICS)
            if props.get("is_sleeping") is True:
                health = Health.SLEEPING
        return EngineInfo(self.kind, self.base_url, version, health, latency_ms=latency, extra=extra)

    async def props(self, model: str | None = None) -> Mapping[str, Any]:
        """GET /props (router: of the router itself, or of `model`)."""
        body = await self._json("GET", "/props", what="read /props", params={"model": model} if model else None)
        if not isinstance(body, Mapping):
            raise self._bad("answered /props with something that is not an object")
        return body

    async def slots(self, model: str | None = None) -> list[Slot]:
        """GET /slots. In router mode `model` is required (the slots belong to that model's child server)."""
        body = await self._json("GET", "/slots", what="read /slots", params={"model": model} if model else None)
        if not isinstance(body, list):
            raise self._bad("answered /slots with something that is not a list")
        return [
            Slot(id=int(s.get("id", i)), n_ctx=s.get("n_ctx") if isinstance(s.get("n_ctx"), int) else None,
                 processing=bool(s.get("is_processing")), details=s)
            for i, s in enumerate(body) if isinstance(s, Mapping)
        ]

    async def slot_states(self) -> list[SlotState] | None:
        """/slots as the engine-neutral SlotState; router mode: the slots of every loaded model. A 501 (the server
        runs with --no-slots) raises UnsupportedError saying so."""
        names: list[str | None] = [None]
        if await self._is_router():
            names = [m.name for m in await self.loaded_models() if m.status == "loaded"]
        states: list[SlotState] = []
        for name in names:
            try:
                slots = await self.slots(name)
            except BadResponseError as exc:
                if exc.status == 501:
                    raise UnsupportedError(f"cannot read slots: {NO_SLOTS}", engine=self.name) from None
                raise
            states.extend(SlotState(s.id, s.n_ctx, s.processing, name) for s in slots)
        return states

    # -- models -------------------------------------------------------------------------------------------

    def _model_info(self, entry: Mapping[str, Any]) -> ModelInfo:
        meta = m if isinstance(m := entry.get("meta"), Mapping) else {}
        status = s if isinstance(s := entry.get("status"), Mapping) else {}
        n_ctx = meta.get("n_ctx") if isinstance(meta.get("n_ctx"), int) else _ctx_from_args(status.get("args"))
        state = status.get("value") if isinstance(status.get("value"), str) else None
        if state == "unloaded" and status.get("failed"):
            state = "failed"
        return ModelInfo(
            name=entry["id"],
            size=meta.get("size") if isinstance(meta.get("size"), int) else None,
            quantization=meta.get("ftype") if isinstance(meta.get("ftype"), str) else None,
            parameter_size=_parameter_size(meta.get("n_params")),
            context_length=n_ctx,
            status=state,
            details={**{k: v for k, v in entry.items() if k in ("owned_by", "meta", "aliases", "path", "source")},
                     # a router child's command line: where its model file is, its context and slots (docs/fit.md)
                     **({"args": status["args"]} if isinstance(status.get("args"), list) else {})},
        )

    async def loaded_models(self) -> list[LoadedModel]:
        """Router: the models whose status is loaded, loading or sleeping. Single-model: the one it serves."""
        models = await self.list_models()
        if not await self._is_router():
            return [LoadedModel(name=m.name, size=m.size, context_length=m.context_length, status="loaded")
                    for m in models]
        return [LoadedModel(name=m.name, context_length=m.context_length, status=m.status)
                for m in models if m.status in RESIDENT]

    async def _status(self, model: str) -> str | None:
        """The router status of `model`; None when the router does not list it."""
        for m in await self.list_models():
            if m.name == model:
                return m.status
        return None

    async def _require_router(self, op: Op) -> None:
        if not await self._is_router():
            raise self._unsupported(op)

    async def load(self, model: str, keep_alive: str | float | None = None) -> None:
        """Router: start `model` and wait until it is loaded (bounded by `load_timeout_s`)."""
        await self._require_router(Op.LOAD)
        status = await self._status(model)
        if status is None:
            raise NotFoundError(f"the router has no model named {model!r}", engine=self.name,
                                hint="check the name with `enginedeck models`")
        if status == "loaded":
            return
        if status != "loading":
            await self._request("POST", "/models/load", what=f"load {model}", model=model,
                                json={"model": model})
        await self._wait_for(model, "loaded")

    async def unload(self, model: str) -> None:
        """Router: stop `model` and wait until it is unloaded. Unloading an unloaded model does nothing."""
        await self._require_router(Op.UNLOAD)
        status = await self._status(model)
        if status is None:
            raise NotFoundError(f"the router has no model named {model!r}", engine=self.name,
                                hint="check the name with `enginedeck models`")
        if status in ("unloaded", "failed"):
            return
        await self._request("POST", "/models/unload", what=f"unload {model}", model=model,
                            json={"model": model})
        await self._wait_for(model, "unloaded")

    async def _wait_for(self, model: str, wanted: str) -> None:
        deadline = time.monotonic() + self.load_timeout_s
        while True:
            entry = next((e for e in await self._model_entries() if e["id"] == model), None)
            info = self._model_info(entry) if entry is not None else None
            status = info.status if info else None
            if status == wanted:
                return
            if status == "failed" and wanted == "loaded":
                code = entry.get("status", {}).get("exit_code") if entry else None
                raise BadResponseError(
                    f"could not load {model!r}: its server exited" + (f" with code {code}" if code is not None
                                                                      else ""),
                    engine=self.name, hint="read the llama-server log for the reason")
            if status is None:
                raise NotFoundError(f"the router no longer lists {model!r}", engine=self.name)
            if time.monotonic() > deadline:
                raise EngineTimeoutError(
                    f"{model!r} is still {status} after {self.load_timeout_s:.0f} s, not {wanted}", engine=self.name)
            await asyncio.sleep(POLL_S)

    # -- metrics ------------------------------------------------------------------------------------------

    async def metrics(self) -> MetricsSnapshot:
        """/metrics; in router mode one scrape per loaded model, summed (raw samples labelled by model).

        A 501 means the server runs without --metrics: the capability turns off and UnsupportedError says why.
        """
        self.capabilities.require(Op.METRICS, self.name)
        if not await self._is_router():
            return await self._scrape(None)
        names = [m.name for m in await self.loaded_models() if m.status == "loaded"]
        return combine_snapshots([await self._scrape(n) for n in names])

    async def _scrape(self, model: str | None) -> MetricsSnapshot:
        try:
            resp = await self._request("GET", self.metrics_path, what="read /metrics",
                                       params={"model": model} if model else None)
        except BadResponseError as exc:
            if exc.status == 501:
                self._set_capability(Op.METRICS, NO_METRICS)
                raise UnsupportedError(f"cannot read metrics: {NO_METRICS}", engine=self.name) from None
            raise
        labels = {"model": model} if model else None
        return parse_metrics(resp.text, self.metrics_kind or self.kind, engine=self.name, labels=labels)

