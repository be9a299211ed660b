"""A chat turn with an EnergyMeter: the idle baseline first, then the turn's joules per output token, saved with
the reply (messages.energy_json) and shown by `enginedeck chat --energy`."""

from __future__ import annotations

import time

import pytest

from console.conversation import Conversation
from console.engines.base import Usage
from console.telemetry.energy import COUNTER, EnergyMeter
from tests.unit.test_conversation import ScriptedEngine, run


class LiveBox:
    """One GPU with an energy counter that grows at `watts` in real time."""

    def __init__(self, watts: float) -> None:
        self._banked, self._since, self._watts = 1e6, time.monotonic(), watts

    def set(self, watts: float) -> None:
        now = time.monotonic()
        self._banked += self._watts * (now - self._since) * 1000
        self._since, self._watts = now, watts

    def energy_mj(self) -> dict[int, int | None]:
        return {0: int(self._banked + self._watts * (time.monotonic() - self._since) * 1000)}

    def power_w(self) -> dict[int, float | None]:
        return {0: self._watts}


async def test_turn_energy_is_measured_and_saved(store):
    box = LiveBox(100.0)
    meter = EnergyMeter(box, idle_s=0.1)
    meter.idle()  # measured while nothing runs; the turn reuses it
    box.set(300.0)
    engine = ScriptedEngine([("content", "a"), ("sleep", 0.2), ("content", "b"),
                             ("usage", Usage(prompt_tokens=3, completion_tokens=5)), ("done", "stop")])
    conv = Conversation(store, model="m", energy=meter)
    turn = conv.send(engine, "q")
    await run(turn)
    e = turn.figures.energy
    assert e is not None and e.method == COUNTER and e.tokens == 5 and e.gpus == 1
    assert e.idle_w == pytest.approx(100.0, rel=0.05)
    assert e.net_j == pytest.approx(200.0 * e.window_s, rel=0.2) and e.window_s >= 0.2
    assert e.j_per_token == pytest.approx(e.net_j / 5, rel=1e-3)
    _, reply = await store.sessions.messages(conv.session_id)
    assert reply.energy == e.to_dict()


async def test_no_meter_no_energy(store):
    conv = Conversation(store, model="m")
    turn = conv.send(ScriptedEngine([("content", "a"), ("done", "stop")]), "q")
    await run(turn)
    assert turn.figures.energy is None
    _, reply = await store.sessions.messages(conv.session_id)
    assert reply.energy is None

