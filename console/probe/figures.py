"""One level's figures, computed from its measured requests (definitions in docs/probe.md).

Latency figures come from successful measured requests only; failures are counted by kind instead. Throughput
and achieved concurrency are taken over the measured window W (first measured send → last measured end) and
count every chunk and every in-flight request inside W, warm-up and filler requests included, so the edges of
the window do not bias them.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from console.config import SLO
from console.probe.intervals import Interval, bootstrap, named, wilson
from console.probe.overhead import Overhead
from console.probe.record import ErrorKind, RequestRecord
from console.probe.sampler import EngineSide
from console.probe.stats import Dist

MAX_ARRIVALS = 5_000_000  # output chunks remembered per level (8 bytes each)
COLD_LOAD_MS = 50.0  # a measured reply whose engine load time exceeds this paid a model (re)load
ACHIEVED_WARN = 0.9

ITL_PER_TOKEN = "per-token"
ITL_PER_CHUNK = "inter-chunk"

# Where a level came from: the closed-loop ladder, a concurrency bisection put between the ladder's last passing
# and first failing level, the noise guard's second run of concurrency 1, or one rate of the open loop.
PHASES = ("ladder", "bisection", "repeat", "open")
# The percentiles given a bootstrap interval, per figure (p95/p99 only where n allows: console/probe/intervals.py).
BOOTSTRAPPED: Mapping[str, tuple[float, ...]] = {
    "ttft_s": (50, 90, 99), "tpot_s": (50, 90), "decode_tok_s": (10, 50), "e2e_s": (50, 90),
}


class LevelTrace:
    """Every output chunk's arrival and every request's busy interval during one level, of any kind."""

    def __init__(self) -> None:
        self.arrivals = array("q")
        self.intervals: list[tuple[int, int]] = []

    def output(self, t_ns: int) -> None:
        if len(self.arrivals) < MAX_ARRIVALS:
            self.arrivals.append(t_ns)

    def busy(self, t_send_ns: int, t_end_ns: int) -> None:
        self.intervals.append((t_send_ns, t_end_ns))

    def merge(self, other: LevelTrace) -> None:
        """Take in another process's trace of the same level (console/probe/workers.py)."""
        self.arrivals.extend(other.arrivals[:max(0, MAX_ARRIVALS - len(self.arrivals))])
        self.intervals.extend(other.intervals)

    def chunks_within(self, start_ns: int, end_ns: int) -> int:
        return sum(1 for t in self.arrivals if start_ns <= t <= end_ns)

    def busy_within(self, start_ns: int, end_ns: int) -> float:
        return sum(max(0, min(b, end_ns) - max(a, start_ns)) for a, b in self.intervals) / 1e9


