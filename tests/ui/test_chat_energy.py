"""Energy per token in the chat screen (f8): the GPUs' idle power measured first (off the event loop), then each
reply's joules per output token on its figures line and saved with it (messages.energy_json), as
`enginedeck chat --energy` saves it; without NVML a note, not an error. NVML is the fake of tests/unit/telemetry
behind the app's real GpuMonitor; the engine is the Ollama contract server."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import pytest
from textual.widgets import Static

from console.telemetry.energy import COUNTER
from tests.fakes.ollama_server import FakeOllama, ollama_contract_server
from tests.ui.fixtures import screen_text, settle
from tests.ui.test_chat_screen import SKY, app_for, done, new_chat, new_chat_prompt, open_chat, replies, send
from tests.unit.telemetry.test_gpu import fake_nvml
from tests.unit.test_turn_energy import LiveBox

IDLE_W, BUSY_W = 100.0, 300.0


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with ollama_contract_server() as server:
        yield server


@pytest.fixture
def box(monkeypatch: pytest.MonkeyPatch) -> LiveBox:
    """Two GPUs whose energy counters grow at the box's power in real time (each GPU half of it)."""
    live = LiveBox(IDLE_W)
    m = fake_nvml()
    m.nvmlDeviceGetTotalEnergyConsumption = lambda h: live.energy_mj()[0] // 2
    monkeypatch.setitem(sys.modules, "pynvml", m)
    monkeypatch.setattr("console.telemetry.energy.IDLE_S", 0.2)
    return live


def energy_line(pilot) -> Static:
    return pilot.app.screen.query_one("#energy", Static)


async def test_f8_measures_idle_then_each_reply_shows_and_saves_its_joules_per_token(tmp_path, fake, box):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(160, 40)) as pilot:
        pane, _prompt = await new_chat_prompt(pilot)
        await pilot.press("escape")  # out of the prompt: the key bar shows the chat's keys
        assert "f8 Energy" in screen_text(app)
        await pilot.press("question_mark")  # the help lists it with what it does
        await settle(pilot, until=lambda: type(app.screen).__name__ == "HelpScreen")
        listed = "\n".join(str(w.render()) for w in app.screen.query(Static))
        assert re.search(r"^\s*f8\s+Energy$", listed, re.MULTILINE), listed
        await pilot.press("escape")
        await settle(pilot, until=lambda: type(app.screen).__name__ == "ChatScreen")
        await pilot.press("f8")
        assert "measuring the GPUs' idle power" in str(energy_line(pilot).render())
        await settle(pilot, until=lambda: "energy: on" in str(energy_line(pilot).render()))
        assert "idle 100 W (counter)" in str(energy_line(pilot).render())
        assert pane.conversation.energy is not None

        box.set(BUSY_W)  # the engine at work: 200 W above idle while the reply streams
        await send(pilot, "why is the sky blue?")
        await settle(pilot, until=lambda: done(pane))
        reply = replies(pane)[-1]
        assert reply.status == "complete" and reply.content == SKY
        figures = str(reply.query_one(".figures", Static).render())
        assert "J/token (idle 100 W, counter)" in figures, figures

        store = await app.ctx.store()
        (session,) = await store.sessions.list()
        _, saved = await store.sessions.messages(session.id)
        e = saved.energy
        assert e is not None and e["method"] == COUNTER and e["gpus"] == 2
        assert e["idle_w"] == pytest.approx(IDLE_W, rel=0.1)
        assert e["tokens"] == pane.conversation.entries[-1].figures.tokens_out
        assert f"{e['j_per_token']:.3f} J/token" in figures
        assert e["net_j"] == pytest.approx(e["gross_j"] - e["idle_w"] * e["window_s"], abs=0.01)

        # Off again: the next reply has no energy, on screen or in the store.
        await pilot.press("f8")
        assert energy_line(pilot).has_class("hidden"), (str(energy_line(pilot).render()), pilot.app.focused)
        assert pane.conversation.energy is None
        await send(pilot, "and at sunset?")
        await settle(pilot, until=lambda: done(pane) and len(replies(pane)) == 2)
        assert "J/token" not in str(replies(pane)[-1].query_one(".figures", Static).render())
        assert (await store.sessions.messages(session.id))[-1].energy is None


async def test_a_chat_opened_while_energy_is_on_is_measured_and_a_resumed_reply_shows_its_reading(
        tmp_path, fake, box):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(160, 40)) as pilot:
        await open_chat(pilot)
        await pilot.press("f8")
        await settle(pilot, until=lambda: "energy: on" in str(energy_line(pilot).render()))
        pane = await new_chat(pilot, "llama3.2:1b")  # opened after f8: measured too
        assert pane.conversation.energy is not None
        await send(pilot, "why is the sky blue?")
        await settle(pilot, until=lambda: done(pane))
        shown = str(replies(pane)[-1].query_one(".figures", Static).render())
        assert "J/token" in shown

    # A new app reads the session back from the store: the reply's figures line still has its reading.
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_chat(pilot)
        await settle(pilot, until=lambda: screen.query_one("#sessions").option_count == 1)
        await pilot.press("enter")
        await settle(pilot, until=lambda: screen.current is not None and replies(screen.current))
        assert str(replies(screen.current)[-1].query_one(".figures", Static).render()) == shown


async def test_nothing_is_sent_while_the_idle_power_is_measured(tmp_path, fake, box, monkeypatch):
    monkeypatch.setattr("console.telemetry.energy.IDLE_S", 1.0)
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(160, 40)) as pilot:
        pane, _prompt = await new_chat_prompt(pilot)
        await pilot.press("f8")
        await send(pilot, "why is the sky blue?")
        assert not pane.streaming and not replies(pane)
        assert fake.requests_to("/api/chat") == []
        await pilot.press("f8")  # never mind: the measurement is dropped, energy stays off
        assert energy_line(pilot).has_class("hidden") and pane.conversation.energy is None


async def test_f8_without_nvml_is_a_note_and_the_chat_goes_on(tmp_path, fake, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(160, 40)) as pilot:
        pane, _prompt = await new_chat_prompt(pilot)
        await pilot.press("f8")
        await settle(pilot, until=lambda: "unavailable" in str(energy_line(pilot).render()))
        line = str(energy_line(pilot).render())
        assert "no NVIDIA GPU to measure energy on" in line and "NVML" in line
        assert pane.conversation.energy is None
        await send(pilot, "why is the sky blue?")
        await settle(pilot, until=lambda: done(pane))
        reply = replies(pane)[-1]
        assert reply.status == "complete" and "J/token" not in str(reply.query_one(".figures", Static).render())
