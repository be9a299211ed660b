"""Opening the TUI: the engines' rows on screen before Textual is even imported.

What a person waits for is the engine rows, not an empty frame. Importing Textual and building the first frame
take ~0.25 s on the 2-core box, while finding a local engine and polling it takes ~0.1 s once the engine modules
are imported. So the registry's first refresh and each engine's first poll start first, in the event loop the app
will run in (console/engines/poll.py `FirstPoll`); as soon as they are in (or FIRST_ROWS_WAIT_S has passed) the
rows that answered are written straight to the terminal, laid out where the dashboard will draw them
(console/ui/engine_rows.py builds both), and only then is Textual imported. The app takes over the same registry
and the polls still in flight, and its first frame has the same rows.

Nothing here imports textual or rich before the rows are written (tests/ui/test_startup_path.py).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING, TextIO

from console.ui.engine_rows import (
    ENGINE_COLUMNS,
    LOADED_COLUMNS,
    engine_row,
    fit_names,
    loaded_rows,
    poll_deadline,
    table_room,
)

if TYPE_CHECKING:
    from console.config import Config
    from console.engines.poll import EngineStatus, FirstPoll
    from console.services import Context

# How long the first frame waits for engines that are slow to answer: the rows that answered by then are shown,
# the rest join the dashboard as they answer. A local engine answers in milliseconds.
FIRST_ROWS_WAIT_S = 0.25
TITLE = "enginedeck"
ENTER_SCREEN = "\x1b[?1049h\x1b[?25l\x1b[2J"  # the alternate screen, cursor hidden, cleared
LEAVE_SCREEN = "\x1b[?25h\x1b[?1049l"


def ascii_wanted(explicit: bool | None, configured: bool) -> bool:
    """--ascii, the config, or a terminal that cannot draw box characters (Linux console, VT100)."""
    if explicit is not None:
        return explicit
    return configured or os.environ.get("TERM", "") in ("linux", "vt100", "vt220", "dumb")


def check_keymap(config: Config) -> None:
    """A [keymap] the console cannot use is a ConfigError before anything is painted (console/ui/keymap.py). Only a
    config with a keymap pays for importing the app and every screen here."""
    if config.keymap.choices:
        from console.ui.app import EngineDeckApp
        from console.ui.keymap import resolve_keymap

        resolve_keymap(config, EngineDeckApp.BINDINGS)


def run_tui(ctx: Context) -> int:
    return asyncio.run(_run(ctx)) or 0


async def _run(ctx: Context) -> int | None:
    ascii_mode = ascii_wanted(ctx.ascii, ctx.config.ui.ascii)
    terminal = sys.__stderr__  # where Textual's terminal driver writes
    painting = terminal if terminal is not None and _paints_here(terminal) else None
    first, painted = await show_first_rows(ctx, painting, ascii_mode=ascii_mode)
    try:
        try:
            from console.ui.app import EngineDeckApp

            app = EngineDeckApp(ctx, ascii_mode=ascii_mode, theme=ctx.theme, first_poll=first)
        except BaseException:  # Ctrl-C or a failure before Textual took the terminal over: give the shell its own
            if painting is not None and painted:
                painting.write(LEAVE_SCREEN)
                painting.flush()
            raise
        return await app.run_async()
    finally:
        first.cancel()


async def show_first_rows(ctx: Context, terminal: TextIO | None, *, ascii_mode: bool,
                          size: tuple[int, int] | None = None) -> tuple[FirstPoll, bool]:
    """Start the first refresh and polls; once they are in (or FIRST_ROWS_WAIT_S has passed), write the rows
    that answered to `terminal` (None: nowhere), `size` columns by lines (default: the terminal's). Returns the
    polls and whether rows were written."""
    from console.engines.poll import FirstPoll

    first = FirstPoll(ctx.registry(), deadline_s=poll_deadline(ctx.config.ui.poll_interval_s))
    await first.wait(FIRST_ROWS_WAIT_S)
    # In fleet mode ([fleet] prometheus_url) the dashboard's tables are the fleet's, with a host column: this box's
    # rows, painted first, would only be replaced by other rows.
    fleet = ctx.config.fleet.prometheus_url is not None
    if terminal is not None and not fleet and first.refresh.done() and not first.refresh.exception() \
            and first.answered():
        return first, paint_first_rows(terminal, first, ascii_mode=ascii_mode, size=size)
    return first, False


def _paints_here(terminal: TextIO) -> bool:
    """Only on a real terminal that Textual's own terminal driver will take over (not `textual serve` or
    `textual run --dev`, whose driver is chosen from the environment)."""
    try:
        return terminal.isatty() and os.environ.get("TERM", "") != "dumb" and not os.environ.get("TEXTUAL_DRIVER")
    except ValueError:  # closed
        return False


# Below the two panels the dashboard has at least a GPU panel (3 lines), a host panel (5) and the sparkline and key
# bars: when the whole does not fit, the body scrolls, and its scrollbar takes the panels' last two columns.
BELOW_PANELS = 3 + 5 + 2


def first_rows_frame(statuses: list[EngineStatus], width: int, height: int, *, ascii_mode: bool) -> list[str]:
    """The top of the dashboard as plain lines: the title bar, the engines panel and the loaded-models panel,
    each cell where the dashboard's DataTables put it (a panel's border, one cell of padding, then columns one
    cell apart with a cell of padding each side)."""
    tl, tr, bl, br, h, v = ("+", "+", "+", "+", "-", "|") if ascii_mode else ("╭", "╮", "╰", "╯", "─", "│")
    icon, dash = ("*", "-") if ascii_mode else ("⭘", "—")
    title = f"{TITLE} {dash} Dashboard"
    left = f" {icon} "
    room = table_room(width)
    engines = fit_names([engine_row(s) for s in statuses], ENGINE_COLUMNS, (0, 3), room)
    loaded = fit_names([row for s in statuses for row in loaded_rows(s)], LOADED_COLUMNS, (0, 1), room, keep=5)
    # Findings that the polls alone show (a model partly on the CPU) are on the dashboard's first frame: here too.
    from console.present.findings import LIST_FROM_ROWS, findings_lines
    from console.truth.findings import Inputs, detect

    notes = findings_lines(detect(Inputs(statuses=statuses)), collapsed=height < LIST_FROM_ROWS, width=room)
    used = 1 + len(engines) + 3 + len(loaded) + 3 + len(notes)
    inner = width - 2 - (2 if used + BELOW_PANELS > height else 0)  # inside a panel's borders
    lines = [f"{left}{' ' * max(0, (width - len(title)) // 2 - len(left))}{title}"]

    def panel(name: str, headers: tuple[str, ...], rows: list[tuple[str, ...]], below: list[str]) -> None:
        widths = [max([len(hd), *(len(r[i]) for r in rows)]) for i, hd in enumerate(headers)]
        lines.append(f"{tl}{h} {name} ".ljust(inner + 1, h) + tr)
        for cells in (headers, *rows):
            text = " " + "".join(f" {c.ljust(w)} " for c, w in zip(cells, widths, strict=True))
            lines.append(v + text[: inner - 1].ljust(inner) + v)  # the right padding stays blank
        if sum(widths) + 2 * len(widths) > inner - 2:  # the table scrolls sideways: its scrollbar takes a line
            lines.append(v + " " * inner + v)
        lines.extend(v + f" {text}".ljust(inner) + v for text in below)
        lines.append(bl + h * inner + br)

    panel("Engines", ENGINE_COLUMNS, engines, notes)
    panel("Loaded models", LOADED_COLUMNS, loaded, [])
    return lines


def paint_first_rows(terminal: TextIO, first: FirstPoll, *, ascii_mode: bool,
                     size: tuple[int, int] | None = None) -> bool:
    """Write the rows that answered, in the registry's order, on the alternate screen that Textual is about to
    take over (so the shell's screen comes back untouched when the app ends). False: nothing was written (the
    terminal's size could not be read)."""
    from console.logs.sanitize import neutralise

    answered = first.answered()
    statuses = [answered[e.name] for e in first.refresh.result() if e.name in answered]
    if size is None:
        try:
            size = os.get_terminal_size(terminal.fileno())
        except OSError:
            return False
    width, height = size
    lines = first_rows_frame(statuses, width, height, ascii_mode=ascii_mode)[:height]
    # The rows' text is neutralised where it is built (engine_rows.py); the whole frame once more, as it goes
    # to a terminal: a control byte here would reach it before Textual's own escaping could.
    body = "".join(f"\x1b[{y};1H{neutralise(line)}" for y, line in enumerate(lines, 1))
    terminal.write(ENTER_SCREEN + body)
    terminal.flush()
    return True
