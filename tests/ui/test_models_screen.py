"""The models screen against the Ollama contract server (real adapter, real Actions): filter, sort, load with
keep-alive, unload with confirmation, swap with timings and rollback, pull with progress and cancel, delete,
details, read-only mode and actions an engine cannot do; one action per engine (a second is refused and never
cancels the first), cancelling as its own confirmed action, and what is recorded after a cancel (read back from
the engine) in the model events and the audit trail."""

from __future__ import annotations

from datetime import timedelta

import pytest
from textual.notifications import Notification
from textual.widgets import DataTable, Input, OptionList, ProgressBar, Static

from console.actions import Actions
from console.config import EngineConfig
from console.engine_lock import LOCKS_DIR
from console.ui.app import EngineDeckApp
from tests.fakes.ollama_server import FakeModel, FakeOllama, ollama_contract_server
from tests.ui.fixtures import StubRegistry, TestContext, demo_engines, make_config, settle

MUTATING = ("load", "unload", "swap", "pull", "delete")


class Seen:
    """Every notification the app raised, from the app's own message stream."""

    def __init__(self) -> None:
        self.notes: list[Notification] = []

    def __call__(self, message: object) -> None:
        if type(message).__name__ == "Notify":
            self.notes.append(message.notification)  # type: ignore[attr-defined]

    def titled(self, title: str) -> list[Notification]:
        return [n for n in self.notes if n.title == title]


@pytest.fixture
def fake():
    with ollama_contract_server() as server:
        yield server


class AuditedContext(TestContext):
    """A TestContext whose actions write the real audit trail, as `enginedeck` does."""

    __test__ = False

    async def actions(self) -> Actions:
        return Actions(store=await self.store(), audit=await self.audit(), read_only=self.config.read_only,
                       lock_dir=self.config.data_dir / LOCKS_DIR)


def app_for(tmp_path, fake: FakeOllama, *, read_only: bool = False, audited: bool = False) -> EngineDeckApp:
    config = make_config(tmp_path, engines=[EngineConfig(name="fake", url=fake.url, kind="ollama")],
                         read_only=read_only)
    return EngineDeckApp((AuditedContext if audited else TestContext)(config))


SLOTH = "sloth:latest"  # takes LOAD_S to load


async def preload(fake: FakeOllama, model: str) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        (await client.post(f"{fake.url}/api/generate", json={"model": model, "keep_alive": "10m"})).raise_for_status()


def load_requests(fake: FakeOllama, model: str) -> int:
    return sum(1 for r in fake.requests_to("/api/generate") if r.body.get("model") == model)


async def records(app: EngineDeckApp) -> tuple[list, list]:
    """(model events, audit events), oldest first."""
    store = await app.ctx.store()
    events = list(reversed(await store.model_events.recent()))
    return events, await store.audit.all()


def why(app: EngineDeckApp) -> str:
    return str(app.screen.query_one("#why", Static).render())


def models(app: EngineDeckApp) -> list[str]:
    table = app.screen.query_one("#models", DataTable)
    return [str(table.get_row_at(i)[1]) for i in range(table.row_count)]


def state_of(app: EngineDeckApp, name: str) -> str:
    table = app.screen.query_one("#models", DataTable)
    state = [str(c.label) for c in table.columns.values()].index("state")
    return next(str(table.get_row_at(i)[state]) for i in range(table.row_count) if str(table.get_row_at(i)[1]) == name)


async def open_models(pilot) -> None:
    await settle(pilot)
    await pilot.press("2")
    await settle(pilot, until=lambda: bool(models(pilot.app)))


async def select(pilot, name: str) -> None:
    table = pilot.app.screen.query_one("#models", DataTable)
    table.focus()
    table.move_cursor(row=models(pilot.app).index(name))
    await pilot.pause()


async def press_for_dialog(pilot, key: str) -> None:
    """Press `key` on the selected model and wait for the dialog it opens (keep-alive, confirmation)."""
    await pilot.press(key)
    await settle(pilot, until=lambda: type(pilot.app.screen).__name__ == "ChoiceDialog")


async def choose(pilot, value_label: str) -> None:
    """Pick the option with this label in the open ChoiceDialog."""
    options = pilot.app.screen.query_one(OptionList)
    labels = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
    options.highlighted = labels.index(value_label)
    await pilot.press("enter")


