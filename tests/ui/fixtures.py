"""What the UI tests build apps from: a Context with a chosen registry, fixed engines, fixed telemetry.

Services are passed into the app (never monkeypatched), the same way `enginedeck` builds them:
- `TestContext` is a real `Context` whose `registry()` may be a `StubRegistry`, and whose `actions()` has no
  audit trail (the audit room is tested on its own);
- `StubEngine` is an `Engine` with fixed figures, or one that never answers;
- `FixedGpu` / `FixedHost` return the same snapshot every time, so screens and snapshots are deterministic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from console.actions import Actions
from console.config import Config, EngineConfig, UIConfig
from console.engine_lock import LOCKS_DIR
from console.engines.base import (
    Capabilities,
    ChatEvent,
    ChatRequest,
    Engine,
    EngineInfo,
    Health,
    LoadedModel,
    MetricsSnapshot,
    ModelInfo,
    Op,
)
from console.engines.registry import EngineEntry
from console.services import Context
from console.telemetry.gpu import GpuProcess, GpuSample, GpuSnapshot
from console.telemetry.host import DiskUsage, HostSnapshot
from console.telemetry.processes import Endpoint, EngineProcess
from console.ui.app import EngineDeckApp

GIB = 2**30
FOREVER = datetime(2300, 1, 1, tzinfo=UTC)  # expires_in() shows "forever": no clock in the picture
QUIET = UIConfig(theme="dark", poll_interval_s=3600.0, telemetry_interval_s=3600.0)  # one poll, no ticks


class StubEngine(Engine):
    """An engine with fixed answers. `hang=True`: every call waits forever (a dead engine that never answers)."""

    def __init__(self, name: str, kind: str = "ollama", *, version: str = "0.12.6", hang: bool = False,
                 models: Sequence[ModelInfo] = (), loaded: Sequence[LoadedModel] = (),
                 metrics: MetricsSnapshot | None = None, unsupported: dict[Op, str] | None = None) -> None:
        super().__init__(name, f"http://127.0.0.1:{11434 if kind == 'ollama' else 8080}")
        self.kind = kind
        self.version, self.hang = version, hang
        self.models, self.loaded = list(models), list(loaded)
        self._metrics = metrics
        self._caps = Capabilities(dict(unsupported or {}) | ({} if metrics else {Op.METRICS: "no /metrics"}))
        self.calls: list[str] = []

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    async def _maybe_hang(self) -> None:
        if self.hang:
            await asyncio.Event().wait()

    async def info(self) -> EngineInfo:
        await self._maybe_hang()
        return EngineInfo(self.kind, self.base_url, self.version, Health.OK, latency_ms=3.0)

    async def list_models(self) -> list[ModelInfo]:
        await self._maybe_hang()
        return list(self.models)

    async def loaded_models(self) -> list[LoadedModel]:
        await self._maybe_hang()
        return list(self.loaded)

    async def metrics(self) -> MetricsSnapshot:
        if self._metrics is None:
            raise self._unsupported(Op.METRICS)
        return self._metrics

    def chat(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        raise self._unsupported(Op.CHAT)


@dataclass
class StubRegistry:
    """The registry's surface the UI uses: `entries`, `refresh()`, `resolve()`, `aclose()`."""

    engines: list[Engine] = field(default_factory=list)
    refreshes: int = 0

    @property
    def entries(self) -> list[EngineEntry]:
        return [EngineEntry(e.name, e.base_url, e.kind, e, None, "config") for e in self.engines]

    async def refresh(self) -> list[EngineEntry]:
        self.refreshes += 1
        return self.entries

    async def resolve(self, ref: str) -> Engine:
        return next(e for e in self.engines if e.name == ref)

    async def aclose(self) -> None:
        await asyncio.gather(*(e.aclose() for e in self.engines))


class TestContext(Context):
    __test__ = False  # not a pytest class

    def __init__(self, config: Config, registry: StubRegistry | None = None) -> None:
        super().__init__(config)
        self._stub_registry = registry

    def registry(self):
        return self._stub_registry if self._stub_registry is not None else super().registry()

    async def actions(self) -> Actions:
        return Actions(store=await self.store(), audit=None, read_only=self.config.read_only,
                       lock_dir=self.config.data_dir / LOCKS_DIR)


