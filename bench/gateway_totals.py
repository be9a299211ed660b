"""What a live-socket snapshot costs the gateway's event loop because of its per-model totals (docs/gateway.md,
"Live view"): the worst case a client can force (MODELS_KEPT models, each with TTFT_KEPT first-byte times in the
window) and the usual one (one model), first read (every p90 sorted) and a read within P90_MAX_AGE_S (cached).

    .venv/bin/python bench/gateway_totals.py [--reads 20]

In-process, no network. Prints milliseconds per snapshot (mean over --reads).
"""

from __future__ import annotations

import argparse
import random
import time

from console.gateway.live import MODELS_KEPT, TTFT_KEPT, Live
from console.gateway.record import RequestRecord


def _live(models: int) -> Live:
    live = Live("bench", "http://127.0.0.1:1")
    for m in range(models):
        for i in range(TTFT_KEPT):
            live.end(RequestRecord(request_id=f"{m}-{i}", started=time.time(), method="POST", path="/api/chat",
                                   client_ip="127.0.0.1", client="a", user_agent="bench", upstream="x",
                                   model=f"model-{m}", ttft_ms=random.random() * 1000, tokens_in=5, tokens_out=9))
    return live


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=20)
    args = parser.parse_args()
    for models in (1, MODELS_KEPT):
        live = _live(models)
        first: list[float] = []
        cached: list[float] = []
        for _ in range(args.reads):
            for totals in live.totals.values():
                totals.p90 = None  # as if the cache had aged out
            t = time.perf_counter()
            live.snapshot()
            first.append(time.perf_counter() - t)
            t = time.perf_counter()
            live.snapshot()
            cached.append(time.perf_counter() - t)
        print(f"{models:4d} models x {TTFT_KEPT} TTFTs: snapshot {sum(first) / len(first) * 1000:7.2f} ms "
              f"(p90s worked out), {sum(cached) / len(cached) * 1000:7.2f} ms (p90s cached)")


if __name__ == "__main__":
    main()
