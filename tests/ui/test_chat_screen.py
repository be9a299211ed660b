"""The chat screen against the Ollama contract server (real adapter, real store): stream, figures, stop, error,
hostile text, store trouble, search, resume, compare, copy, and the multi-line prompt (newline keys, bracketed
paste, its height bound)."""

from __future__ import annotations

import asyncio

import pytest
from textual import events
from textual.widgets import Input, OptionList, Static

from console.config import EngineConfig
from console.engines.base import EventKind
from console.engines.llamacpp import LlamaCppEngine
from console.ui.app import EngineDeckApp
from console.ui.screens.chat import ChatScreen, ComparePane, parse_params
from console.ui.widgets.chat_message import MessageView, last_code_block
from console.ui.widgets.chat_pane import ChatPane
from console.ui.widgets.prompt import PromptArea
from tests.fakes.ollama_server import HOSTILE_REPLY, Scenario, ollama_contract_server
from tests.ui.fixtures import TestContext, make_config, screen_text, settle

SKY = "The sky looks blue because air scatters short wavelengths more than long ones."


@pytest.fixture
def fake():
    with ollama_contract_server() as server:
        yield server


def app_for(tmp_path, fake) -> EngineDeckApp:
    config = make_config(tmp_path, engines=[EngineConfig(name="fake", url=fake.url, kind="ollama")])
    return EngineDeckApp(TestContext(config))


async def choose(pilot, label: str) -> None:
    options = pilot.app.screen.query_one(OptionList)
    labels = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
    options.highlighted = labels.index(label)
    await pilot.press("enter")


async def open_chat(pilot) -> ChatScreen:
    await settle(pilot)
    await pilot.press("3")
    await settle(pilot, until=lambda: isinstance(pilot.app.screen, ChatScreen))
    return pilot.app.screen


async def new_chat(pilot, model: str) -> ChatPane:
    await pilot.press("ctrl+n")
    await settle(pilot, until=lambda: pilot.app.screen.query(OptionList) and not isinstance(pilot.app.screen,
                                                                                              ChatScreen))
    await choose(pilot, f"fake · {model}")
    await settle(pilot, until=lambda: isinstance(pilot.app.screen, ChatScreen) and pilot.app.screen.current)
    return pilot.app.screen.current


async def new_chat_prompt(pilot) -> tuple[ChatPane, PromptArea]:
    """A new chat on the contract server's small model, and the prompt."""
    screen = await open_chat(pilot)
    pane = await new_chat(pilot, "llama3.2:1b")
    return pane, screen.query_one("#prompt", PromptArea)


async def send(pilot, text: str) -> None:
    prompt = pilot.app.screen.query_one("#prompt", PromptArea)
    prompt.focus()
    prompt.text = text
    await pilot.press("enter")


def replies(pane: ChatPane) -> list[MessageView]:
    return [v for v in pane.views() if v.role == "assistant"]


def done(pane: ChatPane) -> bool:
    return not pane.streaming and bool(replies(pane)) and replies(pane)[-1].status != "partial"


async def test_stream_a_reply_with_figures_and_save_it(tmp_path, fake):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot)
        pane = await new_chat(pilot, "llama3.2:1b")
        await send(pilot, "why is the sky blue?")
        await settle(pilot, until=lambda: done(pane))
        reply = replies(pane)[-1]
        assert reply.status == "complete" and reply.content == SKY
        figures = str(reply.query_one(".figures", Static).render())
        assert "TTFT" in figures and "tokens (ollama eval_count)" in figures and "tok/s" in figures
        assert screen.query_one("#prompt", PromptArea).text == ""
        # Saved, and the session list shows it.
        store = await app.ctx.store()
        (session,) = await store.sessions.list()
        assert [m.content for m in await store.sessions.messages(session.id)] == ["why is the sky blue?", SKY]
        await settle(pilot, until=lambda: screen.query_one("#sessions", OptionList).option_count == 1)

        # Regenerate replaces the reply; edit-and-resend replaces the question.
        await pilot.press("ctrl+r")
        await settle(pilot, until=lambda: done(pane))
        assert [v.role for v in pane.views()] == ["user", "assistant"]
        await pilot.press("ctrl+g")
        assert screen.query_one("#prompt", PromptArea).text == "why is the sky blue?"
        await send(pilot, "and at sunset?")
        await settle(pilot, until=lambda: done(pane) and len(pane.views()) == 2)
        assert [m.content for m in await store.sessions.messages(session.id)] == ["and at sunset?", SKY]


