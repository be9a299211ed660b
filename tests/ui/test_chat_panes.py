"""Chat panes are bounded and can be closed: opening more sessions than OPEN_PANES unmounts the least recently
shown (its session stays in the store and comes back whole), `w` closes the chat shown. And a hidden chat
screen's timers are paused (the prompt's cursor stops blinking where nobody sees it)."""

from __future__ import annotations

from textual.widgets import OptionList

from console.ui.screens.chat import OPEN_PANES, ChatScreen
from console.ui.textual_compat import running_timers
from console.ui.widgets.chat_pane import ChatPane
from tests.ui.fixtures import demo_app, settle


async def saved_sessions(app, n: int) -> list[int]:
    sessions = (await app.ctx.store()).sessions
    ids = []
    for i in range(n):
        s = await sessions.create(title=f"session {i}", engine="ollama-a", model="llama3.2:1b")
        await sessions.add_message(s.id, "user", f"question {i}")
        await sessions.add_message(s.id, "assistant", f"answer {i}", engine="ollama-a", model="llama3.2:1b")
        ids.append(s.id)
    return ids


async def open_from_list(pilot, index: int) -> None:
    """ctrl+l to the session list, down to the session, enter."""
    screen = pilot.app.screen
    await pilot.press("escape", "ctrl+l")
    options = screen.query_one("#sessions", OptionList)
    await settle(pilot, until=lambda: options.option_count > index and options.has_focus)
    await pilot.press("home", *["down"] * index, "enter")


def mounted(screen: ChatScreen) -> list[ChatPane]:
    return list(screen.query(ChatPane))


def titles(screen: ChatScreen) -> list[str]:
    return sorted(p.conversation.title or "" for p in mounted(screen))


async def test_panes_beyond_the_bound_are_unmounted_and_come_back_from_the_store(tmp_path):
    app = demo_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        count = OPEN_PANES + 2
        await saved_sessions(app, count)
        await pilot.press("3")
        await settle(pilot, until=lambda: isinstance(app.screen, ChatScreen))
        screen = app.screen
        # The list is newest first: open them oldest first, so "session 0" is the least recently shown.
        for n, index in enumerate(range(count - 1, -1, -1), 1):
            await open_from_list(pilot, index)
            await settle(pilot, until=lambda n=n: len(screen._recent) == min(n, OPEN_PANES)
                         and screen.current is not None and screen.current.conversation.title == f"session {n - 1}")
        assert len(mounted(screen)) == OPEN_PANES
        assert "session 0" not in titles(screen) and "session 1" not in titles(screen)
        # Session 0 comes back whole from the store, and now the least recently shown goes.
        await open_from_list(pilot, count - 1)
        await settle(pilot, until=lambda: screen.current.conversation.title == "session 0")
        assert [v.content for v in screen.current.views()] == ["question 0", "answer 0"]
        assert len(mounted(screen)) == OPEN_PANES and "session 2" not in titles(screen)


async def test_w_closes_the_chat_shown_and_shows_the_previous(tmp_path):
    app = demo_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await saved_sessions(app, 2)
        await pilot.press("3")
        await settle(pilot, until=lambda: isinstance(app.screen, ChatScreen))
        screen = app.screen
        for index in (1, 0):
            await open_from_list(pilot, index)
            await settle(pilot, until=lambda index=index: screen.current is not None
                         and screen.current.conversation.title == f"session {1 - index}")
        await pilot.press("escape", "w")
        await settle(pilot, until=lambda: screen.current is not None
                     and screen.current.conversation.title == "session 0")
        assert titles(screen) == ["session 0"]
        await pilot.press("escape", "w")
        await settle(pilot, until=lambda: screen.current is None)
        assert not mounted(screen)
        store = await app.ctx.store()
        assert len(await store.sessions.list()) == 2  # closing never deletes


async def test_a_hidden_chat_screen_pauses_its_timers(tmp_path):
    app = demo_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot, until=lambda: isinstance(app.screen, ChatScreen))
        screen = app.screen
        await pilot.press("i")  # the prompt has focus: its cursor blinks
        await pilot.pause()

        def running() -> list:
            return [t for w in screen.walk_children() for t in running_timers(w)]

        assert running()
        # Away with the prompt still focused (the palette; a digit would be typed): the focus stays for the return.
        await pilot.press("ctrl+p")
        await settle(pilot, until=lambda: type(app.screen).__name__ == "CommandPalette")
        await pilot.press(*"open dashboard")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot, until=lambda: app.current_mode == "dashboard")
        assert not running()
        await pilot.press("3")
        await settle(pilot, until=lambda: app.screen is screen)
        await pilot.pause()
        assert running()