async def test_filter_by_typing_and_sort(tmp_path, fake):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_models(pilot)
        assert set(models(app)) == set(fake.models)
        await pilot.press("slash", *"qwen")
        assert models(app) == ["qwen3:4b"]
        await pilot.press("escape")
        assert len(models(app)) == len(fake.models)
        assert models(app) == sorted(models(app), key=str.lower)  # by name first
        await pilot.press("o")  # by size, largest first
        sizes = [fake.models[m].size for m in models(app)]
        assert sizes == sorted(sizes, reverse=True) and models(app)[0] == "gemma3:4b"
        assert "sorted by size" in str(app.screen.query_one("#models", DataTable).border_subtitle)


async def test_load_with_keep_alive_then_unload_with_confirmation(tmp_path, fake):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_models(pilot)
        await select(pilot, "llama3.2:1b")
        await press_for_dialog(pilot, "l")
        await choose(pilot, "30 minutes")
        await settle(pilot, until=lambda: state_of(app, "llama3.2:1b") == "loaded")
        assert fake.runners["llama3.2:1b"].keep_alive == timedelta(minutes=30)

        await pilot.press("u")
        await settle(pilot, until=lambda: type(app.screen).__name__ == "ConfirmDialog")
        await pilot.press("n")  # refused: nothing happens
        await settle(pilot)
        assert fake.loaded_names() == ["llama3.2:1b"]
        await pilot.press("u")
        await settle(pilot, until=lambda: type(app.screen).__name__ == "ConfirmDialog")
        await pilot.press("y")
        await settle(pilot, until=lambda: not fake.loaded_names())


async def test_swap_shows_three_timings_and_rolls_back_on_a_failing_model(tmp_path, fake):
    seen = Seen()
    import httpx

    async with httpx.AsyncClient() as client:
        load = {"model": "llama3.2:1b", "keep_alive": "10m"}
        (await client.post(f"{fake.url}/api/generate", json=load)).raise_for_status()
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40), message_hook=seen) as pilot:
        await open_models(pilot)
        await select(pilot, "llama3.2:1b")
        await press_for_dialog(pilot, "s")
        assert "Swap llama3.2:1b for" in str(app.screen.query(Static).first().render())
        await choose(pilot, "qwen3:4b")
        await settle(pilot, until=lambda: bool(seen.titled("Swapped to qwen3:4b")))
        note = seen.titled("Swapped to qwen3:4b")[0].message
        assert note.startswith("unload ") and " · load " in note and " · first token " in note
        assert fake.loaded_names() == ["qwen3:4b"]

        await settle(pilot, until=lambda: state_of(app, "qwen3:4b") == "loaded")
        await press_for_dialog(pilot, "s")
        await choose(pilot, "broken:latest")
        await settle(pilot, until=lambda: bool(seen.titled("Swap failed")))
        failed = seen.titled("Swap failed")[0]
        assert "unable to allocate CUDA0 buffer" in failed.message and "qwen3:4b is back" in failed.message
        assert fake.loaded_names() == ["qwen3:4b"]


async def test_pull_shows_progress_and_can_be_cancelled(tmp_path):
    seen = Seen()
    with ollama_contract_server(pull_step_delay_s=0.3) as fake:
        app = app_for(tmp_path, fake)
        async with app.run_test(size=(120, 40), message_hook=seen) as pilot:
            await open_models(pilot)
            await pilot.press("g")
            await settle(pilot, until=lambda: type(app.screen).__name__ == "AskDialog")
            app.screen.query_one(Input).value = "tinyllama:latest"
            await pilot.press("enter")
            bar_has_total = lambda: (type(app.screen).__name__ == "PullScreen"  # noqa: E731
                                     and app.screen.query_one(ProgressBar).total is not None)
            await settle(pilot, until=bar_has_total)
            status = str(app.screen.query_one("#pull-status", Static).render())
            assert status.startswith("pulling ") and "/ 608.2 MB" in status and "/s" in status
            await pilot.press("escape")  # asks first; n goes on
            assert "Cancel this pull?" in str(app.screen.query_one("#pull-hint", Static).render())
            await pilot.press("n")
            await pilot.pause()
            assert type(app.screen).__name__ == "PullScreen" and not seen.titled("Pull cancelled")
            await pilot.press("escape", "y")
            await settle(pilot, until=lambda: bool(seen.titled("Pull cancelled")))
            note = seen.titled("Pull cancelled")[0].message
            assert note.endswith("verified afterwards: tinyllama:latest is not listed"), note
            assert "tinyllama:latest" not in fake.models
            await settle(pilot, until=lambda: type(app.screen).__name__ == "ModelsScreen")
            (event,) = (await records(app))[0]
            assert (event.op, event.error, event.outcome) == ("pull", "cancelled", "not listed")