@dataclass(frozen=True)
class LevelFigures:
    concurrency: int
    attempted: int
    ok: int
    errors: Mapping[str, int]
    error_rate: float
    window_s: float
    ttft_s: Dist | None
    ttfa_s: Dist | None
    e2e_s: Dist | None
    tpot_s: Dist | None
    decode_tok_s: Dist | None  # per-user decode rate, 1 / TPOT
    itl_s: Dist | None
    itl_kind: str  # ITL_PER_TOKEN or ITL_PER_CHUNK
    max_stall_s: Dist | None
    tokens_out_total: int
    tokens_out_mean: float | None
    tokens_in_mean: float | None
    token_source: str | None  # where the output counts came from; "counted chunks" is approximate
    tokens_approximate: bool
    agg_tok_s: float | None
    req_s: float | None
    achieved_concurrency: float | None
    engine: EngineSide = field(default_factory=EngineSide)
    overhead: Overhead | None = None
    warnings: tuple[str, ...] = ()
    phase: str = "ladder"  # one of PHASES
    # How sure: bootstrap 95 % intervals by figure and percentile ({"ttft_s": {"p90": (lo, hi)}}), and the share
    # of attempted requests that met every SLO on their own (success, TTFT ≤ target, decode ≥ target) with its
    # Wilson 95 % interval; goodput is those requests per second of the window.
    ci: Mapping[str, Mapping[str, Interval]] = field(default_factory=dict)
    slo_met: int | None = None
    slo_attainment: float | None = None
    slo_attainment_ci: Interval | None = None
    goodput: float | None = None
    # Open loop only: the arrival rate asked for, the rate the schedule really offered over the measured arrivals,
    # and how late each request's bytes left after it was due.
    rate: float | None = None
    offered_rate: float | None = None
    send_lag_s: Dist | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["errors"] = dict(self.errors)
        out["warnings"] = list(self.warnings)
        out["ci"] = {k: {q: list(iv) for q, iv in v.items()} for k, v in self.ci.items()}
        out["slo_attainment_ci"] = list(self.slo_attainment_ci) if self.slo_attainment_ci else None
        return out

    def interval(self, figure: str, q: str) -> Interval | None:
        """The bootstrap interval of one percentile, e.g. interval("ttft_s", "p90"); None where not computed."""
        return self.ci.get(figure, {}).get(q)

    @property
    def label(self) -> str:
        """How the level is named in tables: its concurrency, or its rate in open loop."""
        return f"{self.rate:g}/s" if self.rate is not None else str(self.concurrency)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LevelFigures:
        dists = ("ttft_s", "ttfa_s", "e2e_s", "tpot_s", "decode_tok_s", "itl_s", "max_stall_s", "send_lag_s")
        values: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}
        for key in dists:
            values[key] = Dist.from_dict(data.get(key))
        values["errors"] = dict(data.get("errors") or {})
        values["warnings"] = tuple(data.get("warnings") or ())
        values["engine"] = EngineSide(**(data.get("engine") or {}))
        values["overhead"] = Overhead(**data["overhead"]) if data.get("overhead") else None
        # Levels stored before intervals existed have none of these: their defaults say "not computed".
        values["phase"] = data.get("phase") or "ladder"
        values["ci"] = {k: {q: (float(iv[0]), float(iv[1])) for q, iv in (v or {}).items()}
                        for k, v in (data.get("ci") or {}).items()}
        att = data.get("slo_attainment_ci")
        values["slo_attainment_ci"] = (float(att[0]), float(att[1])) if att else None
        return cls(**values)


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def met_slo(rec: RequestRecord, slo: SLO) -> bool:
    """One request met every SLO on its own: it succeeded, its first token came within the TTFT target and its
    decode rate reached the decode target (a reply too short to have a decode rate does not)."""
    ttft, decode = rec.ttft_s, rec.decode_tok_s
    return (rec.ok and ttft is not None and ttft <= slo.ttft_p90_s and decode is not None
            and decode >= slo.decode_p10_tok_s)


