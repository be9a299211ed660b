"""Actions: refused under --read-only, checked against settled capabilities, one per engine at a time (in one
process and across processes), timed, recorded, audited; after a failure, a cancel or a timeout the engine's
state is read back and the verified outcome recorded and raised."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from console.actions import UNREACHABLE, ActionCancelledError, ActionFailedError, Actions
from console.config import EngineConfig, Timeouts
from console.engine_lock import ActionInProgressError, EngineLock, Holder
from console.engines.base import Capabilities, LoadedModel, ModelInfo, Op, SwapResult
from console.engines.llamacpp import LlamaCppEngine
from console.engines.vllm import VLLMEngine
from console.errors import (
    BusyError,
    EngineDeckError,
    EngineTimeoutError,
    NotFoundError,
    ReadOnlyError,
    StoreError,
    UnreachableError,
    UnsupportedError,
)
from tests.unit.engines.test_openai_llamacpp import FakeRouter
from tests.unit.engines.test_openai_vllm import FakeVLLM
from tests.unit.test_conversation import ScriptedEngine


class FakeAudit:
    def __init__(self, fail=None):
        self.records = []
        self.fail = fail

    async def record(self, action, *, engine, target, params, result, duration_s):
        if self.fail:
            raise self.fail
        self.records.append((action, engine, target, dict(params), result, duration_s))


class StateEngine(ScriptedEngine):
    """A ScriptedEngine with state: `resident` (name -> status) changes with load and unload, `listed` is what
    list_models answers. Every op sets `started`; one named in `gated` then sets `waiting` and waits for `gate`;
    `finish_first` makes a gated load take effect before it waits (the engine finishes what the client gave up).
    `down` makes every read fail as unreachable; `slow_reads` holds reads until `reads_may_go` is set."""

    def __init__(self, *args, resident=None, listed=(), gated=(), finish_first=False, url_port=1, **kwargs):
        super().__init__(*args, **kwargs)
        self.base_url = f"http://127.0.0.1:{url_port}"
        self.resident: dict[str, str] = dict(resident or {})
        self.listed = list(listed)
        self.gated, self.finish_first = set(gated), finish_first
        self.gate, self.started, self.waiting = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.down = False
        self.slow_reads = False
        self.reads_may_go = asyncio.Event()

    async def _read(self):
        if self.slow_reads:
            await self.reads_may_go.wait()
        if self.down:
            raise UnreachableError("cannot connect to http://127.0.0.1:1", engine=self.name)

    async def loaded_models(self):
        await self._read()
        return [LoadedModel(name=n, status=s) for n, s in self.resident.items()]

    async def list_models(self):
        await self._read()
        return [ModelInfo(name=n) for n in self.listed]

    async def _op(self, op, *args):
        self.calls.append((op, *args))
        self.started.set()
        if op in self.gated:
            if self.finish_first:
                self._apply(op, args[0])
            self.waiting.set()
            await self.gate.wait()
        if op in self.fail:
            raise self.fail[op]
        self._apply(op, args[0])

    def _apply(self, op, model):
        if op == "load":
            self.resident[model] = "loaded"
        elif op == "unload":
            self.resident.pop(model, None)


def event_row(e):
    return (e.op, e.model, e.ok, e.error, e.outcome)


# -- what was there before: recording, refusals, warnings ---------------------------------------------------------

async def test_load_is_recorded_and_audited(store):
    audit = FakeAudit()
    engine = ScriptedEngine(name="lab")
    await Actions(store, audit, read_only=False).load(engine, "m1", keep_alive="5m")
    assert engine.calls == [("load", "m1", "5m")]
    (event,) = await store.model_events.recent()
    assert (event.engine, event.engine_kind, event.model, event.op, event.ok) == ("lab", "scripted", "m1", "load",
                                                                                   True)
    assert event.duration_s is not None and event.duration_s >= 0 and event.outcome is None
    action, eng, target, params, result, duration = audit.records[0]
    assert (action, eng, target, params, result) == ("load", "lab", "m1", {"keep_alive": "5m"}, "ok")
    assert duration == pytest.approx(event.duration_s)


@pytest.mark.parametrize("op", ["load", "unload", "delete", "swap", "pull"])
async def test_read_only_refuses_and_names_the_flag(store, op):
    engine = ScriptedEngine()
    actions = Actions(store, FakeAudit(), read_only=True)
    with pytest.raises(ReadOnlyError, match="--read-only"):
        if op == "pull":
            async for _ in actions.pull(engine, "m"):
                pass
        elif op == "swap":
            await actions.swap(engine, "a", "b")
        else:
            await getattr(actions, op)(engine, "m")
    assert engine.calls == [] and await store.model_events.recent() == []


async def test_unsupported_op_says_why_and_is_not_attempted(store):
    engine = ScriptedEngine(unsupported={Op.UNLOAD: "vLLM serves one model per process"})
    with pytest.raises(UnsupportedError, match="one model per process"):
        await Actions(store, None, read_only=False).unload(engine, "m")
    assert engine.calls == [] and await store.model_events.recent() == []


async def test_store_failure_does_not_turn_success_into_failure(store):
    await store.db.execute("PRAGMA query_only = ON")
    audit = FakeAudit()
    actions = Actions(store, audit, read_only=False)
    await actions.unload(ScriptedEngine(), "m")  # no exception
    assert audit.records and audit.records[0][4] == "ok"
    assert len(actions.warnings) == 1 and "not recorded" in actions.warnings[0] and "read-only" in actions.warnings[0]


async def test_audit_failure_is_a_warning_too(store):
    actions = Actions(store, FakeAudit(fail=StoreError("audit log full")), read_only=False)
    await actions.load(ScriptedEngine(), "m")
    assert "audit trail" in actions.warnings[0] and len(await store.model_events.recent()) == 1


async def test_swap_goes_through_the_engine_protocol(store):
    engine = ScriptedEngine([("content", "hi")])
    result = await Actions(store, None, read_only=False).swap(engine, "a", "b")
    assert result.ok and [c[0] for c in engine.calls] == ["unload", "load"]
    assert (await store.model_events.recent())[0].detail["first_token_s"] is not None


async def test_pull_streams_progress_and_records_once(store):
    audit = FakeAudit()
    got = [p.completed async for p in Actions(store, audit, read_only=False).pull(ScriptedEngine(), "tiny")]
    assert got == [10, 50, 100]
    (event,) = await store.model_events.recent()
    assert (event.op, event.ok) == ("pull", True) and len(audit.records) == 1


async def test_without_store_or_audit(store):
    engine = ScriptedEngine()
    await Actions(None, None, read_only=False).load(engine, "m")
    assert engine.calls == [("load", "m", None)]


# -- capabilities are settled before they are consulted ----------------------------------------------------------

class ProbedEngine(StateEngine):
    """Cannot say whether it loads until asked, like llama.cpp (router or -m) and vLLM (dev mode, LoRA)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._caps = Capabilities({Op.LOAD: "not known yet"})
        self.probes = 0

    async def probe_capabilities(self):
        self.probes += 1
        self._caps = Capabilities({})
        return self._caps


