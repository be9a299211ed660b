"""How a probe run reads to a person: one row of text per level and the verdict in sentences, shared by the
TUI's probe screen and `enginedeck probe` (text, CSV and Markdown).

Durations here keep a tenth of a millisecond below 100 ms (`millis`), finer than `format.ms`: probe figures
are compared level against level and run against run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from console.present.format import DASH

if TYPE_CHECKING:
    from console.probe.figures import LevelFigures
    from console.probe.report import RunView

LEVEL_HEADERS = ["C", "OK", "ERR", "TTFT p50", "p90", "p90 95% CI", "p99", "TPOT p50", "ITL p50", "ITL p99",
                 "DECODE p10", "p10 95% CI", "TOK/S", "REQ/S", "GOODPUT", "SLO MET", "ACHIEVED", "OFFERED",
                 "SEND LAG max", "SLO"]
# How a level's C cell says where it came from (the ladder's levels are plain numbers; open-loop levels are rates).
PHASE_MARK = {"ladder": "", "bisection": " b", "noise": " again", "open": ""}
PHASE_LEGEND = "C marked b: bisection between ladder levels; 'again': the noise guard's second run of c=1"


def level_row(f: LevelFigures, passed: bool | None) -> list[str]:
    """One level's figures in the order of LEVEL_HEADERS."""
    itl = "ICL" if f.itl_kind == "inter-chunk" else ""
    return [
        f.label + PHASE_MARK.get(f.phase, ""), str(f.ok), str(f.attempted - f.ok),
        millis(f.ttft_s.p50 if f.ttft_s else None), millis(f.ttft_s.p90 if f.ttft_s else None),
        span_ms(f.interval("ttft_s", "p90")), millis(f.ttft_s.p99 if f.ttft_s else None),
        millis(f.tpot_s.p50 if f.tpot_s else None),
        millis(f.itl_s.p50 if f.itl_s else None) + (f" {itl}" if itl and f.itl_s else ""),
        millis(f.itl_s.p99 if f.itl_s else None), number(f.decode_tok_s.p10 if f.decode_tok_s else None),
        span(f.interval("decode_tok_s", "p10")), number(f.agg_tok_s), number(f.req_s, 2), number(f.goodput, 2),
        attainment(f.slo_attainment, f.slo_attainment_ci), number(f.achieved_concurrency, 2),
        number(f.offered_rate, 2), millis(f.send_lag_s.max if f.send_lag_s else None),
        DASH if passed is None else "pass" if passed else "FAIL",
    ]


def span_ms(interval: tuple[float, float] | None) -> str:
    """A 95 % interval of durations: "398–530 ms" (the unit once, at the end)."""
    if interval is None:
        return DASH
    low, high = millis(interval[0]), millis(interval[1])
    return f"{low.removesuffix(' ms')}–{high}"


def span(interval: tuple[float, float] | None, digits: int = 1) -> str:
    return DASH if interval is None else f"{interval[0]:.{digits}f}–{interval[1]:.{digits}f}"


def attainment(share: float | None, interval: tuple[float, float] | None) -> str:
    """SLO attainment and its Wilson 95 % interval: "95% 76–99"."""
    if share is None:
        return DASH
    if interval is None:
        return f"{share:.0%}"
    return f"{share:.0%} {interval[0] * 100:.0f}–{interval[1] * 100:.0f}"


