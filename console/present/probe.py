"""How a probe run reads to a person: one row of text per level and the verdict in sentences, shared by the
TUI's probe screen and `enginedeck probe` (text, CSV and Markdown).

Durations here keep a tenth of a millisecond below 100 ms (`millis`), finer than `format.ms`: probe figures
are compared level against level and run against run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from console.present.format import DASH

if TYPE_CHECKING:
    from console.probe.figures import LevelFigures
    from console.probe.report import RunView

LEVEL_HEADERS = ["C", "OK", "ERR", "TTFT p50", "p90", "p99", "TPOT p50", "ITL p50", "ITL p99", "DECODE p10",
                 "TOK/S", "REQ/S", "ACHIEVED", "SLO"]


def level_row(f: LevelFigures, passed: bool | None) -> list[str]:
    """One level's figures in the order of LEVEL_HEADERS."""
    itl = "ICL" if f.itl_kind == "inter-chunk" else ""
    return [
        str(f.concurrency), str(f.ok), str(f.attempted - f.ok),
        millis(f.ttft_s.p50 if f.ttft_s else None), millis(f.ttft_s.p90 if f.ttft_s else None),
        millis(f.ttft_s.p99 if f.ttft_s else None), millis(f.tpot_s.p50 if f.tpot_s else None),
        millis(f.itl_s.p50 if f.itl_s else None) + (f" {itl}" if itl and f.itl_s else ""),
        millis(f.itl_s.p99 if f.itl_s else None), number(f.decode_tok_s.p10 if f.decode_tok_s else None),
        number(f.agg_tok_s), number(f.req_s, 2), number(f.achieved_concurrency, 2),
        DASH if passed is None else "pass" if passed else "FAIL",
    ]


def verdict_lines(view: RunView) -> list[str]:
    v = view.verdict
    slo = view.slo
    crit = (f"TTFT p90 ≤ {millis(slo.get('ttft_p90_s'))}, decode p10 ≥ {slo.get('decode_p10_tok_s', 0):g} tok/s, "
            f"errors ≤ {rate(slo.get('max_error_rate'))}")
    lines = [f"Max usable concurrency: {or_dash(v.max_usable_concurrency)} ({crit})",
             f"Knee: {or_dash(v.knee)}" + ("" if v.knee else " (throughput kept rising or TTFT did not jump)")]
    if v.queueing:
        lines.append(v.queueing)
    if v.stopped:
        lines.append(f"Ladder {v.stopped}")
    failing = [lv for lv in v.levels if not lv.passed]
    lines.extend(f"c={lv.concurrency} fails: {'; '.join(lv.reasons)}" for lv in failing)
    src = view.token_source
    lines.append(f"Token counts: {src or 'none'}" + (" (approximate)" if any(
        f.tokens_approximate for f in view.levels) else ""))
    return lines


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