async def test_capabilities_are_settled_once_before_the_check(store):
    engine = ProbedEngine()
    actions = Actions(store, None, read_only=False)
    await actions.load(engine, "a")
    await actions.load(engine, "b")
    assert engine.probes == 1 and [c[1] for c in engine.calls] == ["a", "b"]


async def test_llamacpp_router_loads_without_being_polled_first(store, hostile_server):
    """Issue 11, point 2: `enginedeck load URL smol-a` on a router refused with "started with -m"."""
    router = FakeRouter(hostile_server)
    engine = LlamaCppEngine(EngineConfig(name="llama", url=hostile_server.url, kind="llamacpp",
                                         timeouts=Timeouts(1.0, 5.0)), load_timeout_s=10.0)
    async with engine:
        actions = Actions(store, None, read_only=False)
        await actions.load(engine, "smol-a")
        assert router.status["smol-a"] == "loaded"
        result = await actions.swap(engine, "smol-a", "smol-b")
        assert result.ok and router.status == {**router.status, "smol-a": "unloaded", "smol-b": "loaded"}


async def test_vllm_capabilities_are_probed_before_an_unload(store, hostile_server):
    server = FakeVLLM(hostile_server, sleep_flag=False)
    server.adapters["sql-lora"] = "/loras/sql"
    engine = VLLMEngine(EngineConfig(name="vllm", url=hostile_server.url, kind="vllm", timeouts=Timeouts(1.0, 5.0)))
    async with engine:
        await Actions(store, None, read_only=False).unload(engine, "sql-lora")
    assert server.adapters == {}