def make_config(tmp_path: Path, *, engines: Sequence[EngineConfig] = (), ui: UIConfig = QUIET,
                read_only: bool = False) -> Config:
    return Config(engines=tuple(engines), ui=ui, discover=False, read_only=read_only, data_dir=tmp_path / "data")


class FixedGpu:
    def __init__(self, snapshot: GpuSnapshot) -> None:
        self.snapshot = snapshot

    def sample(self) -> GpuSnapshot:
        return self.snapshot

    # The energy meter's reads (console/telemetry/energy.py): the snapshot's figures, which never change.
    def energy_mj(self) -> dict[int, int | None]:
        return {g.index: g.energy_mj for g in self.snapshot.gpus}

    def power_w(self) -> dict[int, float | None]:
        return {g.index: g.power_w for g in self.snapshot.gpus}

    def close(self) -> None:
        pass


class FixedHost:
    slow_due = False  # like HostMonitor between its slow reads: the dashboard samples inline

    def __init__(self, snapshot: HostSnapshot) -> None:
        self.snapshot = snapshot

    def sample(self) -> HostSnapshot:
        return self.snapshot


NO_GPU = GpuSnapshot(available=False, reason="no NVIDIA GPU / NVML not available (Driver Not Loaded)", taken_at=0)
TWO_GPUS = GpuSnapshot(available=True, driver="580.159.04", nvml_version="13.580.159.04", taken_at=0, gpus=(
    GpuSample(0, "NVIDIA H100 80GB HBM3", "GPU-0", 63.0, 20.0, 41 * GIB, 80 * GIB, 54.0, 312.0, 700.0,
              (GpuProcess(4242, 38 * GIB, "compute"),)),
    GpuSample(1, "NVIDIA H100 80GB HBM3", "GPU-1", 0.0, 0.0, 1 * GIB, 80 * GIB, 31.0, 70.0, 700.0),
))
HOST = HostSnapshot(cpu_pct=12.0, cpu_count=16, load_avg=(0.52, 0.4, 0.3), mem_total=64 * GIB, mem_used=21 * GIB,
                    mem_available=43 * GIB, swap_total=8 * GIB, swap_used=0,
                    disks=(DiskUsage("/srv/models", 2000 * GIB, 1200 * GIB, 800 * GIB),),
                    net_rx_bps=1024.0, net_tx_bps=512.0, taken_at=0)
VLLM_PROCESS = EngineProcess(pid=4242, name="python3", kind="vllm", engine="vllm-a", cmdline="vllm serve",
                             rss=3 * GIB, uptime_s=7200, listening=(Endpoint("127.0.0.1", 8000),), egress=())


def fixed_processes(processes: Sequence[EngineProcess] = ()) -> Callable[..., list[EngineProcess]]:
    return lambda _ports: list(processes)


def demo_engines() -> list[Engine]:
    """Two engines with fixed figures: an Ollama with two models loaded, a vLLM with /metrics."""
    ollama = StubEngine("ollama-a", "ollama", models=[
        ModelInfo("llama3.2:1b", size=1_321_098_329, quantization="Q8_0", context_length=131072),
        ModelInfo("qwen3:4b", size=2_497_293_931, quantization="Q4_K_M", context_length=40960),
    ], loaded=[
        LoadedModel("llama3.2:1b", size=2 * GIB, size_vram=2 * GIB, context_length=4096, expires_at=FOREVER),
        LoadedModel("gemma3:4b", size=5 * GIB, size_vram=3 * GIB, context_length=8192, expires_at=FOREVER),
    ])
    vllm = StubEngine("vllm-a", "vllm", version="0.11.0",
                      models=[ModelInfo("Qwen/Qwen3-8B", size=None, context_length=32768)],
                      loaded=[LoadedModel("Qwen/Qwen3-8B", context_length=32768, status="loaded")],
                      metrics=MetricsSnapshot(taken_at=0, running=3, waiting=1, kv_cache_usage=0.42),
                      unsupported={Op.PULL: "vLLM serves the model it was started with; it cannot download"})
    return [ollama, vllm]


