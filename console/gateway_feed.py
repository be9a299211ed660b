"""The configured gateways' live state, read for the rooms that cannot read it themselves: the exporter's and the
alert rules' traffic (a `console.watch.collect.TrafficSource`) and the pressure of the engines the gateways front
(`running`/`waiting` of an Ollama engine, which reports neither).

Why a room of its own, on the services line: console/watch and console/gateway sit on one line of the layers
contract and never import each other, and the dashboard (ui) and the commands both need the figures, while ui
and commands do not import each other. So the adapter sits above both, below both users (docs/architecture.md).

Each gateway is read once per call through its 0600 live socket (console/gateway/live.py), all concurrently,
each within READ_S: a gateway that is not running (no socket, or a socket left by a killed one) is skipped, and
a slow one costs its own rows, never the caller's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.engines.pressure import InFlight
from console.gateway.live import SOCKET, ask
from console.logs.sanitize import one_line

if TYPE_CHECKING:
    from console.config import Config, EngineConfig, GatewayConfig
    from console.watch.collect import Traffic

READ_S = 1.0
MODEL_SHOWN = 200  # characters of a client-given model name


@dataclass(frozen=True)
class GatewayState:
    name: str
    engine: str  # the name of the engine it fronts (a configured engine's, else the upstream's host:port)
    snapshot: dict[str, Any]


def engine_of(config: Config, gateway: GatewayConfig) -> str:
    """The engine a gateway fronts, by the name the rest of enginedeck gives it."""
    if (engine := config.engine(gateway.upstream)) is not None:
        return engine.name
    url = gateway.upstream.rstrip("/")
    for engine in config.engines:
        if engine.url.rstrip("/") == url:
            return engine.name
    return url.split("://", 1)[-1]  # as `enginedeck gateway` names an engine given by URL


def upstream_config(config: Config, url: str) -> EngineConfig:
    """The engine config behind a gateway's upstream URL (its kind, key and TLS settings when it is configured),
    for reading the engine itself without adding it to any registry."""
    from console.config import EngineConfig

    for engine in config.engines:
        if engine.url.rstrip("/") == url.rstrip("/"):
            return engine
    return EngineConfig(name=url.rstrip("/").split("://", 1)[-1], url=url.rstrip("/"), timeouts=config.timeouts,
                        limits=config.limits)


def socket_of(config: Config, gateway: GatewayConfig) -> Path:
    return (gateway.log_dir or config.data_dir / "gateway" / gateway.name) / SOCKET


async def read_gateways(config: Config, *, engine: str | None = None, read_s: float = READ_S) -> list[GatewayState]:
    """One snapshot of each configured gateway (those in front of `engine` when given) that answers within
    read_s."""

    async def one(gateway: GatewayConfig) -> GatewayState | None:
        path = socket_of(config, gateway)
        if not path.is_socket():
            return None
        with contextlib.suppress(OSError, ValueError, TimeoutError):
            async with asyncio.timeout(read_s), contextlib.aclosing(ask(path)) as answers:
                async for snap in answers:
                    return GatewayState(gateway.name, engine_of(config, gateway), snap)
        return None

    gateways = [g for g in config.gateways if engine is None or engine_of(config, g) == engine]
    states = await asyncio.gather(*(one(g) for g in gateways))
    return [s for s in states if s is not None]


def traffic_of(states: Sequence[GatewayState]) -> list[Traffic]:
    """The gateways' counters, a row per engine and model (console/watch/collect.py's `Traffic`)."""
    from console.watch.collect import Traffic

    out = []
    for state in states:
        for row in state.snapshot.get("totals", []):
            if not isinstance(row, dict):
                continue
            p90 = row.get("ttft_p90_ms")
            out.append(Traffic(engine=state.engine, model=one_line(str(row.get("model") or "—"), MODEL_SHOWN),
                               requests=_count(row.get("requests")), errors=_count(row.get("errors")),
                               tokens_in=_count(row.get("tokens_in")), tokens_out=_count(row.get("tokens_out")),
                               ttft_p90_s=p90 / 1000 if isinstance(p90, int | float) else None))
    return out


def in_flight_of(states: Sequence[GatewayState]) -> dict[str, InFlight]:
    """Per engine, the requests its gateways have in flight."""
    counts: dict[str, tuple[int, int, list[str]]] = {}
    for state in states:
        flights = [f for f in state.snapshot.get("in_flight", []) if isinstance(f, dict)]
        waiting = sum(f.get("phase") == "waiting" for f in flights)
        running, queued, names = counts.get(state.engine, (0, 0, []))
        counts[state.engine] = (running + len(flights) - waiting, queued + waiting, [*names, state.name])
    return {engine: InFlight(running, waiting, "gateway " + ", ".join(names))
            for engine, (running, waiting, names) in counts.items()}


class GatewayTraffic:
    """The exporter's and `watch`'s `TrafficSource`: the configured gateways' counters, read on each collection."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.in_flight: Mapping[str, InFlight] = {}  # from the last read, for the pressure of the same collection

    async def traffic(self) -> list[Traffic]:
        states = await read_gateways(self.config)
        self.in_flight = in_flight_of(states)
        return traffic_of(states)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


__all__ = ["GatewayState", "GatewayTraffic", "InFlight", "engine_of", "in_flight_of", "read_gateways",
           "socket_of", "traffic_of", "upstream_config"]
