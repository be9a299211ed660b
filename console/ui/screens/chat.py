"""Chat: several sessions open at once, a session list with search, compare mode, per-reply figures.

Each open session is a `ChatPane` in a ContentSwitcher; switching shows another pane and never stops a stream
(the stream's worker belongs to its pane). Saving is the Conversation service's job; if the history cannot be
written the warning bar says so and the chat goes on in memory.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Input, OptionList, Static
from textual.widgets.option_list import Option

from console.errors import EngineDeckError, StoreError
from console.logs.sanitize import neutralise, one_line
from console.ui.calm import QuietWhenHidden
from console.ui.focus import text_field_has_focus
from console.ui.widgets.bars import KeyBar, TitleBar
from console.ui.widgets.chat_message import MessageView, last_code_block
from console.ui.widgets.chat_pane import ChatPane, method_brief
from console.ui.widgets.dialogs import AskDialog, ChoiceDialog, ConfirmDialog
from console.ui.widgets.prompt import PromptArea

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from textual.worker import Worker

    from console.conversation import ChatParams, Conversation
    from console.engines.base import Engine
    from console.store.db import Store
    from console.store.sessions import SearchHit
    from console.telemetry.energy import EnergyMeter, Idle

PARAM_KEYS = ("temperature", "top_p", "max_tokens", "context_length", "keep_alive")
SESSIONS_LISTED = 200  # the list shows the newest sessions; search reaches every one
SEARCH_HITS = 50
OPEN_PANES = 8  # mounted at once; the least recently shown beyond this is unmounted (its session stays saved)


def parse_params(text: str) -> ChatParams:
    """`temperature=0.7 max_tokens=256` → ChatParams; a bad pair raises EngineDeckError naming it."""
    from console.conversation import ChatParams

    values: dict[str, Any] = {}  # each value converted to its field's type below
    for pair in text.split():
        key, sep, raw = pair.partition("=")
        key = key.replace("-", "_")
        if not sep or key not in PARAM_KEYS:
            raise EngineDeckError(f"unknown parameter {pair!r}", hint="use " + ", ".join(f"{k}=…" for k in PARAM_KEYS))
        try:
            values[key] = raw if key == "keep_alive" else (float(raw) if key in ("temperature", "top_p")
                                                          else int(raw))
        except ValueError:
            raise EngineDeckError(f"{key} wants a number, not {raw!r}") from None
    return ChatParams(**values)


def hit_text(hit: SearchHit) -> Text:
    """A search hit as one line: where it is, then the snippet with the matched words in bold."""
    text = Text(f"#{hit.session_id} {neutralise(hit.session_title)[:30]}: ", style="dim")
    pos = 0
    for start, end in hit.hits:
        text.append(neutralise(hit.snippet[pos:start]).replace("\n", " "))
        text.append(neutralise(hit.snippet[start:end]), style="bold reverse")
        pos = end
    text.append(neutralise(hit.snippet[pos:]).replace("\n", " "))
    return text


class ComparePane(Horizontal):
    """Two panes side by side; a prompt goes to both and both stream at once."""

    DEFAULT_CSS = "ComparePane { height: 1fr; } ComparePane > ChatPane { width: 1fr; }"

    def __init__(self, left: ChatPane, right: ChatPane, *, pane_id: str) -> None:
        super().__init__(left, right, id=pane_id)
        self.panes = (left, right)


class SessionList(OptionList):
    """The session list; its letter keys act on the highlighted session (the prompt keeps letters for text)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "screen.rename", "Rename", id="chat-rename"),
        Binding("a", "screen.archive", "Archive/unarchive", id="chat-archive"),
        Binding("x", "screen.delete", "Delete", id="chat-delete"),
        Binding("v", "screen.toggle_archived", "Show archived", id="chat-show-archived"),
    ]