async def test_pull_to_the_end_then_delete_with_confirmation(tmp_path, fake):
    seen = Seen()
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40), message_hook=seen) as pilot:
        await open_models(pilot)
        await pilot.press("g")
        await settle(pilot, until=lambda: type(app.screen).__name__ == "AskDialog")
        app.screen.query_one(Input).value = "tinyllama:latest"
        await pilot.press("enter")
        await settle(pilot, until=lambda: "tinyllama:latest" in models(app))
        assert any(n.title == "Pull" and "pulled tinyllama:latest" in n.message for n in seen.notes)

        await select(pilot, "tinyllama:latest")
        await pilot.press("x")
        await settle(pilot, until=lambda: type(app.screen).__name__ == "ConfirmDialog")
        assert "cannot be undone" in " ".join(str(s.render()) for s in app.screen.query(Static))
        await pilot.press("y")
        await settle(pilot, until=lambda: "tinyllama:latest" not in models(app))
        assert "tinyllama:latest" not in fake.models


async def test_details(tmp_path, fake):
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_models(pilot)
        await select(pilot, "llama3.2:1b")
        await pilot.press("i")
        await settle(pilot, until=lambda: type(app.screen).__name__ == "TextDialog")
        body = " ".join(str(s.render()) for s in app.screen.query(Static))
        assert fake.models["llama3.2:1b"].digest[:12] in body
        assert "LLAMA 3.2 COMMUNITY LICENSE" in body and "temperature" in body and "template:" in body
        await pilot.press("escape")
        await settle(pilot)
        assert type(app.screen).__name__ == "ModelsScreen"