def demo_app(tmp_path: Path, *, gpu: GpuSnapshot | FixedGpu = TWO_GPUS, theme: str = "dark",
             engines: list[Engine] | None = None, read_only: bool = False, ascii_mode: bool = False,
             ui: UIConfig = QUIET, processes: Sequence[EngineProcess] = (VLLM_PROCESS,),
             configured: Sequence[EngineConfig] = (), **settings: object) -> EngineDeckApp:
    """The app over stub engines (`engines`, default the two demo ones) with fixed telemetry. `gpu` is a snapshot
    or a FixedGpu the test changes later; `configured` are the config's [[engines]]; `settings` replace other
    parts of the config (fleet=..., alerts=..., gateways=...)."""
    registry = StubRegistry(demo_engines() if engines is None else engines)
    config = replace(make_config(tmp_path, engines=configured, ui=ui, read_only=read_only), **settings)
    return EngineDeckApp(TestContext(config, registry), theme=theme, ascii_mode=ascii_mode,
                         gpu_monitor=gpu if isinstance(gpu, FixedGpu) else FixedGpu(gpu),
                         host_monitor=FixedHost(HOST), scan_processes=fixed_processes(processes))


async def settle(pilot, *, until: Callable[[], bool] | None = None, timeout_s: float = 10.0) -> None:
    """Without `until`: let every worker finish, then let the screen repaint. With `until`: give the app turns
    until the condition holds (a worker may be waiting on a dialog, or meant never to finish).

    `timeout_s` only bounds a broken test; nothing here sleeps a fixed time to let things happen.
    """
    if until is None:
        # Long-lived loops (the dashboard's pollers) never complete; wait for every other worker, then for the
        # dashboard to have nothing in flight.
        finite = [w for w in pilot.app.workers if not w.name.endswith("-loop")]
        if finite:  # an empty list would mean "all workers" to wait_for_complete
            await pilot.app.workers.wait_for_complete(finite)
        await pilot.pause()
        if not getattr(pilot.app.screen, "quiet", True):
            await settle(pilot, until=lambda: getattr(pilot.app.screen, "quiet", True), timeout_s=timeout_s)
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not until():
        if loop.time() > deadline:
            raise AssertionError("condition not met within the time box")
        await pilot.pause(0.02)
    await pilot.pause()


def screen_text(app: EngineDeckApp) -> str:
    """What the terminal shows now, as plain text (the same render the SVG snapshots are made from)."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True,
                      color_system=None, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


LONG_OLLAMA = "gpu-node-17-prod-eu-west-1-ollama"
LONG_VLLM = "gpu-node-17-prod-eu-west-1-vllm-a100"
LONG_GGUF = "hf.co/bartowski/Meta-Llama-3.1-70B-Instruct-GGUF:Q4_K_M"
LONG_VLLM_MODEL = "meta-llama/Llama-3.3-70B-Instruct-FP8-dynamic"


def long_name_engines() -> list[Engine]:
    """Engine and model names as fleets name them: host, region and kind in the engine name, the repository,
    size and quantisation in the model name. At 80 columns they must not push the verdict columns off screen."""
    ollama = StubEngine(LONG_OLLAMA, "ollama", models=[
        ModelInfo(LONG_GGUF, size=42_520_412_160, quantization="Q4_K_M", context_length=131072),
        ModelInfo("llama3.2:1b", size=1_321_098_329, quantization="Q8_0", context_length=131072),
    ], loaded=[
        LoadedModel(LONG_GGUF, size=44 * GIB, size_vram=44 * GIB, context_length=8192, expires_at=FOREVER),
    ])
    vllm = StubEngine(LONG_VLLM, "vllm", version="0.11.1rc2.dev114+g8c1e9ae3",
                      models=[ModelInfo(LONG_VLLM_MODEL, size=None, context_length=32768)],
                      loaded=[LoadedModel(LONG_VLLM_MODEL, context_length=32768, status="loaded")],
                      metrics=MetricsSnapshot(taken_at=0, running=12, waiting=3, kv_cache_usage=0.87),
                      unsupported={Op.PULL: "vLLM serves the model it was started with; it cannot download"})
    return [ollama, vllm]
