"""From level figures to a verdict: which levels meet the SLO, the max usable concurrency, the knee.

- A level passes when TTFT p90 ≤ the target, per-user decode p10 ≥ the target and the error rate ≤ the target.
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
QUEUE_MATCH_TOLERANCE = 0.35  # measured TTFT within ±35% of the slot-queue prediction
DECODE_FLAT_TOLERANCE = 0.25


@dataclass(frozen=True)
class LevelVerdict:
    concurrency: int
    passed: bool
    reasons: tuple[str, ...] = ()  # one per failed criterion, in words


@dataclass(frozen=True)
class Verdict:
    max_usable_concurrency: int | None
    knee: int | None
    levels: tuple[LevelVerdict, ...] = ()
    queueing: str | None = None  # a sentence when TTFT grows like a fixed number of slots with a queue
    slots_estimate: int | None = None
    stopped: str | None = None  # why the ladder stopped before its last level

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Verdict:
        data = dict(data or {})
        levels = tuple(LevelVerdict(lv["concurrency"], lv["passed"], tuple(lv.get("reasons", ())))
                       for lv in data.get("levels", ()))
        return cls(
            max_usable_concurrency=data.get("max_usable_concurrency"), knee=data.get("knee"), levels=levels,
            queueing=data.get("queueing"), slots_estimate=data.get("slots_estimate"), stopped=data.get("stopped"),
        )


def judge(fig: LevelFigures, slo: SLO) -> LevelVerdict:
    reasons: list[str] = []
    if fig.ok == 0:
        reasons.append("no request succeeded")
    else:
        ttft = fig.ttft_s.p90 if fig.ttft_s else None
        if ttft is None or ttft > slo.ttft_p90_s:
            reasons.append(f"TTFT p90 {_ms(ttft)} > {_ms(slo.ttft_p90_s)}")
        decode = fig.decode_tok_s.p10 if fig.decode_tok_s else None
        if decode is None:
            reasons.append("no decode rate (replies of one token)")
        elif decode < slo.decode_p10_tok_s:
            reasons.append(f"decode p10 {decode:.1f} tok/s < {slo.decode_p10_tok_s:g}")
    if fig.error_rate > slo.max_error_rate:
        reasons.append(f"errors {fig.error_rate:.1%} > {slo.max_error_rate:.1%}")
    return LevelVerdict(fig.concurrency, not reasons, tuple(reasons))


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


def verdict(levels: Sequence[LevelFigures], slo: SLO, *, engine_kind: str = "", stopped: str | None = None) -> Verdict:
    judged = tuple(judge(f, slo) for f in sorted(levels, key=lambda f: f.concurrency))
    knee = find_knee(levels)
    queueing = slot_queueing(levels, knee, engine_kind)
    return Verdict(
        max_usable_concurrency=max_usable(judged), knee=knee, levels=judged, queueing=queueing,
        slots_estimate=knee if queueing else None, stopped=stopped,
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
