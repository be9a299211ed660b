"""A Prometheus server's HTTP API, read like every engine: through the bounded HTTP layer (http.py,
transport.py, wire.py), so an answer is held to the config's deadlines and size limits (`other`: 8 MiB by
default) and a series count (`[fleet] max_series`).

Here rather than in console/watch/ because only console.engines talks HTTP (a contract): this module knows the
API's shape (`/api/v1/query`, instant vectors), nothing about what the series mean; console/watch/fleet.py does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from console.config import EngineConfig, Timeouts, WireLimits
from console.engines.http import build_client, request_json
from console.errors import BadResponseError

if TYPE_CHECKING:
    import httpx

NAME = "prometheus"


@dataclass(frozen=True)
class Series:
    """One series of an instant vector: its labels (untrusted text) and its value."""

    labels: dict[str, str]
    value: float


class PrometheusClient:
    def __init__(self, url: str, *, timeouts: Timeouts | None = None, limits: WireLimits | None = None,
                 max_series: int = 20_000) -> None:
        self.url = url.rstrip("/")
        self.max_series = max_series
        cfg = EngineConfig(name=NAME, url=self.url, kind="openai", timeouts=timeouts or Timeouts(),
                           limits=limits or WireLimits())
        self._client: httpx.AsyncClient = build_client(cfg, max_connections=16)

    async def query(self, promql: str) -> tuple[list[Series], bool]:
        """An instant query: its series (at most `max_series`) and whether some were left out past that bound.
        A failed request or an answer that is not the API's raises a typed `EngineError`."""
        body = await request_json(self._client, "GET", "/api/v1/query", engine=NAME, what=f"query {promql}",
                                  params={"query": promql})
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            raise BadResponseError(f"query {promql!r} failed: {str(error or body)[:200]}", engine=NAME)
        data = body.get("data")
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(data, dict) or data.get("resultType") != "vector" or not isinstance(result, list):
            raise BadResponseError(f"query {promql!r}: the answer is not an instant vector", engine=NAME)
        out: list[Series] = []
        for item in result[:self.max_series]:
            series = _series(item)
            if series is not None:
                out.append(series)
        return out, len(result) > self.max_series

    async def aclose(self) -> None:
        await self._client.aclose()


def _series(item: Any) -> Series | None:
    """One vector item, or None when it is not `{"metric": {...}, "value": [time, "number"]}`."""
    if not isinstance(item, dict):
        return None
    metric, value = item.get("metric"), item.get("value")
    if not isinstance(metric, dict) or not isinstance(value, list) or len(value) != 2:
        return None
    try:
        number = float(value[1])
    except (TypeError, ValueError):
        return None
    if math.isnan(number):
        return None
    return Series({str(k): str(v) for k, v in metric.items()}, number)