class ChatScreen(QuietWhenHidden):
    TITLE = "Chat"
    AUTO_FOCUS = "#sessions"  # never the search field: a digit typed on arrival must switch screens
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "new_chat", "New chat", id="chat-new"),
        Binding("ctrl+o", "compare", "Compare", id="chat-compare",
                tooltip="The same prompt to two engine/model pairs, side by side"),
        # In the prompt or the search field, escape leaves the field instead (check_action, leave_field).
        Binding("escape", "stop", "Stop", id="chat-stop", tooltip="Stop the reply; what arrived is kept"),
        Binding("i", "write", "Write", id="chat-write", tooltip="Back to the prompt"),
        Binding("w", "close_chat", "Close chat", id="chat-close",
                tooltip="Close this chat; its session stays in the list"),
        Binding("ctrl+r", "regenerate", "Regenerate", id="chat-regenerate"),
        Binding("ctrl+g", "edit_last", "Edit last", id="chat-edit-last",
                tooltip="Put the last message back in the input; enter resends it"),
        Binding("f5", "params", "Parameters", id="chat-params"),
        Binding("f6", "system_prompt", "System prompt", show=False, id="chat-system"),
        Binding("f8", "energy", "Energy", id="chat-energy",
                tooltip="Joules per output token on each reply (NVML): the GPUs' idle power is measured first"),
        Binding("ctrl+y", "copy_message", "Copy reply", id="chat-copy"),
        Binding("ctrl+b", "copy_code", "Copy code", show=False, id="chat-copy-code"),
        Binding("ctrl+f", "search", "Search", id="chat-search"),
        Binding("ctrl+l", "sessions", "Sessions", id="chat-sessions"),
    ]
    HELP_WIDGETS: ClassVar[tuple[type[Widget], ...]] = (PromptArea, SessionList)
    DEFAULT_CSS = """
    ChatScreen #sidebar { width: 32; border-right: vkey $panel-lighten-2; }
    ChatScreen.-narrow #sidebar { width: 24; }
    ChatScreen #search { height: 3; }
    ChatScreen #sessions { height: 1fr; }
    ChatScreen #main { width: 1fr; }
    ChatScreen #panes { height: 1fr; }
    ChatScreen #empty { padding: 1 2; color: $text-muted; }
    ChatScreen #energy { height: 1; padding: 0 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._store: Store | None = None
        self._counter = 0
        self._open: dict[int, str] = {}  # session id -> pane id
        self._listing: list[int] = []  # the session each option of #sessions opens (a session or a hit in it)
        self._show_archived = False
        self._edit_pending: str | None = None
        self._search: Worker[None] | None = None
        self._recent: list[str] = []  # ids of the mounted panes, least recently shown first
        self._opening: set[int] = set()  # sessions being read back from the store (enter pressed twice)
        self._meter: EnergyMeter | None = None  # energy per token on (f8): every pane's conversation has it
        self._measuring_idle = False  # nothing may be sent while the idle power is measured

    def compose(self) -> ComposeResult:
        yield TitleBar()
        with Horizontal():
            with Vertical(id="sidebar"):
                yield Input(placeholder=f"search history ({self.key_of('chat-search')})", id="search")
                yield SessionList(id="sessions")
            with Vertical(id="main"):
                with ContentSwitcher(id="panes"):
                    yield Static(f"{self.key_of('chat-new')}: new chat · {self.key_of('chat-compare')}: compare two "
                                 "models · pick a session on the left", id="empty")
                yield PromptArea(placeholder=f"message ({self.key_of('prompt-send')} sends, "
                                 f"{self.key_of('prompt-newline')} starts a new line)", id="prompt")
                yield Static("", id="energy", classes="hidden")
        yield Static("", id="store-warning", classes="warning-bar hidden")
        yield KeyBar()

    def on_mount(self) -> None:
        self._open_store()

    # -- store and session list ----------------------------------------------------------------------
    @work(group="chat-store", exclusive=True, exit_on_error=False)
    async def _open_store(self) -> None:
        try:
            self._store = await self.ctx.store()
        except StoreError as exc:
            self._warn(f"history is off, chats stay in memory: {exc}")
            return
        self.reload_sessions()

    def _warn(self, text: str) -> None:
        bar = self.query_one("#store-warning", Static)
        bar.update(Text(one_line(text)))
        bar.remove_class("hidden")

    @work(group="chat-sessions", exclusive=True, exit_on_error=False)
    async def reload_sessions(self) -> None:
        if self._store is None:
            return
        try:
            sessions = await self._store.sessions.list(archived=self._show_archived, limit=SESSIONS_LISTED)
        except StoreError as exc:
            self._warn(str(exc))
            return
        options = self.query_one("#sessions", OptionList)
        was = options.highlighted
        options.clear_options()
        self._listing = [s.id for s in sessions]
        options.add_options([Option(Text(f"{'▸ ' if s.id in self._open else '  '}"
                                         f"{neutralise(s.title or 'untitled')[:40]}")) for s in sessions])
        if sessions:
            options.highlighted = min(was or 0, len(sessions) - 1)
        options.border_title = "archived" if self._show_archived else "sessions"

    @on(OptionList.OptionSelected, "#sessions")
    def _pick(self, event: OptionList.OptionSelected) -> None:
        self.open_session(self._listing[event.option_index])

    @work(group="chat-open", exit_on_error=False)
    async def open_session(self, session_id: int) -> None:
        if session_id in self._open:
            self._show(self._open[session_id])
            return
        if session_id in self._opening:
            return
        self._opening.add(session_id)
        try:
            await self._resume(session_id)
        finally:
            self._opening.discard(session_id)

    async def _resume(self, session_id: int) -> None:
        if self._store is None:
            return
        from console.conversation import Conversation

        try:
            conv = await Conversation.resume(self._store, session_id, read_only=self._read_only)
        except StoreError as exc:
            self.notify(one_line(str(exc)), title="Cannot open", severity="error", markup=False)
            return
        engine = await self._engine_named(conv.engine)
        pane = await self._add_pane(conv, engine)
        self._open[session_id] = pane.id or ""
        if engine is None:
            self.notify(f"engine {neutralise(conv.engine or '?')} is not available; the session is read-only "
                        f"until you pick another ({self.key_of('chat-new')})", severity="warning", markup=False)

    async def _engine_named(self, name: str | None) -> Engine | None:
        if not name:
            return None
        try:
            return await self.ctx.engine(name)
        except (EngineDeckError, StopIteration):
            return None

    async def _add_pane(self, conv: Conversation, engine: Engine | None) -> ChatPane:
        self._counter += 1
        pane = ChatPane(conv, engine, pane_id=f"pane-{self._counter}")
        await self._mount_pane(pane)
        return pane

    @property
    def _read_only(self) -> bool:
        """--read-only: a chat to a model that is not loaded is refused (Conversation.check_model)."""
        return self.deck.read_only

    async def _mount_pane(self, pane: ChatPane | ComparePane) -> None:
        for half in pane.panes if isinstance(pane, ComparePane) else (pane,):
            half.conversation.energy = self._meter
        await self.query_one("#panes", ContentSwitcher).mount(pane)
        self._show(pane.id or "")
        await self._unmount_beyond_bound()

    def _show(self, pane_id: str) -> None:
        """Show a pane (a compare pair's half shows the pair) and put the cursor in the prompt."""
        switcher = self.query_one("#panes", ContentSwitcher)
        widget = switcher.query_one(f"#{pane_id}")
        if isinstance(widget.parent, ComparePane):
            widget = widget.parent
        pane_id = widget.id or ""
        switcher.current = pane_id
        if pane_id in self._recent:
            self._recent.remove(pane_id)
        self._recent.append(pane_id)
        self.query_one("#prompt", PromptArea).focus()

    def _sessions_of(self, widget: ChatPane | ComparePane) -> set[int]:
        panes = widget.panes if isinstance(widget, ComparePane) else (widget,)
        return {p.conversation.session_id for p in panes if p.conversation.session_id is not None}

    async def _unmount_beyond_bound(self) -> None:
        """Keep at most OPEN_PANES mounted: the least recently shown goes first. A pane that is streaming or
        whose chat is not saved (history off) stays: unmounting it would lose the reply."""
        switcher = self.query_one("#panes", ContentSwitcher)
        for pane_id in list(self._recent):
            if len(self._recent) <= OPEN_PANES:
                return
            widget = switcher.query_one(f"#{pane_id}")
            if pane_id == switcher.current or not isinstance(widget, ChatPane | ComparePane) \
                    or not self._closable(widget):
                continue
            await self._unmount(widget)

    def _closable(self, widget: ChatPane | ComparePane) -> bool:
        panes = widget.panes if isinstance(widget, ComparePane) else (widget,)
        return not any(p.streaming for p in panes) and all(
            p.conversation.session_id is not None or not p.conversation.entries for p in panes)

    async def _unmount(self, widget: ChatPane | ComparePane) -> None:
        for session_id in self._sessions_of(widget):
            self._open.pop(session_id, None)
        if widget.id in self._recent:
            self._recent.remove(widget.id or "")
        await widget.remove()

    def action_close_chat(self) -> None:
        self._close_chat()

    @work(group="chat-close", exclusive=True, exit_on_error=False)
    async def _close_chat(self) -> None:
        current = self.current
        if current is None:
            self.notify("no chat is open", severity="warning", markup=False)
            return
        panes = current.panes if isinstance(current, ComparePane) else (current,)
        if any(p.streaming for p in panes):
            self.notify("a reply is still streaming: esc stops it, then w closes the chat", severity="warning",
                        markup=False)
            return
        if not self._closable(current) and not await self.app.push_screen_wait(ConfirmDialog(
                "Close this chat?", "History is off, so it was not saved.", warning="It will be gone.")):
            return
        await self._unmount(current)
        switcher = self.query_one("#panes", ContentSwitcher)
        if self._recent:
            self._show(self._recent[-1])
        else:
            switcher.current = "empty"
            self.query_one("#sessions", SessionList).focus()
        self.reload_sessions()

    @property
    def current(self) -> ChatPane | ComparePane | None:
        switcher = self.query_one("#panes", ContentSwitcher)
        widget = switcher.get_child_by_id(switcher.current) if switcher.current else None
        return widget if isinstance(widget, ChatPane | ComparePane) else None

    def _panes(self) -> tuple[ChatPane, ...]:
        current = self.current
        if isinstance(current, ComparePane):
            return current.panes
        return (current,) if current is not None else ()

    # -- new chat, compare ---------------------------------------------------------------------------
    async def _pick_model(self, title: str) -> tuple[Engine, str] | None:
        registry = self.ctx.registry()
        engines = [e.engine for e in registry.entries if e.engine is not None]
        if not engines:
            self.notify("no engine found: add one to the config or start one on its default port",
                        severity="warning", markup=False)
            return None
        choices: list[tuple[str, str]] = []
        for engine in engines:
            try:
                models = await engine.list_models()
            except EngineDeckError:
                continue
            choices += [(f"{engine.name}\x00{m.name}", f"{engine.name} · {m.name}") for m in models]
        if not choices:
            self.notify("no engine listed any model", severity="warning", markup=False)
            return None
        picked = await self.app.push_screen_wait(ChoiceDialog(title, choices))
        if picked is None:
            return None
        name, _, model = picked.partition("\x00")
        return next(e for e in engines if e.name == name), model

    def action_new_chat(self) -> None:
        self._new_chat()

    @work(group="chat-dialog", exclusive=True, exit_on_error=False)
    async def _new_chat(self) -> None:
        from console.conversation import Conversation

        picked = await self._pick_model("Chat with…")
        if picked is None:
            return
        engine, model = picked
        await self._add_pane(Conversation(self._store, model=model, engine=engine.name, read_only=self._read_only),
                             engine)

    def action_compare(self) -> None:
        self._compare()

    @work(group="chat-dialog", exclusive=True, exit_on_error=False)
    async def _compare(self) -> None:
        from console.conversation import Conversation

        first = await self._pick_model("Compare: first engine · model")
        if first is None:
            return
        second = await self._pick_model("Compare: second engine · model")
        if second is None:
            return
        self._counter += 1
        n = self._counter
        left, right = (ChatPane(Conversation(self._store, model=m, engine=e.name, read_only=self._read_only), e,
                                pane_id=f"pane-{n}-{side}")
                       for side, (e, m) in (("a", first), ("b", second)))
        await self._mount_pane(ComparePane(left, right, pane_id=f"pane-{n}"))

    # -- sending -------------------------------------------------------------------------------------
    @on(PromptArea.Submitted, "#prompt")
    def _submit(self, event: PromptArea.Submitted) -> None:
        prompt = event.text
        if not prompt.strip():
            return
        panes = self._panes()
        if not panes:
            self.notify(f"start a chat first ({self.key_of('chat-new')})", severity="warning", markup=False)
            return
        if any(p.streaming for p in panes):
            self.notify("a reply is still streaming (esc leaves the prompt, esc again stops it)",
                        severity="warning", markup=False)
            return
        if self._refuse_while_measuring():
            return
        if any(p.engine is None for p in panes):
            self.notify(f"this session's engine is not available; start a new chat ({self.key_of('chat-new')})",
                        severity="warning", markup=False)
            return
        edit, self._edit_pending = self._edit_pending, None
        for pane in panes:
            pane.edit_last(prompt) if edit is not None else pane.send(prompt)
        event.prompt.clear()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Escape in a field leaves it (the app's on_key, which calls leave_field below), and never stops.
        return not (action == "stop" and text_field_has_focus(self))

    def leave_field(self) -> None:
        """Escape in the prompt or the search field: out of the field (a search running from it stops, an edit
        of the last message is cancelled), to the conversation, or to the session list when no chat is open."""
        search = self.query_one("#search", Input)
        if self.focused is search:
            self._stop_search()
        if self.focused is self.query_one("#prompt", PromptArea) and self._edit_pending is not None:
            self._edit_pending = None
            self.query_one("#prompt", PromptArea).clear()
        current = self.current
        if current is not None and self.focused is not search:
            pane = current.panes[0] if isinstance(current, ComparePane) else current
            pane.query_one(".log").focus()
        else:
            self.query_one("#sessions", SessionList).focus()

    def action_write(self) -> None:
        self.query_one("#prompt", PromptArea).focus()

    def _stop_search(self) -> bool:
        if self._search is not None and self._search.is_running:
            self._search.cancel()  # the store's read stops at its next progress check
            self.query_one("#sessions", OptionList).border_title = "search stopped"
            return True
        return False

    def action_stop(self) -> None:
        if not self._stop_search():
            for pane in self._panes():
                pane.stop()

    def action_regenerate(self) -> None:
        if self._refuse_while_measuring():
            return
        for pane in self._panes():
            if pane.conversation.entries and not pane.regenerate():
                self.notify("wait for the reply to end (esc, then esc again, stops it)", severity="warning",
                            markup=False)

    def action_edit_last(self) -> None:
        panes = self._panes()
        users = [e for e in panes[0].conversation.entries if e.role == "user"] if panes else []
        if not users:
            return
        self._edit_pending = users[-1].content
        prompt = self.query_one("#prompt", PromptArea)
        prompt.set_text(users[-1].content)
        prompt.focus()
        self.notify("edit the message, enter resends it (esc cancels)", markup=False)

    def on_chat_pane_turn_ended(self, message: ChatPane.TurnEnded) -> None:
        conv = message.pane.conversation
        if conv.session_id is not None and conv.session_id not in self._open and message.pane.is_attached:
            self._open[conv.session_id] = message.pane.id or ""
        self.reload_sessions()

    def on_chat_pane_store_trouble(self, message: ChatPane.StoreTrouble) -> None:
        self._warn(f"{message.warning} · the chat goes on in memory")

    # -- settings ------------------------------------------------------------------------------------
    def action_params(self) -> None:
        self._edit_params()

    @work(group="chat-dialog", exclusive=True, exit_on_error=False)
    async def _edit_params(self) -> None:
        panes = self._panes()
        if not panes:
            return
        now = " ".join(f"{k}={v}" for k, v in panes[0].conversation.params.as_dict().items())
        text = await self.app.push_screen_wait(AskDialog(
            "Parameters", value=now, hint="temperature=0.7 top_p=0.9 max_tokens=512 context_length=8192 "
                                          "keep_alive=5m (empty: engine defaults)"))
        if text is None:
            return
        try:
            params = parse_params(text)
        except EngineDeckError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        for pane in panes:
            pane.conversation.params = params
            pane.refresh_title()

    def action_system_prompt(self) -> None:
        self._edit_system()

    @work(group="chat-dialog", exclusive=True, exit_on_error=False)
    async def _edit_system(self) -> None:
        panes = self._panes()
        if not panes:
            return
        text = await self.app.push_screen_wait(AskDialog(
            "System prompt", value=panes[0].conversation.system_prompt or "", hint="empty: none"))
        if text is None:
            return
        for pane in panes:
            pane.conversation.system_prompt = text or None
            pane.refresh_title()

    # -- energy per token ----------------------------------------------------------------------------
    # The same meter as `enginedeck chat --energy` (console/telemetry/energy.py) over the app's GpuMonitor: the idle
    # power is measured here, off the event loop, before the first turn; each turn then reads the GPUs' energy
    # around its request and saves the reading with its reply (Turn._finish).
    def action_energy(self) -> None:
        if self._measuring_idle:  # pressed again while measuring: never mind
            self.workers.cancel_group(self, "chat-energy")
            self._measuring_idle = False
            self._energy_line(None)
            return
        if self._meter is not None:
            self._set_meter(None)
            self._energy_line(None)
            self.notify("energy per token is off", markup=False)
            return
        if any(p.streaming for p in self.query(ChatPane)):
            self.notify("a reply is streaming: the idle power is measured with nothing sent; press "
                        f"{self.key_of('chat-energy')} when it has ended", severity="warning", markup=False)
            return
        self._measuring_idle = True
        self._energy_line("energy: measuring the GPUs' idle power (2 s, nothing is sent meanwhile)…")
        self._energy_on()

    @work(group="chat-energy", exclusive=True, exit_on_error=False)
    async def _energy_on(self) -> None:
        from console.telemetry.energy import EnergyError

        try:
            meter, idle = await asyncio.to_thread(self._idle_meter)
        except EnergyError as exc:
            self._energy_line(f"energy per token is unavailable here: {exc} (NVML); chats go on without it")
            self.notify(f"energy per token needs an NVIDIA GPU readable through NVML: {exc}", markup=False)
            return
        finally:
            self._measuring_idle = False
        self._set_meter(meter)
        self._energy_line(f"energy: on · idle {idle.watts:.0f} W ({method_brief(idle.method)}), subtracted · "
                          f"J/token on each reply · {self.key_of('chat-energy')} turns it off")

    def _idle_meter(self) -> tuple[EnergyMeter, Idle]:
        """In a thread: NVML is blocking, and the idle window is seconds long."""
        from console.telemetry.energy import EnergyMeter

        meter = EnergyMeter(self.deck.gpu_monitor)
        return meter, meter.measure_idle()

    def _set_meter(self, meter: EnergyMeter | None) -> None:
        self._meter = meter
        for pane in self.query(ChatPane):
            pane.conversation.energy = meter

    def _energy_line(self, text: str | None) -> None:
        line = self.query_one("#energy", Static)
        line.update(Text(text or ""))
        line.set_class(text is None, "hidden")

    def _refuse_while_measuring(self) -> bool:
        if self._measuring_idle:
            self.notify("the GPUs' idle power is being measured (2 s): send in a moment", severity="warning",
                        markup=False)
        return self._measuring_idle

    # -- copy ----------------------------------------------------------------------------------------
    def _message_to_copy(self) -> MessageView | None:
        focused = self.focused
        if isinstance(focused, MessageView):
            return focused
        panes = self._panes()
        views = [v for v in panes[0].views() if v.role == "assistant"] if panes else []
        return views[-1] if views else None

    def action_copy_message(self) -> None:
        view = self._message_to_copy()
        if view is not None:
            # The source text, not the rendering: no borders or box characters end up in the clipboard.
            self.app.copy_to_clipboard(neutralise(view.content))
            self.notify(f"copied {len(view.content)} characters", markup=False)

    def action_copy_code(self) -> None:
        view = self._message_to_copy()
        block = last_code_block(view.content) if view is not None else None
        if block is None:
            self.notify("no code block in this message", severity="warning", markup=False)
            return
        self.app.copy_to_clipboard(neutralise(block))
        self.notify(f"copied a code block ({len(block.splitlines())} lines)", markup=False)

    # -- search --------------------------------------------------------------------------------------
    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_sessions(self) -> None:
        self.query_one("#search", Input).value = ""
        self.reload_sessions()
        self.query_one("#sessions", OptionList).focus()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self._search = self.run_search(event.value)
        else:
            self.reload_sessions()

    @work(group="chat-sessions", exclusive=True, exit_on_error=False)
    async def run_search(self, query: str) -> None:
        if self._store is None:
            self.notify("history is off: nothing to search", severity="warning", markup=False)
            return
        options = self.query_one("#sessions", OptionList)
        options.border_title = "searching… (esc stops)"
        try:
            hits = await self._store.sessions.search(query, limit=SEARCH_HITS)
        except StoreError as exc:
            options.border_title = "search failed"
            self.notify(one_line(str(exc)), severity="error", markup=False)
            return
        options.clear_options()
        self._listing = [h.session_id for h in hits]
        options.add_options([Option(hit_text(h)) for h in hits])
        options.highlighted = 0 if hits else None
        options.border_title = f"{len(hits)} hit{'' if len(hits) == 1 else 's'}" + (
            "" if hits.complete else " (stopped: time limit)")
        if not hits.complete:
            self.notify(f"the search stopped at its time limit with {len(hits)} hits: narrow the query",
                        severity="warning", markup=False)
        elif not hits:
            self.notify(f"no message matches {one_line(query, 40)}", markup=False)
        options.focus()

    # -- session list actions ------------------------------------------------------------------------
    def _selected_session(self) -> int | None:
        options = self.query_one("#sessions", OptionList)
        index = options.highlighted
        if index is None or index >= len(self._listing):
            return None
        return self._listing[index]

    def action_rename(self) -> None:
        self._rename()

    @work(group="chat-dialog", exclusive=True, exit_on_error=False)
    async def _rename(self) -> None:
        session_id = self._selected_session()
        if session_id is None or self._store is None:
            return
        title = await self.app.push_screen_wait(AskDialog("Rename session"))
        if title:
            await self._session_op(self._store.sessions.rename(session_id, title))

    def action_archive(self) -> None:
        session_id = self._selected_session()
        if session_id is not None and self._store is not None:
            self._run_op(self._store.sessions.set_archived(session_id, not self._show_archived))

    def action_toggle_archived(self) -> None:
        self._show_archived = not self._show_archived
        self.reload_sessions()

    def action_delete(self) -> None:
        self._delete()

    @work(group="chat-dialog", exclusive=True, exit_on_error=False)
    async def _delete(self) -> None:
        session_id = self._selected_session()
        if session_id is None or self._store is None:
            return
        if await self.app.push_screen_wait(ConfirmDialog(
                f"Delete session {session_id}?", "Its messages go too.", warning="This cannot be undone.")):
            await self._session_op(self._store.sessions.delete(session_id))

    @work(group="chat-op", exit_on_error=False)
    async def _run_op(self, op: Awaitable[object]) -> None:
        await self._session_op(op)

    async def _session_op(self, op: Awaitable[object]) -> None:
        try:
            await op
        except StoreError as exc:
            self.notify(one_line(str(exc)), severity="error", markup=False)
        self.reload_sessions()
