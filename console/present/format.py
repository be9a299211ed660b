"""How figures read to a person, shared by the TUI and the headless commands. No Textual here."""

from __future__ import annotations

from datetime import UTC, datetime

DASH = "—"


def human_bytes(n: float | None) -> str:
    if n is None:
        return DASH
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def expires_in(when: datetime | None, now: datetime | None = None) -> str:
    """Ollama keep-alive: 'Forever' beyond 20 years, 'Stopping…' once past, else the time left."""
    if when is None:
        return DASH
    now = now or datetime.now(UTC)
    left = (when - now).total_seconds()
    if left > 20 * 365 * 86400:
        return "forever"
    if left <= 0:
        return "stopping…"
    if left >= 120:
        # Whole minutes (rounded up) beyond two minutes: a countdown in seconds would repaint the loaded-models
        # table every second for a figure nobody needs to the second.
        minutes = round(left / 60)
        return f"{minutes}m" if minutes < 60 else human_duration(minutes * 60)
    return human_duration(left)


def pct(value: float | None, *, ratio: bool = False) -> str:
    if value is None:
        return DASH
    return f"{value * 100 if ratio else value:.0f}%"


def ms(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def vram_split(size: int | None, size_vram: int | None) -> str:
    """Like `ollama ps`: 100% GPU, 100% CPU, or the split."""
    if not size or size_vram is None:
        return DASH
    gpu = round(100 * size_vram / size)
    if gpu >= 100:
        return "100% GPU"
    if gpu <= 0:
        return "100% CPU"
    return f"{100 - gpu}%/{gpu}% CPU/GPU"


def latency(seconds: float | None) -> str:
    """A poll latency for a live table: coarse on purpose (below 10 ms is just fast), so a figure that jitters
    by a millisecond every poll does not repaint the table every poll."""
    if seconds is None:
        return DASH
    milli = seconds * 1000
    if milli < 10:
        return "<10 ms"
    if milli < 100:
        return f"{round(milli, -1):.0f} ms"
    return ms(round(seconds, 1))


ELLIPSIS = "…"


def cell_width(text: str) -> int:
    """Columns `text` takes on a terminal: wide (East Asian) characters count two, combining marks none."""
    if text.isascii():
        return len(text)
    import unicodedata

    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


def _take(text: str, width: int, *, from_end: bool = False) -> str:
    """The longest start (or end) of `text` that fits `width` columns."""
    if text.isascii():
        return (text[len(text) - width:] if width else "") if from_end else text[:width]
    taken, used = [], 0
    for ch in reversed(text) if from_end else text:
        used += cell_width(ch)
        if used > width:
            break
        taken.append(ch)
    return "".join(reversed(taken) if from_end else taken)


def elide_end(text: str, width: int) -> str:
    """`text` cut to `width` columns, with … where the end was."""
    if cell_width(text) <= width:
        return text
    return _take(text, width - 1) + ELLIPSIS if width > 0 else ""


def elide_middle(text: str, width: int) -> str:
    """`text` cut to `width` columns by taking out its middle (`gpu1-vllm-…-replica-2`): names differ at both
    ends (a prefix for the host, a suffix for the replica or quantisation), so both ends are kept."""
    if cell_width(text) <= width:
        return text
    if width <= 2:
        return elide_end(text, width)
    tail = (width - 1) // 2
    return _take(text, width - 1 - tail) + ELLIPSIS + _take(text, tail, from_end=True)