async def test_an_engine_that_cannot_be_asked_is_unreachable_not_single_model(store, unused_tcp_port):
    engine = LlamaCppEngine(EngineConfig(name="llama", url=f"http://127.0.0.1:{unused_tcp_port}", kind="llamacpp",
                                         timeouts=Timeouts(1.0, 2.0)))
    async with engine:
        with pytest.raises(UnreachableError):
            await Actions(store, None, read_only=False).load(engine, "smol-a")
    assert await store.model_events.recent() == []


# -- one action per engine ---------------------------------------------------------------------------------------

async def test_a_second_action_on_the_engine_is_refused_and_the_first_goes_on(store, tmp_path):
    audit = FakeAudit()
    engine = StateEngine(name="lab", resident={"b": "loaded"}, gated={"load"})
    actions = Actions(store, audit, read_only=False, lock_dir=tmp_path / "locks")
    first = asyncio.create_task(actions.load(engine, "a"))
    await engine.started.wait()
    with pytest.raises(ActionInProgressError, match=r"lab is busy with load of a \(pid \d+, running for \d+ s\)"):
        await actions.unload(engine, "b")
    engine.gate.set()
    await first
    assert engine.resident == {"b": "loaded", "a": "loaded"}
    assert [event_row(e) for e in await store.model_events.recent()] == [("load", "a", True, None, None)]
    assert [r[4] for r in audit.records] == ["ok"]
    await actions.unload(engine, "b")  # free again
    assert "b" not in engine.resident


async def test_two_processes_worth_of_actions_share_the_lock_file(store, tmp_path):
    engine = StateEngine(gated={"load"})
    lock_dir = tmp_path / "locks"
    first, second = (Actions(store, None, read_only=False, lock_dir=lock_dir) for _ in range(2))
    running = asyncio.create_task(first.load(engine, "a"))
    await engine.started.wait()
    with pytest.raises(ActionInProgressError, match="busy with load of a"):
        await second.load(engine, "b")
    engine.gate.set()
    await running
    await second.load(engine, "b")
    assert [c[1] for c in engine.calls] == ["a", "b"]


async def test_actions_on_different_engines_run_side_by_side(store, tmp_path):
    one, two = StateEngine(name="one", gated={"load"}, url_port=1), StateEngine(name="two", url_port=2)
    actions = Actions(store, None, read_only=False, lock_dir=tmp_path / "locks")
    running = asyncio.create_task(actions.load(one, "a"))
    await one.started.wait()
    await actions.load(two, "b")
    one.gate.set()
    await running
    assert one.resident == {"a": "loaded"} and two.resident == {"b": "loaded"}


async def test_the_lock_is_released_after_a_failure(store, tmp_path):
    engine = StateEngine(fail={"load": BusyError("out of memory", engine="lab")})
    actions = Actions(store, None, read_only=False, lock_dir=tmp_path / "locks")
    with pytest.raises(ActionFailedError):
        await actions.load(engine, "a")
    engine.fail.clear()
    await actions.load(engine, "a")
    assert actions.running(engine) is None


def test_a_lock_held_by_another_process_is_refused_and_freed_when_it_dies(tmp_path):
    lock_dir = tmp_path / "locks"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from console.engine_lock import EngineLock, Holder
        lock = EngineLock.acquire(Path({str(lock_dir)!r}), "http://localhost:8080/",
                                  Holder("swap", "smol-b", "router", 4242, time.time()))
        print("held", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        mine = Holder("load", "smol-a", "llamacpp@127.0.0.1:8080", os.getpid(), 0.0)
        with pytest.raises(ActionInProgressError) as refused:
            EngineLock.acquire(lock_dir, "http://127.0.0.1:8080", mine)  # same server, spelt differently
        assert "busy with swap of smol-b (pid 4242, running for" in str(refused.value)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        with EngineLock.acquire(lock_dir, "http://127.0.0.1:8080", mine):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=10)


# -- what is recorded after a failure, a cancel or a timeout -----------------------------------------------------