async def test_stop_keeps_the_partial_reply_marked_stopped(tmp_path, fake):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_chat(pilot)
        pane = await new_chat(pilot, "slowpoke:latest")
        await send(pilot, "go")
        await settle(pilot, until=lambda: replies(pane) and len(replies(pane)[-1].content) > 10)
        await pilot.press("escape")  # the first leaves the prompt; the reply goes on
        assert not isinstance(app.focused, PromptArea) and pane.streaming
        await pilot.press("escape")
        await settle(pilot, until=lambda: done(pane))
        reply = replies(pane)[-1]
        assert reply.status == "cancelled" and 10 < len(reply.content) < len(SKY)
        assert "stopped" in str(reply.query_one(".figures", Static).render())
        store = await app.ctx.store()
        saved = (await store.sessions.messages(1))[-1]
        assert (saved.status, saved.content) == ("cancelled", reply.content)


async def test_engine_error_mid_stream_keeps_partial_text(tmp_path, fake):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_chat(pilot)
        pane = await new_chat(pilot, "llama3.2:1b")
        fake.queue(Scenario(error_after=3))
        await send(pilot, "q")
        await settle(pilot, until=lambda: done(pane))
        reply = replies(pane)[-1]
        assert reply.status == "error" and reply.content and SKY.startswith(reply.content)
        assert "error was encountered" in str(reply.query_one(".figures", Static).render())


async def test_hostile_output_is_shown_literally(tmp_path, fake):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_chat(pilot)
        pane = await new_chat(pilot, "hostile:latest")
        await send(pilot, "q")
        await settle(pilot, until=lambda: done(pane))
        reply = replies(pane)[-1]
        assert reply.content == HOSTILE_REPLY  # kept exactly in memory and in the store
        shown = screen_text(app)
        assert "[bold]bold[/]" in shown and "\x1b" not in shown and "\x07" not in shown
        copied = []
        app.copy_to_clipboard = copied.append
        await pilot.press("ctrl+y")
        assert copied and "\x1b" not in copied[0] and "\x07" not in copied[0] and "[bold]" in copied[0]


async def test_read_only_store_shows_a_warning_and_chat_goes_on(tmp_path, fake):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot)
        pane = await new_chat(pilot, "llama3.2:1b")
        store = await app.ctx.store()
        await store.db.execute("PRAGMA query_only = ON")
        await send(pilot, "q")
        await settle(pilot, until=lambda: done(pane))
        assert replies(pane)[-1].content == SKY
        bar = screen.query_one("#store-warning", Static)
        assert not bar.has_class("hidden") and "read-only" in str(bar.render())
        await store.db.execute("PRAGMA query_only = OFF")


async def test_search_and_resume_in_a_new_app(tmp_path, fake):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_chat(pilot)
        pane = await new_chat(pilot, "llama3.2:1b")
        await send(pilot, "tell me about zebras")
        await settle(pilot, until=lambda: done(pane))

    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot)
        search = screen.query_one("#search", Input)
        search.focus()
        search.value = "wavelengths"
        await pilot.press("enter")
        options = screen.query_one("#sessions", OptionList)
        await settle(pilot, until=lambda: options.option_count == 1)
        assert "wavelengths" in str(options.get_option_at_index(0).prompt)
        await pilot.press("enter")
        await settle(pilot, until=lambda: screen.current is not None)
        pane = screen.current
        assert [v.content for v in pane.views()] == ["tell me about zebras", SKY]
        await send(pilot, "more")
        await settle(pilot, until=lambda: done(pane) and len(pane.views()) == 4)
        store = await app.ctx.store()
        assert len(await store.sessions.messages(1)) == 4


