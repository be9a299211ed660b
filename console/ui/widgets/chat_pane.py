"""A chat pane: one Conversation, its messages, and the worker that streams its current turn.

The turn worker belongs to the pane (group "turn"), so hiding the pane (switching session) never interrupts
it, and stopping cancels exactly this pane's stream. The Conversation service does the saving; the pane only
renders what the turn yields.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Static

from console.engines.base import EventKind
from console.logs.sanitize import neutralise
from console.present.format import elide_middle
from console.telemetry.energy import COUNTER
from console.ui.widgets.chat_message import MessageView

if TYPE_CHECKING:
    from console.conversation import Conversation, Entry, Figures, Turn
    from console.engines.base import Engine


ENGINE_WIDTH, MODEL_WIDTH = 16, 28  # names elided in the middle beyond this: one line even in a compare half


def reply_label(model: str, engine: str | None) -> str:
    label = f"assistant · {elide_middle(model, MODEL_WIDTH)}"
    return label + (f" on {elide_middle(engine, ENGINE_WIDTH)}" if engine else "")


def method_brief(method: str) -> str:
    return "counter" if method == COUNTER else "sampled power"


def figures_line(figures: Figures) -> str:
    """The reply's figures; with an energy reading, joules per output token and the idle power subtracted."""
    line = figures.describe()
    e = figures.energy
    if e is None:
        return line
    per_token = f"{e.j_per_token:.3f} J/token" if e.j_per_token is not None else "J/token: no token count"
    return f"{line} · {per_token} (idle {e.idle_w:.0f} W, {method_brief(e.method)})"


def label_for(entry: Entry) -> str:
    if entry.role == "assistant" and entry.model:
        return reply_label(entry.model, entry.engine)
    return entry.role


class ChatPane(Vertical):
    DEFAULT_CSS = """
    ChatPane { height: 1fr; }
    ChatPane .pane-title { height: 1; background: $panel; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    ChatPane .log { height: 1fr; }
    """

    class TurnEnded(Message):
        """A turn finished (any status): the session list may have a new title or order."""

        def __init__(self, pane: ChatPane) -> None:
            super().__init__()
            self.pane = pane

    class StoreTrouble(Message):
        """The history could not be written; the chat goes on in memory."""

        def __init__(self, warning: str) -> None:
            super().__init__()
            self.warning = warning

    def __init__(self, conversation: Conversation, engine: Engine | None, *, pane_id: str) -> None:
        super().__init__(id=pane_id)
        self.conversation = conversation
        self.engine = engine
        self.turn: Turn | None = None

    def compose(self) -> ComposeResult:
        yield Static(self._title(), classes="pane-title")
        with VerticalScroll(classes="log"):
            for entry in self.conversation.entries:
                yield MessageView(entry.role, entry.content, reasoning=entry.reasoning, label=label_for(entry),
                                  figures=figures_line(entry.figures) if entry.role == "assistant" else "",
                                  status=entry.status, error=entry.error)

    def on_mount(self) -> None:
        self.query_one(".log", VerticalScroll).anchor()

    def _title(self) -> Text:
        c = self.conversation
        engine = self.engine.name if self.engine else (c.engine or "no engine")
        params = " ".join(f"{k}={v}" for k, v in c.params.as_dict().items()) or "default parameters"
        system = " · system prompt" if c.system_prompt else ""
        # Names elided in the middle, so both names show at 80 columns; what does not fit ends in an ellipsis.
        return Text(neutralise(f"{elide_middle(engine, ENGINE_WIDTH)} · {elide_middle(c.model, MODEL_WIDTH)} · "
                               f"{params}{system}"))

    def refresh_title(self) -> None:
        self.query_one(".pane-title", Static).update(self._title())

    @property
    def streaming(self) -> bool:
        return self.turn is not None

    def views(self) -> list[MessageView]:
        return list(self.query(MessageView))

    # -- turns ---------------------------------------------------------------------------------------
    def send(self, prompt: str) -> bool:
        if self.streaming or self.engine is None:
            return False
        self._start(self.conversation.send(self.engine, prompt), drop_from=None, user_text=prompt)
        return True

    def regenerate(self) -> bool:
        if self.streaming or self.engine is None:
            return False
        last = self._last_user_view()
        self._start(self.conversation.regenerate(self.engine), drop_from=last + 1, user_text=None)
        return True

    def edit_last(self, prompt: str) -> bool:
        if self.streaming or self.engine is None:
            return False
        self._start(self.conversation.edit_last(self.engine, prompt), drop_from=self._last_user_view(),
                    user_text=prompt)
        return True

    def stop(self) -> None:
        self.workers.cancel_group(self, "turn")

    def _last_user_view(self) -> int:
        roles = [v.role for v in self.views()]
        return len(roles) - 1 - roles[::-1].index("user")

    def _start(self, turn: Turn, *, drop_from: int | None, user_text: str | None) -> None:
        self.turn = turn
        self.run_worker(self._run(turn, drop_from, user_text), name=f"turn-{self.id}", group="turn",
                        exclusive=True, exit_on_error=False)

    async def _run(self, turn: Turn, drop_from: int | None, user_text: str | None) -> None:
        log = self.query_one(".log", VerticalScroll)
        if drop_from is not None:
            for view in self.views()[drop_from:]:
                await view.remove()
        if user_text is not None:
            await log.mount(MessageView("user", user_text))
        view = MessageView("assistant", label=reply_label(self.conversation.model, turn.engine.name),
                           status="partial")
        await log.mount(view)
        warned = self.conversation.store_warning
        status_error: str | None = None
        # aclosing: when this worker is cancelled while awaiting the view, the turn still hears of it
        # (GeneratorExit) and saves the reply as cancelled.
        events = aiter(turn)
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    if event.kind is EventKind.CONTENT:
                        await view.append(event.text)
                    elif event.kind is EventKind.REASONING:
                        view.append_reasoning(event.text)
                    if turn.store_warning and turn.store_warning != warned:
                        warned = turn.store_warning
                        self.post_message(self.StoreTrouble(warned))
        except Exception as exc:  # a bug in a turn shows on its message instead of taking the app down
            status_error = f"{type(exc).__name__}: {exc}"
        finally:
            await view.finish(content=turn.content, figures=figures_line(turn.figures),
                              status="error" if status_error else turn.status, error=status_error or turn.error)
            if turn.store_warning and turn.store_warning != warned:
                self.post_message(self.StoreTrouble(turn.store_warning))
            self.turn = None
            self.post_message(self.TurnEnded(self))
