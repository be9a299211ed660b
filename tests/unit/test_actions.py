"""Actions: refused under --read-only, checked against settled capabilities, timed, recorded, audited, errors
re-raised."""

import pytest

from console.actions import Actions
from console.config import EngineConfig, Timeouts
from console.engines.base import Capabilities, Op, SwapResult
from console.engines.llamacpp import LlamaCppEngine
from console.engines.vllm import VLLMEngine
from console.errors import BusyError, NotFoundError, ReadOnlyError, StoreError, UnreachableError, UnsupportedError
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


async def test_load_is_recorded_and_audited(store):
    audit = FakeAudit()
    engine = ScriptedEngine(name="lab")
    await Actions(store, audit, read_only=False).load(engine, "m1", keep_alive="5m")
    assert engine.calls == [("load", "m1", "5m")]
    (event,) = await store.model_events.recent()
    assert (event.engine, event.engine_kind, event.model, event.op, event.ok) == ("lab", "scripted", "m1", "load",
                                                                                   True)
    assert event.duration_s is not None and event.duration_s >= 0
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
    assert engine.calls == []


async def test_engine_failure_is_recorded_then_raised(store):
    audit = FakeAudit()
    engine = ScriptedEngine(fail={"delete": NotFoundError("model 'x' not found", engine="lab")})
    with pytest.raises(NotFoundError):
        await Actions(store, audit, read_only=False).delete(engine, "x")
    (event,) = await store.model_events.recent()
    assert not event.ok and "not found" in event.error
    assert audit.records[0][4].startswith("error: ") and "not found" in audit.records[0][4]


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


async def test_swap_result_is_recorded_with_its_timings(store):
    class Swapper(ScriptedEngine):
        async def swap(self, old, new, keep_alive=None):
            return SwapResult(old, new, ok=False, unload_s=0.1, rolled_back=True, error="no model 'zz'")

    audit = FakeAudit()
    result = await Actions(store, audit, read_only=False).swap(Swapper(), "a", "zz")
    assert not result.ok and result.rolled_back
    (event,) = await store.model_events.recent()
    assert (event.op, event.model, event.ok, event.error) == ("swap", "zz", False, "no model 'zz'")
    assert event.detail["old"] == "a" and event.detail["rolled_back"] is True
    assert audit.records[0][3]["old"] == "a" and audit.records[0][4] == "error: no model 'zz'"


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


async def test_pull_failure_mid_way(store):
    engine = ScriptedEngine(fail={"pull-mid": BusyError("registry busy", engine="e")})
    got = []
    with pytest.raises(BusyError):
        async for p in Actions(store, None, read_only=False).pull(engine, "tiny"):
            got.append(p.completed)
    assert got == [10, 50]
    (event,) = await store.model_events.recent()
    assert not event.ok and "registry busy" in event.error


async def test_pull_abandoned_is_recorded_as_cancelled(store):
    stream = Actions(store, None, read_only=False).pull(ScriptedEngine(), "tiny")
    await anext(stream)
    await stream.aclose()
    (event,) = await store.model_events.recent()
    assert (event.ok, event.error) == (False, "cancelled")


async def test_without_store_or_audit(store):
    engine = ScriptedEngine()
    await Actions(None, None, read_only=False).load(engine, "m")
    assert engine.calls == [("load", "m", None)]


# -- capabilities are settled before they are consulted ----------------------------------------------------------

class ProbedEngine(ScriptedEngine):
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
