"""Untrusted text (model output, log lines, engine error bodies, model names) made inert.

Two separate steps, because they protect different things:
- `neutralise` removes what a terminal would act on: ESC sequences (CSI, OSC, DCS, ...), C1 controls, BEL,
  backspace and other C0 controls except newline and tab. Nothing the text says can move the cursor, set
  the title, write the clipboard (OSC 52) or open a hyperlink.
- `escape_markup` makes Rich/Textual markup literal (`[bold]`, `[link=...]`, `[/]`), for the places that
  render markup strings. Prefer passing plain text to widgets that do not parse markup at all.
"""

from __future__ import annotations

import re

from console.secrets import redact

# ESC followed by: CSI ... final byte | OSC/DCS/SOS/PM/APC ... terminated by BEL or ST | any single char.
_ESCAPE_SEQ = re.compile(
    r"""
    \x1b\[[0-?]*[ -/]*[@-~]?             # CSI
    | \x1b[\]PX^_].*?(?:\x07|\x1b\\|$)   # OSC, DCS, SOS, PM, APC up to BEL or ST (or end of text)
    | \x1b.?                             # any other ESC + one char (or a lone ESC)
    | \x9b[0-?]*[ -/]*[@-~]?             # 8-bit CSI
    | [\x9d\x90\x98\x9e\x9f].*?(?:\x07|\x9c|\x1b\\|$)  # 8-bit OSC/DCS/SOS/PM/APC
    """,
    re.VERBOSE | re.DOTALL,
)
# Remaining C0 (but \t \n) and C1 controls, DEL. \r is dropped too: it would let a line overwrite itself.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_MARKUP = re.compile(r"(\\*)(\[[a-zA-Z@/#!$].*?\]|\[\])")


def neutralise(text: str) -> str:
    """Remove every terminal control sequence and control character except newline and tab, and every secret
    enginedeck has read (console/secrets.py: after the controls go, so none can split a key)."""
    if not text or text.isprintable():  # the common case, no regex: printable text holds no control at all
        return redact(text)
    return redact(_CONTROL.sub("", _ESCAPE_SEQ.sub("", text)))


def escape_markup(text: str) -> str:
    """Escape Rich/Textual markup so `[bold]x[/]` shows literally (same rule as rich.markup.escape)."""

    def repl(m: re.Match[str]) -> str:
        backslashes, tag = m.groups()
        return f"{backslashes}{backslashes}\\{tag}"

    out = _MARKUP.sub(repl, text)
    if out.endswith("\\") and not out.endswith("\\\\"):
        out += "\\"
    return out


def inert(text: str) -> str:
    """Both steps: safe to embed in a markup string shown on the terminal."""
    return escape_markup(neutralise(text))


def one_line(text: str, limit: int = 300) -> str:
    """An untrusted message squeezed to one neutralised line, for status bars and CLI errors."""
    flat = " ".join(neutralise(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