async def test_compare_streams_two_models_side_by_side(tmp_path, fake):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_chat(pilot)
        await pilot.press("ctrl+o")
        await settle(pilot, until=lambda: not isinstance(pilot.app.screen, ChatScreen))
        await choose(pilot, "fake · llama3.2:1b")
        await settle(pilot, until=lambda: not isinstance(pilot.app.screen, ChatScreen)
                     and pilot.app.screen.query(OptionList))
        await pilot.pause()
        await choose(pilot, "fake · qwen3:4b")
        await settle(pilot, until=lambda: isinstance(screen.current, ComparePane))
        left, right = screen.current.panes
        await send(pilot, "why is the sky blue?")
        await settle(pilot, until=lambda: done(left) and done(right))
        assert replies(left)[-1].content == SKY and replies(right)[-1].content
        assert replies(right)[-1].reasoning  # qwen3 thinks, shown apart
        for pane in (left, right):
            assert "TTFT" in str(replies(pane)[-1].query_one(".figures", Static).render())


def test_last_code_block_and_params():
    text = "intro\n```python\nprint('a')\n```\nmid\n~~~\nls -l\n~~~\n"
    assert last_code_block(text) == "ls -l\n"
    assert last_code_block("no code") is None
    p = parse_params("temperature=0.5 max_tokens=20 keep_alive=5m")
    assert p.as_dict() == {"temperature": 0.5, "max_tokens": 20, "keep_alive": "5m"}
    with pytest.raises(Exception, match="unknown parameter"):
        parse_params("colour=red")


async def test_switching_sessions_never_interrupts_a_stream(tmp_path, fake):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot)
        slow = await new_chat(pilot, "slowpoke:latest")
        await send(pilot, "slow one")
        await settle(pilot, until=lambda: replies(slow) and replies(slow)[-1].content)
        other = await new_chat(pilot, "llama3.2:1b")
        assert screen.current is other and slow.streaming
        await send(pilot, "fast one")
        await settle(pilot, until=lambda: done(other) and done(slow), timeout_s=30)
        assert replies(slow)[-1].status == "complete" and replies(slow)[-1].content == SKY


async def test_session_list_rename_archive_delete(tmp_path, fake):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot)
        pane = await new_chat(pilot, "llama3.2:1b")
        await send(pilot, "first session")
        await settle(pilot, until=lambda: done(pane))
        options = screen.query_one("#sessions", OptionList)
        await settle(pilot, until=lambda: options.option_count == 1)
        store = await app.ctx.store()

        options.focus()
        options.highlighted = 0
        await pilot.press("r")
        await settle(pilot, until=lambda: not isinstance(app.screen, ChatScreen))
        app.screen.query_one(Input).value = "Renamed"
        await pilot.press("enter")
        await settle(pilot, until=lambda: "Renamed" in str(options.get_option_at_index(0).prompt))
        assert (await store.sessions.get(1)).title == "Renamed"

        await pilot.press("a")
        await settle(pilot, until=lambda: options.option_count == 0)
        assert (await store.sessions.get(1)).archived
        await pilot.press("v")
        await settle(pilot, until=lambda: options.option_count == 1)
        options.highlighted = 0
        await pilot.press("x")
        await settle(pilot, until=lambda: not isinstance(app.screen, ChatScreen))
        await pilot.press("y")
        await settle(pilot, until=lambda: options.option_count == 0)
        assert await store.sessions.get(1) is None


# -- the real llama-server from the engine lab ---------------------------------------------------------------

def lab_app(tmp_path, server, fake=None) -> EngineDeckApp:
    engines = [EngineConfig(name="llama", url=server.url, kind="llamacpp")]
    if fake is not None:
        engines.append(EngineConfig(name="fake", url=fake.url, kind="ollama"))
    return EngineDeckApp(TestContext(make_config(tmp_path, engines=engines)))


async def pick(pilot, label: str) -> None:
    await settle(pilot, until=lambda: not isinstance(pilot.app.screen, ChatScreen)
                 and bool(pilot.app.screen.query(OptionList)), timeout_s=30)
    await pilot.pause()
    await choose(pilot, label)