def verdict_lines(view: RunView) -> list[str]:
    v = view.verdict
    slo = view.slo
    crit = (f"TTFT p90 ≤ {millis(slo.get('ttft_p90_s'))}, decode p10 ≥ {slo.get('decode_p10_tok_s', 0):g} tok/s, "
            f"errors ≤ {rate(slo.get('max_error_rate'))}")
    how = ("at the pessimistic end of their 95% intervals" if v.mode == "pessimistic"
           else "on the point figures (--verdict point)")
    open_loop = any(f.phase == "open" for f in view.levels)
    if open_loop:
        lines = [f"Max sustainable rate: {DASH if v.max_rate is None else f'{v.max_rate:g}/s'} ({crit})"]
    else:
        lines = [f"Max usable concurrency: {or_dash(v.max_usable_concurrency)} ({crit})",
                 f"Knee: {or_dash(v.knee)}" + ("" if v.knee else " (throughput kept rising or TTFT did not jump)")]
    if (line := answer_line(view)) is not None:
        lines.append(line)
    lines.append(f"TTFT p90 and decode p10 judged {how}")
    if v.bisected:
        ladder = sorted(f.concurrency for f in view.levels if f.phase == "ladder")
        lines.append(f"Bisection after the ladder ({', '.join(map(str, ladder))}): "
                     f"c={', '.join(map(str, v.bisected))}, marked b")
    if v.noise:
        lines.append(noise_line(v.noise))
    if open_loop:
        lag = max((f.send_lag_s.max for f in view.levels if f.send_lag_s), default=None)
        drops = sum(f.errors.get("dropped", 0) for f in view.levels)
        lines.append(f"Open loop ({view.params.get('arrivals', 'poisson')} arrivals): latency from each request's "
                     f"scheduled arrival; worst send lag {millis(lag)}; {drops} dropped over the in-flight cap "
                     f"of {view.params.get('max_in_flight', DASH)}")
    if v.queueing:
        lines.append(v.queueing)
    if v.stopped:
        lines.append(f"Ladder {v.stopped}")
    failing = [lv for lv in v.levels if not lv.passed]
    lines.extend(f"{f'{lv.rate:g}/s' if lv.rate is not None else f'c={lv.concurrency}'}"
                 f"{PHASE_MARK.get(lv.phase, '')} fails: {'; '.join(lv.reasons)}" for lv in failing)
    src = view.token_source
    lines.append(f"Token counts: {src or 'none'}" + (" (approximate)" if any(
        f.tokens_approximate for f in view.levels) else ""))
    return lines


def answer_line(view: RunView) -> str | None:
    """The figures at the answer (max usable concurrency, or max sustainable rate) with their 95 % intervals: how
    sure the answer is, in one line."""
    v = view.verdict
    if view.open_loop:
        fig = view.at_rate(v.max_rate) if v.max_rate is not None else None
        head = f"At {fig.label}: achieved {number(fig.req_s, 2)}/s, goodput {number(fig.goodput, 2)}/s; " \
            if fig is not None else ""
    else:
        fig = view.level(v.max_usable_concurrency) if v.max_usable_concurrency is not None else None
        head = f"At c={fig.concurrency}: " if fig is not None else ""
    if fig is None:
        return None
    ttft = millis(fig.ttft_s.p90 if fig.ttft_s else None)
    decode = number(fig.decode_tok_s.p10 if fig.decode_tok_s else None)
    return (f"{head}TTFT p90 {ttft} (95% CI {span_ms(fig.interval('ttft_s', 'p90'))}), decode p10 {decode} "
            f"({span(fig.interval('decode_tok_s', 'p10'))}), SLO met "
            f"{attainment(fig.slo_attainment, fig.slo_attainment_ci)}")


def noise_line(noise: Mapping[str, Any]) -> str:
    """The noise guard in one line: c=1's two runs and their spread."""
    parts = []
    for key, name in (("ttft_p50_s", "TTFT p50"), ("tpot_p50_s", "TPOT p50")):
        pair = noise.get(key)
        if pair:
            parts.append(f"{name} {millis(pair[0]).removesuffix(' ms')}/{millis(pair[1])}")
    spread = noise.get("spread")
    said = "steady" if not noise.get("warning") else "NOISY"
    return (f"Noise guard: c=1 twice, {', '.join(parts) or 'no figures'}; spread "
            f"{DASH if spread is None else f'{spread:.1%}'} ({said}; warns above 10%)")


def steps(params: Mapping[str, Any]) -> str:
    """A run's concurrency levels, or its open-loop rates as "2/s,5/s"."""
    if params.get("rates"):
        return ",".join(f"{r:g}/s" for r in params["rates"])
    return ",".join(str(n) for n in params.get("levels", []))


def usable(verdict: Mapping[str, Any]) -> str:
    """Max usable concurrency, or for an open-loop run its max sustainable rate."""
    found = verdict.get("max_rate")
    return f"{found:g}/s" if found is not None else or_dash(verdict.get("max_usable_concurrency"))


def or_dash(value: Any) -> str:
    return DASH if value is None else str(value)


def millis(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def number(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def change(value: float | None) -> str:
    """A change in percent, signed: +12%, -3%."""
    return DASH if value is None else f"{value:+.0f}%"


def rate(value: float | None) -> str:
    return DASH if value is None else f"{value:.1%}"
