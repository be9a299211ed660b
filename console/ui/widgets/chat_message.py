"""One message of a chat: who said it, its reasoning (apart, collapsible), the Markdown body, the figures row.

Model output is untrusted: every piece of text is neutralised before a widget sees it, and nothing here is
parsed as Rich/Textual markup (labels are `Text`, a reply's body is Markdown, which has no markup, a user
message's body is plain `Text` with its lines kept).

While a reply streams, the body is fed through `MarkdownStream`, which batches writes so the UI keeps up with
fast engines; when it ends the body gets one full `update()`, because the incremental parser can leave stale
block state (a code fence opened in one chunk and closed in another).
"""

from __future__ import annotations

import re
import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Collapsible, Markdown, Static
from textual.widgets.markdown import MarkdownStream

from console.logs.sanitize import neutralise

STATUS_WORDS = {"complete": "", "partial": "streaming…", "cancelled": "stopped", "error": "error"}
# While streaming, text reaches the widgets at most this often: each Markdown append costs a layout pass over
# the whole message, so batching keeps a 1000+ tok/s stream from starving the event loop (bench/stream_render.py).
STREAM_REFRESH_S = 0.1
_FENCE = re.compile(r"^(`{3,}|~{3,})[^\n]*\n(.*?)^\1[ \t]*$", re.MULTILINE | re.DOTALL)


def last_code_block(markdown: str) -> str | None:
    """The text inside the last fenced code block, without the fences (what a person wants to paste)."""
    blocks = _FENCE.findall(markdown)
    return blocks[-1][1] if blocks else None


class MessageView(Vertical, can_focus=True):
    DEFAULT_CSS = """
    MessageView { height: auto; padding: 0 1; margin: 0 0 1 0; }
    MessageView:focus { background: $boost; }
    MessageView .role { color: $text-muted; text-style: bold; }
    MessageView.-user .role { color: $primary; }
    MessageView Markdown { margin: 0; padding: 0; }
    MessageView .figures { color: $text-muted; }
    MessageView.-error .figures, MessageView .error { color: $error; }
    MessageView.-cancelled .figures { color: $warning; }
    MessageView Collapsible { padding: 0; margin: 0; border: none; }
    """

    def __init__(self, role: str, content: str = "", *, reasoning: str = "", label: str = "",
                 figures: str = "", status: str = "complete", error: str | None = None) -> None:
        super().__init__(classes=f"-{role}")
        self.role = role
        self.content = content  # raw, as the engine sent it (copy neutralises)
        self.reasoning = reasoning
        self._label = label or role
        self._figures = figures
        self._status = status
        self._error = error
        self._stream: MarkdownStream | None = None
        self._unsent = ""  # content received but not yet written to the Markdown stream
        self._content_drawn_at = 0.0
        self._reasoning_drawn_at = 0.0

    def compose(self) -> ComposeResult:
        yield Static(Text(neutralise(self._label)), classes="role")
        collapsible = Collapsible(Static(Text(neutralise(self.reasoning)), classes="reasoning-text"),
                                  title="reasoning", collapsed=True, classes="reasoning")
        collapsible.display = bool(self.reasoning)
        yield collapsible
        if self.role == "user":
            # What the person typed, as typed: Markdown would join a pasted stack trace's lines and drop its
            # `<module>` as an HTML tag.
            yield Static(Text(neutralise(self.content)), classes="body")
        else:
            yield Markdown(neutralise(self.content), classes="body")
        yield Static(self._figures_text(), classes="figures")

    def on_mount(self) -> None:
        self.set_class(True, f"-{self._status}")

    def _figures_text(self) -> Text:
        if self.role != "assistant":
            return Text("")
        word = STATUS_WORDS.get(self._status, self._status)
        line = self._figures + (f" · {word}" if word and self._figures else word)
        if self._error:
            line += f"\n{neutralise(self._error)}"
        return Text(line)

    async def append(self, text: str) -> None:
        """A content delta of a streaming reply."""
        self.content += text
        self._unsent += text
        now = time.monotonic()
        if now - self._content_drawn_at < STREAM_REFRESH_S:
            return
        self._content_drawn_at = now
        if self._stream is None:
            self._stream = Markdown.get_stream(self.query_one(".body", Markdown))
        # Neutralised per batch: a control sequence split across two batches leaves only inert characters.
        await self._stream.write(neutralise(self._unsent))
        self._unsent = ""

    def append_reasoning(self, text: str) -> None:
        self.reasoning += text
        now = time.monotonic()
        if now - self._reasoning_drawn_at >= STREAM_REFRESH_S:
            self._draw_reasoning()
            self._reasoning_drawn_at = now

    def _draw_reasoning(self) -> None:
        box = self.query_one(".reasoning", Collapsible)
        box.display = bool(self.reasoning)
        box.query_one(".reasoning-text", Static).update(Text(neutralise(self.reasoning)))

    async def finish(self, *, content: str, figures: str, status: str, error: str | None) -> None:
        """The reply ended (complete, stopped or error): one full render of the final text and the figures."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self._unsent = ""
        self.content = content
        self._draw_reasoning()
        await self.query_one(".body", Markdown).update(neutralise(content))
        self.set_status(status, figures=figures, error=error)

    def set_status(self, status: str, *, figures: str | None = None, error: str | None = None) -> None:
        self.remove_class(f"-{self._status}")
        self._status, self._error = status, error
        if figures is not None:
            self._figures = figures
        self.add_class(f"-{status}")
        self.query_one(".figures", Static).update(self._figures_text())

    @property
    def status(self) -> str:
        return self._status