@pytest.mark.llama
async def test_real_llama_server_stream_stop_and_resume(tmp_path, llama_server, monkeypatch):
    app = lab_app(tmp_path, llama_server)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot)
        await pilot.press("ctrl+n")
        await pick(pilot, f"llama · {llama_server.model}")
        await settle(pilot, until=lambda: screen.current is not None)
        pane = screen.current
        await send(pilot, "Write two sentences about the sea.")
        await settle(pilot, until=lambda: done(pane), timeout_s=120)
        reply = replies(pane)[-1]
        assert reply.status == "complete" and reply.content.strip()
        figures = str(reply.query_one(".figures", Static).render())
        assert "TTFT" in figures and "≈" not in figures  # llama-server reports its own counts

        pane.conversation.params = parse_params("max_tokens=400")
        # The 135M model may answer in a few words and finish between two looks ("One hundred."), so the reader
        # stalls after the first few pieces of the real stream, like a slow engine, until escape cancels it.
        real_chat = LlamaCppEngine.chat

        async def stalls_after_three(self, request):
            pieces = 0
            async for event in real_chat(self, request):
                if pieces == 3 or event.kind in (EventKind.USAGE, EventKind.DONE):
                    await asyncio.Event().wait()
                yield event
                pieces += event.kind is EventKind.CONTENT

        monkeypatch.setattr(LlamaCppEngine, "chat", stalls_after_three)
        await send(pilot, "Now count slowly from one to two hundred in words.")
        await settle(pilot, until=lambda: replies(pane)[-1].status == "partial"
                     and bool(replies(pane)[-1].content), timeout_s=120)
        await pilot.press("escape", "escape")  # out of the prompt, then stop
        await settle(pilot, until=lambda: done(pane), timeout_s=30)
        assert replies(pane)[-1].status == "cancelled"
        store = await app.ctx.store()
        rows = await store.sessions.messages(pane.conversation.session_id)
        assert [r.status for r in rows] == ["complete", "complete", "complete", "cancelled"]
        assert rows[-1].content == replies(pane)[-1].content


@pytest.mark.llama
async def test_real_llama_server_compared_with_the_ollama_contract_server(tmp_path, llama_server, fake):
    app = lab_app(tmp_path, llama_server, fake)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_chat(pilot)
        await pilot.press("ctrl+o")
        await pick(pilot, f"llama · {llama_server.model}")
        await pick(pilot, "fake · llama3.2:1b")
        await settle(pilot, until=lambda: isinstance(screen.current, ComparePane))
        left, right = screen.current.panes
        left.conversation.params = right.conversation.params = parse_params("max_tokens=32")
        await send(pilot, "Why is the sky blue?")
        await settle(pilot, until=lambda: done(left) and done(right), timeout_s=120)
        assert replies(left)[-1].content.strip() and replies(right)[-1].content == SKY
        for pane in (left, right):
            assert "TTFT" in str(replies(pane)[-1].query_one(".figures", Static).render())


async def test_typing_letters_and_digits_stays_in_the_prompt(tmp_path, fake):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot)
        await pilot.press("i")  # the prompt: from here letters and digits are text, until escape
        await pilot.press("q", "3", "1", "x")
        assert screen.query_one("#prompt", PromptArea).text == "q31x" and app.screen is screen


async def test_copy_a_code_block_without_fences_or_box_characters(tmp_path, fake):
    from tests.fakes.ollama_server import FakeModel

    fake.add_model(FakeModel("coder:latest", reply="Run this:\n\n```sh\nls -l /srv/models\n```\n\nDone."))
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_chat(pilot)
        pane = await new_chat(pilot, "coder:latest")
        await send(pilot, "how do I list models?")
        await settle(pilot, until=lambda: done(pane))
        copied = []
        app.copy_to_clipboard = copied.append
        await pilot.press("ctrl+b")
        await pilot.press("ctrl+y")
        assert copied[0] == "ls -l /srv/models\n"
        assert copied[1].startswith("Run this:") and not any(0x2500 <= ord(c) <= 0x257F for c in copied[1])


