"""One view of a probe run, whether it just finished or comes from the history, and its JSON document.

The CLI (`--json`, `probe show`, `probe compare`) and the TUI both read runs through `RunView`, so a stored run
and a live one look the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from console.errors import ConfigError
from console.probe.figures import LevelFigures
from console.probe.slo import Verdict

if TYPE_CHECKING:
    from console.probe.ladder import ProbeResult
    from console.store.probes import ProbeRun

# Printed with every JSON document: names mean what they say here, not what another tool means by them.
DEFINITIONS: Mapping[str, str] = {
    "clock": "time.perf_counter_ns (monotonic); each chunk stamped on arrival, before parsing",
    "ttft_s": "send → first chunk with content, reasoning or a tool call (role-only/empty chunks excluded)",
    "ttfa_s": "send → first answer content (after any reasoning)",
    "e2e_s": "send → last content-bearing chunk",
    "tpot_s": "(t_last − t_first) / (output tokens − tokens in the first chunk)",
    "decode_tok_s": "per-user decode rate, 1 / TPOT; the SLO uses its p10",
    "itl_s": "gaps between content chunks spread over the chunk's tokens (per-token) when the server counts "
             "them per chunk; otherwise one sample per gap (inter-chunk, itl_kind says which)",
    "max_stall_s": "longest gap between two content chunks of a request",
    "agg_tok_s": "output tokens arriving in the measured window / window (all requests in flight counted)",
    "req_s": "successful measured requests / measured window",
    "achieved_concurrency": "time-averaged requests in flight over the measured window (Little's law)",
    "percentiles": "linear interpolation; p95 only with n ≥ 20, p99 only with n ≥ 100 (else null)",
    "errors": "failed requests by kind, excluded from every latency figure; open loop: dropped = due while "
              "max_in_flight requests were open, never sent",
    "load": "closed loop: N streams, no think time, one warm-up request per stream not counted; open loop "
            "(levels with a rate): arrivals on a seeded Poisson or constant schedule, latencies from each "
            "request's scheduled arrival",
    "phase": "ladder | bisection (between the last passing and first failing ladder level) | noise (the noise "
             "guard's second c=1) | open (an open-loop rate)",
    "ci": "95% percentile-bootstrap intervals [low, high] of p10/p50/p90 (p99 with n ≥ 100), 1000 resamples, "
          "seeded per level",
    "slo_attainment": "share of attempted requests meeting every SLO on their own (success, TTFT ≤ target, "
                      "decode ≥ target); slo_attainment_ci its Wilson 95% interval",
    "goodput": "requests meeting every SLO / measured window (requests/s)",
    "verdict_mode": "pessimistic: TTFT p90 and decode p10 judged at their intervals' pessimistic end; point: "
                    "at the figures",
    "offered_rate": "open loop: measured arrivals − 1 / their scheduled span (requests/s); req_s is the achieved rate",
    "send_lag_s": "open loop: scheduled arrival → request bytes written (how late the client sent)",
}
PHASE_ORDER = {"ladder": 0, "bisection": 0, "noise": 1, "open": 2}


@dataclass(frozen=True)
class RunView:
    engine: str
    engine_kind: str | None
    model: str
    status: str
    params: Mapping[str, Any]
    slo: Mapping[str, Any]
    levels: tuple[LevelFigures, ...]
    verdict: Verdict
    run_id: int | None = None
    engine_version: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    environment: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_result(cls, result: ProbeResult, *, run_id: int | None = None, engine_version: str | None = None,
                    environment: Mapping[str, Any] | None = None) -> RunView:
        return cls(
            engine=result.engine, engine_kind=result.engine_kind, model=result.model, status=result.status,
            params=result.params.to_dict(), slo=asdict(result.slo), levels=ordered(result.levels),
            verdict=result.verdict or Verdict(None, None), run_id=run_id, engine_version=engine_version,
            started_at=result.started_at, finished_at=result.finished_at, environment=dict(environment or {}),
        )

    @classmethod
    def from_stored(cls, run: ProbeRun) -> RunView:
        return cls(
            engine=run.engine, engine_kind=run.engine_kind, model=run.model, status=run.status,
            params=dict(run.params), slo=dict(run.slo), levels=ordered(LevelFigures.from_dict(f) for f in run.levels),
            verdict=Verdict.from_dict(run.verdict), run_id=run.id, engine_version=run.engine_version,
            started_at=datetime.fromtimestamp(run.started_at, UTC),
            finished_at=datetime.fromtimestamp(run.finished_at, UTC) if run.finished_at else None,
            environment=dict(run.environment or {}),
        )

    @property
    def token_source(self) -> str | None:
        sources = sorted({f.token_source for f in self.levels if f.token_source})
        return ", ".join(sources) if sources else None

    @property
    def warnings(self) -> list[str]:
        out = [f"{f.label if f.rate is not None else f'c={f.concurrency}'}: {w}" for f in self.levels
               for w in f.warnings]
        if self.verdict.noise and self.verdict.noise.get("warning"):
            out.append(f"noise guard: {self.verdict.noise['warning']}")
        return out

    def level(self, concurrency: int) -> LevelFigures | None:
        """The ladder's (or bisection's) level at `concurrency`: what two runs are compared on."""
        return next((f for f in self.levels if f.concurrency == concurrency and f.phase in ("ladder", "bisection")),
                    None)

    @property
    def open_loop(self) -> bool:
        """Levels with a rate (`--rate`/`--rates`), not concurrency."""
        return any(f.phase == "open" for f in self.levels) or bool(self.params.get("rates"))

    def at_rate(self, rate: float) -> LevelFigures | None:
        """The open-loop level at `rate`: what two open-loop runs are compared on."""
        return next((f for f in self.levels if f.phase == "open" and f.rate == rate), None)

    def passed(self, fig: LevelFigures) -> bool | None:
        """Whether the run's verdict passed this level (None: not judged)."""
        v = self.verdict.of(fig)
        return v.passed if v else None

    def document(self) -> dict[str, Any]:
        """The JSON document of `enginedeck probe --json` and `probe show --json`."""
        levels = []
        for f in self.levels:
            d = f.to_dict()
            v = self.verdict.of(f)
            d["slo_pass"] = v.passed if v else None
            d["slo_fail_reasons"] = list(v.reasons) if v else []
            levels.append(d)
        return {
            "run_id": self.run_id, "status": self.status,
            "engine": self.engine, "engine_kind": self.engine_kind, "engine_version": self.engine_version,
            "model": self.model,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "max_usable_concurrency": self.verdict.max_usable_concurrency,
            "max_rate": self.verdict.max_rate,
            "verdict_mode": self.verdict.mode,
            "bisected": list(self.verdict.bisected),
            "noise": dict(self.verdict.noise) if self.verdict.noise else None,
            "knee": self.verdict.knee,
            "queueing": self.verdict.queueing,
            "stopped": self.verdict.stopped,
            "token_source": self.token_source,
            "tokens_approximate": any(f.tokens_approximate for f in self.levels),
            "slo": dict(self.slo), "params": dict(self.params),
            "overhead": {f.label: f.overhead.to_dict() for f in self.levels if f.overhead and f.phase != "noise"},
            "warnings": self.warnings,
            "levels": levels,
            "environment": dict(self.environment),
            "definitions": dict(DEFINITIONS),
        }


