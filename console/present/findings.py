"""Findings as lines a person reads on the dashboard: one line each, or one line for all when space is short."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from console.truth.findings import Finding

SHOWN = 4  # findings listed one per line; the rest are counted
LIST_FROM_ROWS = 40  # a terminal at least this tall lists the findings; a shorter one gets one line for all


def findings_lines(findings: Sequence[Finding], *, collapsed: bool, width: int | None = None) -> list[str]:
    """Nothing when there is nothing to say. `collapsed`: one line, the count and the first finding's title.
    `width`: each line elided to it (so a line never wraps, and the dashboard's layout is known in advance)."""
    lines = _lines(findings, collapsed=collapsed)
    if width is None:
        return lines
    from console.present.format import elide_end

    return [elide_end(line, max(width, 1)) for line in lines]


def _lines(findings: Sequence[Finding], *, collapsed: bool) -> list[str]:
    if not findings:
        return []
    fails = sum(1 for f in findings if f.severity == "fail")
    count = f"{len(findings)} finding{'s' if len(findings) != 1 else ''}" + (f" ({fails} failing)" if fails else "")
    if collapsed:
        more = f" (+{len(findings) - 1})" if len(findings) > 1 else ""
        return [f"{count}: {findings[0].title}{more} (evidence: enginedeck findings)"]
    lines = [f"{'FAIL' if f.severity == 'fail' else 'WARN'} {f.title} — "
             f"{f.evidence[0].label} {_value(f.evidence[0].value)} vs {f.evidence[1].label} "
             f"{_value(f.evidence[1].value)}" for f in findings[:SHOWN]]
    if len(findings) > SHOWN:
        lines.append(f"… {len(findings) - SHOWN} more: `enginedeck findings`")
    return lines


def _value(value: object) -> str:
    if isinstance(value, int) and value >= 2**20:
        from console.present.format import human_bytes

        return human_bytes(value)
    return str(value)