def sent_prompts(fake) -> list[str]:
    """The last user message of each chat request the contract server received."""
    return [r.body["messages"][-1]["content"] for r in fake.requests_to("/api/chat")]


async def test_ctrl_j_adds_lines_and_enter_sends_them_all(tmp_path, fake):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(80, 24)) as pilot:
        pane, prompt = await new_chat_prompt(pilot)
        # ctrl+j is the line feed every terminal sends; shift+enter and alt+enter where the terminal reports them.
        await pilot.press(*"fix", "ctrl+j", *"  it", "shift+enter", "1", "alt+enter", "2")
        assert prompt.text == "fix\n  it\n1\n2" and not pane.views()
        await pilot.press("enter")
        await settle(pilot, until=lambda: done(pane))
        assert sent_prompts(fake) == ["fix\n  it\n1\n2"]
        store = await app.ctx.store()
        assert [m.content for m in await store.sessions.messages(1)] == ["fix\n  it\n1\n2", SKY]
        assert prompt.text == ""
        # The conversation shows the message with its lines (and its indent) kept.
        shown = "\n".join(line[pane.region.x + 1:].rstrip() for line in screen_text(app).splitlines())
        assert "\nfix\n  it\n1\n2\n" in shown, shown


async def test_a_pasted_stack_trace_waits_for_enter(tmp_path, fake):
    app = app_for(tmp_path, fake)
    trace = 'Traceback (most recent call last):\r  File "serve.py", line 3, in <module>\rKeyError: \'model\''
    async with app.run_test(size=(80, 24)) as pilot:
        pane, prompt = await new_chat_prompt(pilot)
        await pilot.press(*"why? ")
        # A bracketed paste reaches the app as one Paste event (terminals send its newlines as CR, like enter).
        app.post_message(events.Paste(trace))
        await settle(pilot, until=lambda: "KeyError" in prompt.text)
        await pilot.pause()
        assert not pane.views() and fake.requests_to("/api/chat") == []
        await pilot.press("enter")
        await settle(pilot, until=lambda: done(pane))
        expected = "why? " + trace.replace("\r", "\n")
        assert sent_prompts(fake) == [expected]
        assert pane.views()[0].content == expected
        assert 'File "serve.py", line 3, in <module>' in screen_text(app)  # shown as typed, not as Markdown/HTML


async def test_the_prompt_grows_to_a_bound_then_scrolls(tmp_path, fake):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(80, 24)) as pilot:
        pane, prompt = await new_chat_prompt(pilot)
        assert prompt.outer_size.height == 3  # one line and the border
        prompt.text = "one\ntwo\nthree"
        await pilot.pause()
        assert prompt.outer_size.height == 5
        prompt.text = "\n".join(f"line {i}" for i in range(40))
        prompt.move_cursor(prompt.document.end)
        await pilot.pause()
        assert prompt.outer_size.height == 8  # six lines, then it scrolls to keep the cursor in view
        assert prompt.scroll_offset.y > 0 and "line 39" in screen_text(app)
        assert pane.outer_size.height >= 12 and pane.region.bottom <= prompt.region.y  # the conversation stays


async def test_the_screen_keeps_its_keys_while_typing(tmp_path, fake):
    """TextArea binds f6 and ctrl+y itself; in the chat they open the system prompt and copy the reply."""
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(pilot)
        await new_chat(pilot, "llama3.2:1b")
        prompt = screen.query_one("#prompt", PromptArea)
        await pilot.press(*"draft")
        await pilot.press("ctrl+z")  # the editor's own keys still work
        assert prompt.text == ""
        titles = [c.title for c in app.get_system_commands(screen)]  # the palette offers the prompt's keys
        assert {"Send  [enter]", "New line  [ctrl+j]", "Copy reply  [ctrl+y]"} <= set(titles)
        await pilot.press("f6")
        await settle(pilot, until=lambda: app.screen is not screen)
        assert "System prompt" in screen_text(app)