async def test_a_failure_is_read_back_recorded_and_raised_with_the_outcome(store):
    audit = FakeAudit()
    engine = StateEngine(name="lab", listed=["x"], fail={"delete": NotFoundError("model 'x' not found", engine="lab")})
    with pytest.raises(ActionFailedError) as failed:
        await Actions(store, audit, read_only=False).delete(engine, "x")
    assert isinstance(failed.value.cause, NotFoundError) and failed.value.outcome == "listed"
    assert str(failed.value) == "lab: model 'x' not found; verified afterwards: x is listed"
    (event,) = await store.model_events.recent()
    assert event_row(event) == ("delete", "x", False, "lab: model 'x' not found", "listed")
    assert audit.records[0][4] == "error: lab: model 'x' not found; verified: listed"


async def test_a_timeout_records_what_the_engine_did_meanwhile(store):
    engine = StateEngine(fail={"load": EngineTimeoutError("'a' is still loading after 300 s", engine="lab")},
                         resident={"a": "loading"})
    with pytest.raises(ActionFailedError, match=r"verified afterwards: a is loading$"):
        await Actions(store, None, read_only=False).load(engine, "a")
    (event,) = await store.model_events.recent()
    assert (event.ok, event.outcome) == (False, "loading")


async def test_an_unreachable_engine_is_recorded_as_unknown(store):
    engine = StateEngine(fail={"unload": UnreachableError("connection reset", engine="lab")})
    engine.down = True
    audit = FakeAudit()
    with pytest.raises(ActionFailedError, match=r"verified afterwards: unknown: engine unreachable$"):
        await Actions(store, audit, read_only=False).unload(engine, "a")
    (event,) = await store.model_events.recent()
    assert event.outcome == UNREACHABLE
    assert audit.records[0][4] == "error: lab: connection reset; verified: unknown: engine unreachable"


async def test_a_failed_swap_says_what_is_loaded_now(store):
    class Swapper(StateEngine):
        async def swap(self, old, new, keep_alive=None):
            return SwapResult(old, new, ok=False, unload_s=0.1, rolled_back=True, error="no model 'zz'")

    audit = FakeAudit()
    result = await Actions(store, audit, read_only=False).swap(Swapper(resident={"a": "loaded"}), "a", "zz")
    assert not result.ok and result.rolled_back
    assert (result.outcome, result.loaded_now) == ("loaded now: a", ("a",))
    (event,) = await store.model_events.recent()
    assert event_row(event) == ("swap", "zz", False, "no model 'zz'", "loaded now: a")
    assert event.detail["old"] == "a" and event.detail["rolled_back"] is True and event.detail["loaded_now"] == ["a"]
    assert audit.records[0][3]["old"] == "a"
    assert audit.records[0][4] == "error: no model 'zz'; verified: loaded now: a"


async def test_cancel_is_its_own_call_and_the_outcome_is_read_back(store):
    audit = FakeAudit()
    engine = StateEngine(name="lab", gated={"load"})
    actions = Actions(store, audit, read_only=False)
    assert not actions.cancel(engine)  # nothing running
    running = asyncio.create_task(actions.load(engine, "a"))
    await engine.started.wait()
    assert actions.running(engine).op is Op.LOAD
    assert actions.cancel(engine)
    with pytest.raises(ActionCancelledError) as cancelled:
        await running
    assert str(cancelled.value) == "load of a on lab cancelled; verified afterwards: a is not loaded"
    (event,) = await store.model_events.recent()
    assert event_row(event) == ("load", "a", False, "cancelled", "not loaded")
    assert audit.records[0][4] == "cancelled; verified: not loaded"
    assert actions.running(engine) is None


async def test_a_cancelled_load_the_engine_finished_anyway_is_recorded_as_loaded(store):
    engine = StateEngine(gated={"load"}, finish_first=True)
    actions = Actions(store, None, read_only=False)
    running = asyncio.create_task(actions.load(engine, "a"))
    await engine.started.wait()
    actions.cancel(engine)
    with pytest.raises(ActionCancelledError, match=r"a is loaded$"):
        await running
    assert (await store.model_events.recent())[0].outcome == "loaded"


