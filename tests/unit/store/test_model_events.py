import pytest

from console.store import model_events
from console.store.db import Store


async def test_record_and_read_back_newest_first(tmp_path):
    store = await Store.open(tmp_path / "e.db")
    try:
        await store.model_events.record(engine="lab", engine_kind="llamacpp", model="a", op="load",
                                        duration_s=1.5, ok=True)
        await store.model_events.record(engine="lab", engine_kind="llamacpp", model="b", op="swap",
                                        duration_s=3.0, ok=False, error="no such model",
                                        detail={"old": "a", "rolled_back": True})
        await store.model_events.record(engine="other", engine_kind="ollama", model="c", op="pull",
                                        duration_s=9.0, ok=True)
        events = await store.model_events.recent(engine="lab")
        assert [(e.model, e.op, e.ok) for e in events] == [("b", "swap", False), ("a", "load", True)]
        assert events[0].detail == {"old": "a", "rolled_back": True} and events[0].error == "no such model"
        assert len(await store.model_events.recent(limit=2)) == 2
        with pytest.raises(ValueError):
            await store.model_events.record(engine="x", engine_kind=None, model=None, op="explode",
                                            duration_s=None, ok=True)
    finally:
        await store.close()


async def test_oldest_events_go_past_the_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(model_events, "MAX_EVENTS", 3)
    store = await Store.open(tmp_path / "b.db")
    try:
        for i in range(5):
            await store.model_events.record(engine="e", engine_kind=None, model=str(i), op="load", duration_s=0,
                                            ok=True)
        assert [e.model for e in await store.model_events.recent()] == ["4", "3", "2"]
    finally:
        await store.close()


async def test_the_verified_outcome_is_kept_with_the_event(store):
    await store.model_events.record(engine="lab", engine_kind="llamacpp", model="b", op="swap", duration_s=2.0,
                                    ok=False, error="cancelled", detail={"old": "a"}, outcome="loaded now: nothing")
    await store.model_events.record(engine="lab", engine_kind="llamacpp", model="a", op="load", duration_s=1.0,
                                    ok=True)
    ok, cancelled = await store.model_events.recent()
    assert ok.outcome is None and "outcome" not in ok.detail
    assert (cancelled.outcome, cancelled.detail["old"]) == ("loaded now: nothing", "a")