async def test_read_only_greys_out_every_mutating_key_and_says_why(tmp_path, fake):
    app = app_for(tmp_path, fake, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_models(pilot)
        await select(pilot, "llama3.2:1b")
        screen = app.screen
        for action in MUTATING:
            assert screen.check_action(action, ()) is None, action  # None: shown in the footer, disabled
        assert screen.check_action("details", ()) is True
        assert "read-only mode (--read-only)" in str(screen.query_one("#why", Static).render())
        await pilot.press("l", "x")
        await settle(pilot)
        assert type(app.screen).__name__ == "ModelsScreen" and not fake.loaded_names()
        assert set(fake.models) >= {"llama3.2:1b"}


async def test_unsupported_action_is_greyed_with_the_engines_reason(tmp_path):
    registry = StubRegistry(demo_engines())
    app = EngineDeckApp(TestContext(make_config(tmp_path), registry))
    async with app.run_test(size=(120, 40)) as pilot:
        await open_models(pilot)
        await select(pilot, "Qwen/Qwen3-8B")  # on the vLLM stub, which cannot pull
        assert app.screen.check_action("pull", ()) is None
        assert "vLLM serves the model it was started with" in str(app.screen.query_one("#why", Static).render())
        await select(pilot, "llama3.2:1b")  # the Ollama stub can
        assert app.screen.check_action("pull", ()) is True


async def test_a_second_action_on_the_engine_is_refused_and_never_cancels_the_first(tmp_path, fake):
    """Issue 11, point 3: load a model that takes 3 s, press unload on another and answer No. The load went on
    on the engine, so the records must say it succeeded (they said "cancelled")."""
    fake.add_model(FakeModel(SLOTH, load_delay_s=3.0))
    await preload(fake, "llama3.2:1b")
    app = app_for(tmp_path, fake, audited=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_models(pilot)
        await select(pilot, SLOTH)
        await press_for_dialog(pilot, "l")
        await choose(pilot, "engine default")
        await settle(pilot, until=lambda: load_requests(fake, SLOTH) == 1)

        await select(pilot, "llama3.2:1b")
        greyed, reason = app.screen.check_action("unload", ()), why(app)
        await pilot.press("u")
        await pilot.pause()
        if type(app.screen).__name__ == "ConfirmDialog":  # what the screen did before: ask, having cancelled
            await pilot.press("n")

        await settle(pilot, until=lambda: SLOTH in fake.loaded_names())
        await settle(pilot)
        events, audit = await records(app)
        assert [(e.op, e.model, e.ok, e.error) for e in events] == [("load", SLOTH, True, None)]
        assert [(a.action, a.target, a.result) for a in audit] == [("load", SLOTH, "ok")]
        assert greyed is None  # the unload key was greyed out, and the status line said why
        assert f"load of {SLOTH} is running on fake: one action per engine at a time (c: cancel it)" in reason
        assert sorted(fake.loaded_names()) == ["llama3.2:1b", SLOTH]
        await settle(pilot, until=lambda: state_of(app, SLOTH) == "loaded")
        assert app.screen.check_action("unload", ()) is True  # free again


async def test_cancel_asks_first_and_no_lets_the_action_finish(tmp_path, fake):
    seen = Seen()
    fake.add_model(FakeModel(SLOTH, load_delay_s=1.5))
    app = app_for(tmp_path, fake)
    async with app.run_test(size=(120, 40), message_hook=seen) as pilot:
        await open_models(pilot)
        await select(pilot, SLOTH)
        assert app.screen.check_action("cancel_action", ()) is None  # greyed out: nothing to cancel
        await press_for_dialog(pilot, "l")
        await choose(pilot, "engine default")
        await settle(pilot, until=lambda: load_requests(fake, SLOTH) == 1)
        assert app.screen.check_action("cancel_action", ()) is True
        await pilot.press("c")
        await settle(pilot, until=lambda: type(app.screen).__name__ == "ConfirmDialog")
        await pilot.press("n")
        await settle(pilot)
        assert not [n for n in seen.notes if "cancelled" in (n.title or "")]
        events, _ = await records(app)
        assert [(e.op, e.ok) for e in events] == [("load", True)] and SLOTH in fake.loaded_names()


async def test_an_interrupted_swap_says_what_is_loaded_now(tmp_path, fake):
    seen = Seen()
    fake.add_model(FakeModel(SLOTH, load_delay_s=3.0))
    await preload(fake, "llama3.2:1b")
    app = app_for(tmp_path, fake, audited=True)
    async with app.run_test(size=(120, 40), message_hook=seen) as pilot:
        await open_models(pilot)
        await select(pilot, "llama3.2:1b")
        await press_for_dialog(pilot, "s")
        await choose(pilot, SLOTH)
        await settle(pilot, until=lambda: load_requests(fake, SLOTH) == 1)  # old unloaded, new on its way
        assert fake.loaded_names() == []
        await pilot.press("c")
        await settle(pilot, until=lambda: type(app.screen).__name__ == "ConfirmDialog")
        body = " ".join(str(s.render()) for s in app.screen.query(Static))
        assert f"Cancel the swap of {SLOTH} on fake?" in body and "reads back what the engine holds" in body
        await pilot.press("y")
        await settle(pilot, until=lambda: bool(seen.titled("swap cancelled")))
        note = seen.titled("swap cancelled")[0].message
        assert note == f"swap of {SLOTH} on fake cancelled; verified afterwards: loaded now: nothing"
        await settle(pilot)
        events, audit = await records(app)
        (event,) = events
        assert (event.op, event.model, event.ok, event.error, event.outcome) == (
            "swap", SLOTH, False, "cancelled", "loaded now: nothing")
        assert event.detail["old"] == "llama3.2:1b" and event.detail["loaded_now"] == []
        assert [(a.action, a.target, a.result) for a in audit] == [
            ("swap", SLOTH, "cancelled; verified: loaded now: nothing")]
        assert app.screen.check_action("swap", ()) is True  # the engine is free for the next action


async def test_an_engine_that_does_not_answer_in_time_says_timed_out(tmp_path, monkeypatch):
    # asyncio's TimeoutError has no text of its own: the notice said "dead: " and nothing more.
    from console.ui.screens import models as models_screen
    from tests.ui.fixtures import StubEngine

    monkeypatch.setattr(models_screen, "LIST_DEADLINE_S", 0.2)
    seen = Seen()
    app = EngineDeckApp(TestContext(make_config(tmp_path), StubRegistry([StubEngine("dead", hang=True)])))
    async with app.run_test(size=(120, 40), message_hook=seen) as pilot:
        await pilot.press("2")
        await settle(pilot, until=lambda: bool(seen.titled("Some engines did not answer")))
        assert [n.message for n in seen.titled("Some engines did not answer")] == ["dead: timed out"]