def ordered(levels: Iterable[LevelFigures]) -> tuple[LevelFigures, ...]:
    """Levels as tables and plots show them: by concurrency (bisection levels among the ladder's), the noise
    guard's second c=1 after them, open-loop levels by rate."""
    return tuple(sorted(levels, key=lambda f: (PHASE_ORDER.get(f.phase, 3), f.rate or 0.0, f.concurrency)))


# The figures two runs are compared on, in the order shown: key -> the figure of one level.
COMPARED: dict[str, Callable[[LevelFigures], float | None]] = {
    "ttft_p90_s": lambda f: f.ttft_s.p90 if f.ttft_s else None,
    "tpot_p50_s": lambda f: f.tpot_s.p50 if f.tpot_s else None,
    "decode_p10_tok_s": lambda f: f.decode_tok_s.p10 if f.decode_tok_s else None,
    "agg_tok_s": lambda f: f.agg_tok_s,
    "req_s": lambda f: f.req_s,
    "error_rate": lambda f: f.error_rate,
}
# An open-loop level also has what the schedule offered and what met every SLO.
COMPARED_OPEN: dict[str, Callable[[LevelFigures], float | None]] = {
    **COMPARED,
    "offered_rate": lambda f: f.offered_rate,
    "goodput": lambda f: f.goodput,
    "slo_attainment": lambda f: f.slo_attainment,
}


def compare_key(a: RunView, b: RunView) -> str:
    """What two runs' levels are matched on: "concurrency" (closed loops) or "rate" (open loops). A closed-loop
    run and an open-loop one have no level in common: N users is not R requests per second."""
    if a.open_loop != b.open_loop:
        closed, opened = (a, b) if b.open_loop else (b, a)
        raise ConfigError(
            f"run {closed.run_id} is a closed loop (concurrency levels) and run {opened.run_id} an open loop "
            "(arrival rates): their levels cannot be matched; compare two of one kind")
    return "rate" if a.open_loop else "concurrency"


def compare_rows(a: RunView, b: RunView) -> list[dict[str, Any]]:
    """Per level in either run (concurrency, or rate for open loops): A, B and the change from A to B (percent) of
    the key figures. Raises ConfigError for a closed-loop run against an open-loop one."""
    if compare_key(a, b) == "rate":
        figures = COMPARED_OPEN
        steps: list[Any] = sorted({f.rate for f in (*a.levels, *b.levels) if f.rate is not None})
        pair = [(r, a.at_rate(r), b.at_rate(r)) for r in steps]
        key = "rate"
    else:
        figures = COMPARED
        steps = sorted({f.concurrency for f in a.levels} | {f.concurrency for f in b.levels})
        pair = [(n, a.level(n), b.level(n)) for n in steps]
        key = "concurrency"
    rows = []
    for step, fa, fb in pair:
        row: dict[str, Any] = {key: step}
        for name, pick in figures.items():
            va = pick(fa) if fa is not None else None
            vb = pick(fb) if fb is not None else None
            delta = (vb - va) / va * 100.0 if va and vb is not None else None
            row[name] = {"a": va, "b": vb, "delta_pct": delta}
        rows.append(row)
    return rows