def summarise(
    concurrency: int, measured: Sequence[RequestRecord], trace: LevelTrace, *,
    overhead: Overhead | None = None, gauges: Mapping[str, float | None] | None = None, samples: int = 0,
    slo: SLO | None = None, seed: int = 0, phase: str = "ladder", rate: float | None = None,
    offered_rate: float | None = None,
) -> LevelFigures:
    good = [r for r in measured if r.ok]
    errors = Counter(r.error.value for r in measured if r.error is not None)
    attempted = len(measured)

    start = min((r.t_start_ns for r in measured), default=0)
    end = max((r.t_end_ns for r in measured), default=0)
    window_s = (end - start) / 1e9

    per_token = bool(good) and all(r.chunk_tokens_known for r in good)
    itl = [s for r in good for s in r.itl_samples_s()]
    tokens = [r.tokens_out for r in good if r.tokens_out is not None]
    sources = sorted({r.token_source.value for r in good if r.token_source is not None})
    approximate = any(r.token_source is not None and r.token_source.approximate for r in good)

    agg_tok_s = req_s = achieved = None
    if window_s > 0:
        req_s = len(good) / window_s
        achieved = trace.busy_within(start, end) / window_s
        chunks = sum(r.chunks for r in good)
        if chunks:
            # Every chunk that arrived inside W counts, from any request; chunks become tokens at the ratio the
            # server's counts gave for the measured replies (1 when the server sends one token per chunk).
            tokens_per_chunk = sum(tokens) / chunks
            agg_tok_s = trace.chunks_within(start, end) * tokens_per_chunk / window_s

    queue = Dist.of(q for r in good if (q := r.queue_ms) is not None)
    server_rate = Dist.of(v for r in good if (v := r.server_decode_tok_s) is not None)
    g = dict(gauges or {})
    engine = EngineSide(
        samples=samples,
        running_mean=g.get("running_mean"), running_max=g.get("running_max"),
        waiting_mean=g.get("waiting_mean"), waiting_max=g.get("waiting_max"), kv_cache_max=g.get("kv_cache_max"),
        server_decode_tok_s_p50=server_rate.p50 if server_rate else None,
        queue_ms_p50=queue.p50 if queue else None, queue_ms_p90=queue.p90 if queue else None,
        cold_loads=sum(1 for r in good if r.load_ms is not None and r.load_ms > COLD_LOAD_MS),
    )

    itl_dist = Dist.of(itl)
    samples_of: dict[str, list[float]] = {
        "ttft_s": [v for r in good if (v := r.ttft_s) is not None],
        "ttfa_s": [v for r in good if (v := r.ttfa_s) is not None],
        "e2e_s": [v for r in good if (v := r.e2e_s) is not None],
        "tpot_s": [v for r in good if (v := r.tpot_s) is not None],
        "decode_tok_s": [v for r in good if (v := r.decode_tok_s) is not None],
    }
    # One seed per level and figure: the same records always give the same intervals.
    ci = {name: named(bootstrap(samples_of[name], qs, seed=seed * 7919 + concurrency * 31 + i))
          for i, (name, qs) in enumerate(BOOTSTRAPPED.items())}
    slo_met = attainment = attainment_ci = goodput = None
    if slo is not None and attempted:
        slo_met = sum(1 for r in measured if met_slo(r, slo))
        attainment, attainment_ci = slo_met / attempted, wilson(slo_met, attempted)
        goodput = slo_met / window_s if window_s > 0 else None

    warnings: list[str] = []
    if rate is None and achieved is not None and achieved < ACHIEVED_WARN * concurrency:
        warnings.append(f"achieved concurrency {achieved:.2f} is below 90% of {concurrency}: the client or the "
                        "ramp limited the load, so this level under-states it")
    if approximate:
        warnings.append("the engine sent no token counts: output tokens are counted chunks (approximate)")
    if engine.cold_loads:
        warnings.append(f"{engine.cold_loads} measured replies paid a model load (load time > {COLD_LOAD_MS:g} ms)")
    if overhead is not None:
        warnings.extend(overhead.warnings(itl_dist.p50 if itl_dist else None))

    return LevelFigures(
        concurrency=concurrency, attempted=attempted, ok=len(good),
        errors={k.value: errors[k.value] for k in ErrorKind if errors[k.value]},
        error_rate=(attempted - len(good)) / attempted if attempted else 0.0,
        window_s=window_s,
        ttft_s=Dist.of(samples_of["ttft_s"]), ttfa_s=Dist.of(samples_of["ttfa_s"]), e2e_s=Dist.of(samples_of["e2e_s"]),
        tpot_s=Dist.of(samples_of["tpot_s"]), decode_tok_s=Dist.of(samples_of["decode_tok_s"]),
        itl_s=itl_dist, itl_kind=ITL_PER_TOKEN if per_token else ITL_PER_CHUNK,
        max_stall_s=Dist.of(r.max_stall_s for r in good if r.max_stall_s is not None),
        tokens_out_total=sum(tokens), tokens_out_mean=_mean(tokens),
        tokens_in_mean=_mean([r.tokens_in for r in good if r.tokens_in is not None]),
        token_source=", ".join(sources) if sources else None, tokens_approximate=approximate,
        agg_tok_s=agg_tok_s, req_s=req_s, achieved_concurrency=achieved,
        engine=engine, overhead=overhead, warnings=tuple(warnings), phase=phase,
        ci={k: v for k, v in ci.items() if v}, slo_met=slo_met, slo_attainment=attainment,
        slo_attainment_ci=attainment_ci, goodput=goodput, rate=rate, offered_rate=offered_rate,
        send_lag_s=Dist.of(v for r in measured if (v := r.send_lag_s) is not None and r.error is not ErrorKind.DROPPED),
    )
