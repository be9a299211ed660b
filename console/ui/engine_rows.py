"""The engine rows as plain text: what the dashboard's tables show, and what the first frame shows before Textual
has been imported (console/ui/start.py), so that both draw the same rows in the same place.

Nothing here imports textual or rich: the first frame is written while Textual is still to be imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from console.logs.sanitize import neutralise, one_line
from console.present.format import DASH, elide_middle, expires_in, human_bytes, latency, pct, vram_split

if TYPE_CHECKING:
    from collections.abc import Sequence

    from console.engines.base import LoadedModel
    from console.engines.poll import EngineStatus
    from console.engines.pressure import InFlight

# The verdict first (health; where a model sits and until when), so 80 columns show it whatever the names.
ENGINE_COLUMNS = ("engine", "health", "kind", "version", "poll", "run/wait", "KV")
LOADED_COLUMNS = ("engine", "model", "where", "size", "expires/status", "ctx")
NAME_FLOOR = 10  # a name column is elided to fit the panel, but never narrower than this


def poll_deadline(interval_s: float) -> float:
    """How long one engine may take to answer a poll: long enough for a busy engine, short enough that a dead
    one is reported as down within a couple of refreshes."""
    from console.engines.poll import DEFAULT_DEADLINE_S

    return min(DEFAULT_DEADLINE_S, max(1.0, 2 * interval_s))


def engine_row(s: EngineStatus, in_flight: InFlight | None = None) -> tuple[str, ...]:
    # Imported here: the dashboard module is imported for the first frame, which needs no engine module; a row
    # exists only once an engine has been polled, and by then the engine modules are in.
    from console.engines.pressure import pressure_of

    # the figures `ps --json` and the exporter give, under the same names; a gateway's count where the engine
    # counts none (Ollama), marked "gw" so that nobody takes it for the engine's own
    info, p = s.info, pressure_of(s, in_flight)
    running, waiting, kv = p.value("running"), p.value("waiting"), p.value("kv_cache_pct")
    run_wait = DASH if running is None else f"{running:.0f}/{(waiting or 0):.0f}"
    if running is not None and (p.get("running").source or "").startswith("gateway "):
        run_wait += " gw"
    return (
        neutralise(s.name), s.health.value, s.kind, neutralise(info.version or DASH) if info else DASH,
        latency(info.latency_ms / 1000) if info and info.latency_ms is not None else DASH,
        run_wait, pct(kv) if kv is not None else DASH,
    )


def where(lm: LoadedModel) -> str:
    """Like `ollama ps` where the engine says so; the GPU memory of the model's process where NVML says so
    (console/fit/attribute.py: the file's size would make any split meaningless)."""
    if lm.size_vram is not None and lm.size_vram_source and lm.size_vram_source != "engine":
        return f"GPU {human_bytes(lm.size_vram)}"
    return vram_split(lm.size, lm.size_vram)


def loaded_rows(s: EngineStatus, loaded: Sequence[LoadedModel] | None = None) -> list[tuple[str, ...]]:
    """`loaded`: the engine's loaded models with their VRAM attributed (default: as the engine gave them)."""
    rows: list[tuple[str, ...]] = []
    for lm in s.loaded if loaded is None else loaded:
        status = lm.status or expires_in(lm.expires_at)
        if s.metrics is not None and s.metrics.sleeping:
            status = "sleeping"
        rows.append((neutralise(s.name), neutralise(lm.name), where(lm), human_bytes(lm.size),
                     neutralise(status),
                     str(lm.context_length) if lm.context_length else DASH))
    return rows


def fit_names(rows: list[tuple[str, ...]], headers: tuple[str, ...], names: tuple[int, ...],
              room: int, *, keep: int | None = None) -> list[tuple[str, ...]]:
    """Elide the name columns (`names`: engine, model, version) in the middle so that the first `keep` columns
    (all by default; the ones after may go past the right edge, the table scrolls) fit `room` cells: the other
    columns keep their width, the name columns share what is left in proportion to their longest name. Nothing
    is elided while everything fits (a wide terminal shows the whole names)."""
    if not rows:
        return rows
    keep = len(headers) if keep is None else keep
    natural = [max(len(h), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers[:keep])]
    left = room - 2 * keep - sum(w for i, w in enumerate(natural) if i not in names)
    wanted = sum(natural[i] for i in names)
    if wanted <= left:
        return rows
    # A name shorter than its share keeps its width and leaves the rest to the longer ones (a short engine name
    # beside a long host name must not cost the host name room it does not use).
    caps: dict[int, int] = {}
    short = True
    while short:
        rest = [i for i in names if i not in caps]
        share = max(left - sum(natural[i] for i in caps), 0)
        total = sum(natural[i] for i in rest) or 1
        short = False
        for i in rest:
            if natural[i] <= max(NAME_FLOOR, len(headers[i]), share * natural[i] // total) and len(rest) > 1:
                caps[i], short = natural[i], True
    caps.update({i: max(NAME_FLOOR, len(headers[i]), share * natural[i] // total) for i in rest})
    return [tuple(elide_middle(c, caps[i]) if i in caps else c for i, c in enumerate(r)) for r in rows]


def problem_line(s: EngineStatus) -> str | None:
    reason = s.error or (s.info.reason if s.info and s.info.health != "ok" else "")
    return f"{neutralise(s.name)}: {one_line(neutralise(reason), 160)}" if reason else None


def table_room(width: int) -> int:
    """Cells a table may use in a terminal `width` wide: less the panel's border and padding and the body's
    scrollbar (counted even while the body fits: the tables must not change when it comes)."""
    return width - 4 - 2
