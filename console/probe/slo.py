"""From level figures to a verdict: which levels meet the SLO, the max usable concurrency, the knee.

- A level passes when TTFT p90 ≤ the target, per-user decode p10 ≥ the target and the error rate ≤ the target.
  With the pessimistic verdict (the default) TTFT p90 and decode p10 are read at the pessimistic end of their
  bootstrap 95 % intervals (TTFT's upper end, decode's lower end); with the point verdict at the figures
  themselves. The error rate is read as measured in both (docs/probe.md says why).
- Max usable concurrency: the highest passing level such that every lower tested level passed too.
- Knee: the last level before throughput stops rising (< 10% more aggregate tok/s) while TTFT p90 jumps (> 50%).
- Slot queueing: above the knee, a closed loop of N users on P slots waits about (N/P − 1) service times before
  its first token, while decode speed stays put. When TTFT follows that, the engine serves P requests at a
  time and queues the rest (Ollama: OLLAMA_NUM_PARALLEL; llama.cpp: -np).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from console.config import SLO
from console.errors import ConfigError
from console.probe.figures import LevelFigures

KNEE_TOK_S_GAIN = 0.10
KNEE_TTFT_JUMP = 0.50
VERDICT_MODES = ("pessimistic", "point")
QUEUE_MATCH_TOLERANCE = 0.35  # measured TTFT within ±35% of the slot-queue prediction
DECODE_FLAT_TOLERANCE = 0.25


NOISE_WARN = 0.10  # the noise guard warns when concurrency 1's two runs differ by more than this


@dataclass(frozen=True)
class LevelVerdict:
    concurrency: int
    passed: bool
    reasons: tuple[str, ...] = ()  # one per failed criterion, in words
    phase: str = "ladder"
    rate: float | None = None  # open loop: the level's arrival rate

    @property
    def key(self) -> tuple[int, str, float | None]:
        return (self.concurrency, self.phase, self.rate)


@dataclass(frozen=True)
class Verdict:
    max_usable_concurrency: int | None
    knee: int | None
    levels: tuple[LevelVerdict, ...] = ()
    queueing: str | None = None  # a sentence when TTFT grows like a fixed number of slots with a queue
    slots_estimate: int | None = None
    stopped: str | None = None  # why the ladder stopped before its last level
    mode: str = "pessimistic"  # how TTFT p90 and decode p10 were read: at their intervals' pessimistic end, or "point"
    bisected: tuple[int, ...] = ()  # concurrencies measured by bisection after the ladder, in the order run
    noise: Mapping[str, Any] | None = None  # the noise guard's two runs of c=1 (noise_guard below)
    max_rate: float | None = None  # open loop: the highest passing rate such that every lower rate passed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Verdict:
        data = dict(data or {})
        levels = tuple(LevelVerdict(lv["concurrency"], lv["passed"], tuple(lv.get("reasons", ())),
                                    lv.get("phase") or "ladder", lv.get("rate"))
                       for lv in data.get("levels", ()))
        return cls(
            max_usable_concurrency=data.get("max_usable_concurrency"), knee=data.get("knee"), levels=levels,
            queueing=data.get("queueing"), slots_estimate=data.get("slots_estimate"), stopped=data.get("stopped"),
            mode=data.get("mode") or "point",  # runs stored before intervals were judged on the point figures
            bisected=tuple(data.get("bisected") or ()), noise=data.get("noise"), max_rate=data.get("max_rate"),
        )

    def of(self, fig: LevelFigures) -> LevelVerdict | None:
        """This verdict's judgement of one of the run's levels."""
        key = (fig.concurrency, fig.phase, fig.rate)
        return next((v for v in self.levels if v.key == key), None)


def judge(fig: LevelFigures, slo: SLO, mode: str = "pessimistic") -> LevelVerdict:
    reasons: list[str] = []
    pessimistic = mode == "pessimistic"
    if fig.ok == 0:
        reasons.append("no request succeeded")
    else:
        ttft = fig.ttft_s.p90 if fig.ttft_s else None
        ttft_ci = fig.interval("ttft_s", "p90") if pessimistic else None
        if ttft is None or ttft > slo.ttft_p90_s:
            reasons.append(f"TTFT p90 {_ms(ttft)} > {_ms(slo.ttft_p90_s)}")
        elif ttft_ci is not None and ttft_ci[1] > slo.ttft_p90_s:
            reasons.append(f"TTFT p90 {_ms(ttft)}, but its 95% upper bound {_ms(ttft_ci[1])} > {_ms(slo.ttft_p90_s)}")
        decode = fig.decode_tok_s.p10 if fig.decode_tok_s else None
        decode_ci = fig.interval("decode_tok_s", "p10") if pessimistic else None
        if decode is None:
            reasons.append("no decode rate (replies of one token)")
        elif decode < slo.decode_p10_tok_s:
            reasons.append(f"decode p10 {decode:.1f} tok/s < {slo.decode_p10_tok_s:g}")
        elif decode_ci is not None and decode_ci[0] < slo.decode_p10_tok_s:
            reasons.append(f"decode p10 {decode:.1f} tok/s, but its 95% lower bound {decode_ci[0]:.1f} < "
                           f"{slo.decode_p10_tok_s:g}")
    if fig.error_rate > slo.max_error_rate:
        reasons.append(f"errors {fig.error_rate:.1%} > {slo.max_error_rate:.1%}")
    return LevelVerdict(fig.concurrency, not reasons, tuple(reasons), fig.phase, fig.rate)


def max_usable(verdicts: Sequence[LevelVerdict]) -> int | None:
    best = None
    for v in sorted(verdicts, key=lambda v: v.concurrency):
        if not v.passed:
            break
        best = v.concurrency
    return best


def find_knee(levels: Sequence[LevelFigures]) -> int | None:
    ordered = sorted(levels, key=lambda f: f.concurrency)
    for prev, cur in itertools.pairwise(ordered):
        if not (prev.agg_tok_s and cur.agg_tok_s and prev.ttft_s and cur.ttft_s and prev.ttft_s.p90 > 0):
            continue
        gain = cur.agg_tok_s / prev.agg_tok_s - 1.0
        jump = cur.ttft_s.p90 / prev.ttft_s.p90 - 1.0
        if gain < KNEE_TOK_S_GAIN and jump > KNEE_TTFT_JUMP:
            return prev.concurrency
    return None


def slot_queueing(levels: Sequence[LevelFigures], knee: int | None, engine_kind: str) -> str | None:
    """A sentence when TTFT above the knee grows by about one service time per queue position."""
    if knee is None:
        return None
    by_n = {f.concurrency: f for f in levels}
    base = by_n.get(knee)
    above = [f for f in levels if f.concurrency > knee and f.ok]
    if base is None or not above or not (base.ttft_s and base.e2e_s and base.decode_tok_s):
        return None
    for fig in above:
        if not (fig.ttft_s and fig.decode_tok_s):
            return None
        predicted = base.ttft_s.p50 + (fig.concurrency / knee - 1.0) * base.e2e_s.p50
        if abs(fig.ttft_s.p50 - predicted) > QUEUE_MATCH_TOLERANCE * predicted:
            return None
        if abs(fig.decode_tok_s.p50 - base.decode_tok_s.p50) > DECODE_FLAT_TOLERANCE * base.decode_tok_s.p50:
            return None
    where = {
        "ollama": f"Ollama appears to run {knee} request(s) at a time (OLLAMA_NUM_PARALLEL={knee}-style queueing); "
                  "raise OLLAMA_NUM_PARALLEL if memory allows",
        "llamacpp": f"llama-server appears to have {knee} slot(s) (-np {knee}); more slots serve more users at once",
    }.get(engine_kind, f"the engine appears to serve {knee} request(s) at a time and queue the rest")
    return f"TTFT above {knee} grows by about one service time per queue position: {where}"


def noise_guard(first: LevelFigures, second: LevelFigures) -> dict[str, Any]:
    """Concurrency 1 run twice: TTFT p50 and TPOT p50 of each run and their spread, (larger − smaller) / smaller;
    a warning in words when either spread is over NOISE_WARN."""
    out: dict[str, Any] = {}
    worst: float | None = None
    for key, a, b in (("ttft_p50_s", first.ttft_s, second.ttft_s), ("tpot_p50_s", first.tpot_s, second.tpot_s)):
        if a is None or b is None or min(a.p50, b.p50) <= 0:
            continue
        spread = (max(a.p50, b.p50) - min(a.p50, b.p50)) / min(a.p50, b.p50)
        out[key] = [a.p50, b.p50]
        out[key.replace("_p50_s", "_spread")] = spread
        worst = spread if worst is None else max(worst, spread)
    out["spread"] = worst
    out["warning"] = (f"concurrency 1 measured twice differs by {worst:.0%} (> {NOISE_WARN:.0%}): this box or "
                      "engine is noisy, so differences between levels or runs of that size are not the engine's"
                      if worst is not None and worst > NOISE_WARN else None)
    return out


def verdict(levels: Sequence[LevelFigures], slo: SLO, *, engine_kind: str = "", stopped: str | None = None,
            mode: str = "pessimistic", noise: Mapping[str, Any] | None = None) -> Verdict:
    judged_all = tuple(judge(f, slo, mode) for f in sorted(levels, key=lambda f: (f.rate or 0.0, f.concurrency)))
    # The noise guard's second c=1 and open-loop rates are not steps of the concurrency ladder.
    ladder = [f for f in levels if f.phase in ("ladder", "bisection")]
    judged = tuple(v for v in judged_all if v.phase in ("ladder", "bisection"))
    rates = [v for v in judged_all if v.phase == "open"]
    max_rate = None
    for v in rates:
        if not v.passed:
            break
        max_rate = v.rate
    knee = find_knee(ladder)
    queueing = slot_queueing(ladder, knee, engine_kind)
    return Verdict(
        max_usable_concurrency=max_usable(judged), knee=knee, levels=judged_all, queueing=queueing,
        slots_estimate=knee if queueing else None, stopped=stopped, mode=mode,
        bisected=tuple(f.concurrency for f in levels if f.phase == "bisection"),
        noise=dict(noise) if noise is not None else None, max_rate=max_rate,
    )


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.0f} ms"


# -- the SLO from a spec -----------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^([0-9]*\.?[0-9]+)\s*(ms|s)?$")


def parse_slo(spec: str | None, base: SLO) -> SLO:
    """`ttft_p90=1s,decode_p10=10,errors=1%` over the config's SLO; unknown keys are a clear error."""
    if not spec:
        return base
    slo = base
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip().lower()
        if not sep or not value:
            raise ConfigError(f"--slo: {part!r} is not KEY=VALUE", hint="e.g. ttft_p90=1s,decode_p10=10,errors=1%")
        try:
            if key in ("ttft_p90", "ttft"):
                m = _DURATION.match(value)
                if not m:
                    raise ValueError
                slo = replace(slo, ttft_p90_s=float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0))
            elif key in ("decode_p10", "decode"):
                slo = replace(slo, decode_p10_tok_s=float(value.removesuffix("tok/s")))
            elif key in ("errors", "error_rate"):
                rate = float(value.removesuffix("%")) / 100.0 if value.endswith("%") else float(value)
                if not 0.0 <= rate <= 1.0:
                    raise ValueError
                slo = replace(slo, max_error_rate=rate)
            else:
                raise ConfigError(f"--slo: unknown key {key!r}", hint="use ttft_p90, decode_p10 and errors")
        except ValueError:
            raise ConfigError(f"--slo: cannot read {part!r}",
                              hint="e.g. ttft_p90=800ms, decode_p10=10, errors=1% (or 0.01)") from None
    return slo
