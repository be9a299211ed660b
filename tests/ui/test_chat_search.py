"""The chat screen's history search says what it is doing: searching (and how to stop it), stopped, no match,
or stopped at its time limit; esc stops a slow search and the next one runs."""

from __future__ import annotations

import threading
import time

from textual.widgets import Input, OptionList

from console.store import sessions
from console.store.sessions import HitFinder
from tests.ui.fixtures import settle
from tests.ui.test_chat_screen import app_for, done, fake, new_chat, open_chat, send  # noqa: F401 - fixture


async def search_for(pilot, screen, text: str) -> OptionList:
    box = screen.query_one("#search", Input)
    box.focus()
    box.value = text
    await pilot.press("enter")
    return screen.query_one("#sessions", OptionList)


async def test_a_slow_search_shows_progress_and_esc_stops_it(tmp_path, fake, monkeypatch):  # noqa: F811
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_chat(pilot)
        pane = await new_chat(pilot, "llama3.2:1b")
        await send(pilot, "tell me about zebras")
        await settle(pilot, until=lambda: done(pane))

        started = threading.Event()
        real = HitFinder.snippet

        def slow(self, text, *, cut):
            started.set()
            time.sleep(0.3)
            return real(self, text, cut=cut)

        monkeypatch.setattr(HitFinder, "snippet", slow)
        options = await search_for(pilot, screen, "zebras")
        await settle(pilot, until=started.is_set)
        assert options.border_title == "searching… (esc stops)"
        await pilot.press("escape")
        await settle(pilot, until=lambda: options.border_title == "search stopped")

        monkeypatch.setattr(HitFinder, "snippet", real)
        options = await search_for(pilot, screen, "zebras")
        await settle(pilot, until=lambda: options.border_title == "1 hit")  # the question (the reply is on the sky)
        assert options.option_count == 1

        options = await search_for(pilot, screen, "okapis")
        await settle(pilot, until=lambda: options.border_title == "0 hits")
        assert any("no message matches okapis" in n.message for n in app._notifications)

        monkeypatch.setattr(sessions, "SEARCH_TIME_LIMIT_S", 1e-9)
        options = await search_for(pilot, screen, "zebras")
        await settle(pilot, until=lambda: options.border_title == "0 hits (stopped: time limit)")
        assert any("stopped at its time limit" in n.message for n in app._notifications)