async def test_an_interrupted_swap_says_what_is_loaded_now(store):
    engine = StateEngine(resident={"old": "loaded"}, gated={"load"})
    actions = Actions(store, None, read_only=False)
    running = asyncio.create_task(actions.swap(engine, "old", "new"))
    await engine.waiting.wait()  # old unloaded, the load of "new" at the gate
    assert engine.calls == [("unload", "old"), ("load", "new", None)]
    actions.cancel(engine)
    with pytest.raises(ActionCancelledError) as cancelled:
        await running
    assert cancelled.value.outcome == "loaded now: nothing" and cancelled.value.loaded_now == ()
    (event,) = await store.model_events.recent()
    assert event_row(event) == ("swap", "new", False, "cancelled", "loaded now: nothing")
    assert event.detail["old"] == "old"


async def test_a_cancelled_caller_still_gets_the_record(store):
    """Ctrl+C without the CLI's handler, or the app closing: the task itself is cancelled."""
    engine = StateEngine(gated={"unload"}, resident={"a": "loaded"})
    running = asyncio.create_task(Actions(store, None, read_only=False).unload(engine, "a"))
    await engine.started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    (event,) = await store.model_events.recent()
    assert event_row(event) == ("unload", "a", False, "cancelled", "loaded")


async def test_a_second_cancel_during_the_read_back_does_not_lose_the_record(store):
    engine = StateEngine(gated={"load"})
    engine.slow_reads = True
    running = asyncio.create_task(Actions(store, None, read_only=False).load(engine, "a"))
    await engine.started.wait()
    running.cancel()
    await asyncio.sleep(0.05)  # now inside the read-back, which waits for reads_may_go
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    engine.reads_may_go.set()
    for _ in range(100):
        if await store.model_events.recent():
            break
        await asyncio.sleep(0.01)
    (event,) = await store.model_events.recent()
    assert event_row(event) == ("load", "a", False, "cancelled", "not loaded")


async def test_pull_failure_mid_way(store):
    engine = StateEngine(fail={"pull-mid": BusyError("registry busy", engine="e")})
    got = []
    with pytest.raises(ActionFailedError, match="registry busy; verified afterwards: tiny is not listed") as failed:
        async for p in Actions(store, None, read_only=False).pull(engine, "tiny"):
            got.append(p.completed)
    assert got == [10, 50] and isinstance(failed.value.cause, BusyError)
    (event,) = await store.model_events.recent()
    assert (event.ok, event.outcome) == (False, "not listed") and "registry busy" in event.error


async def test_pull_abandoned_is_recorded_as_cancelled(store):
    stream = Actions(store, None, read_only=False).pull(StateEngine(listed=["tiny:latest"]), "tiny")
    await anext(stream)
    await stream.aclose()
    (event,) = await store.model_events.recent()
    assert (event.ok, event.error, event.outcome) == (False, "cancelled", "listed")  # tiny:latest is tiny


async def test_pull_cancelled_through_actions(store):
    class SlowPull(StateEngine):
        async def pull(self, model):
            async for p in super().pull(model):
                yield p
                await self.gate.wait()

    engine = SlowPull()
    actions = Actions(store, None, read_only=False)
    stream = actions.pull(engine, "tiny")
    assert (await anext(stream)).completed == 10
    assert actions.cancel(engine)
    with pytest.raises(ActionCancelledError, match="pull of tiny on fake cancelled; verified afterwards: tiny is "
                                                   "not listed"):
        await anext(stream)
    (event,) = await store.model_events.recent()
    assert (event.error, event.outcome) == ("cancelled", "not listed")


async def test_a_process_going_down_during_the_read_back_still_records(store):
    """A second ctrl+c: asyncio.run cancels every task left, the read-back's own task included."""
    engine = StateEngine(gated={"load"})
    engine.slow_reads = True
    running = asyncio.create_task(Actions(store, None, read_only=False).load(engine, "a"))
    await engine.started.wait()
    running.cancel()
    await asyncio.sleep(0.05)  # inside the read-back
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    (event,) = await store.model_events.recent()
    assert event_row(event) == ("load", "a", False, "cancelled", "unknown: interrupted before the engine was read")


async def test_a_lock_dir_that_cannot_be_used_refuses_with_a_clear_error(store, tmp_path):
    (tmp_path / "locks").write_text("not a directory")
    engine = StateEngine()
    with pytest.raises(EngineDeckError, match=r"cannot open the engine lock in .*locks: .*data dir is writable"):
        await Actions(store, None, read_only=False, lock_dir=tmp_path / "locks").load(engine, "a")
    assert engine.calls == []
