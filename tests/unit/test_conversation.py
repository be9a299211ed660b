"""The chat-recording service: a turn streams, is saved as it goes, and ends complete, cancelled or error."""

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from console.conversation import ChatParams, Conversation, Figures
from console.engines.base import (
    Capabilities,
    ChatEvent,
    ChatRequest,
    Engine,
    EngineInfo,
    EventKind,
    Health,
    Op,
    PullProgress,
    TokenSource,
    Usage,
)
from console.errors import EngineDeckError, StreamError, UnreachableError, UnsupportedError


class ScriptedEngine(Engine):
    """An engine that replays a script of steps: ("content", text), ("reasoning", text), ("usage", Usage),
    ("done", reason), ("error", EngineError), ("raise", exception), ("sleep", seconds).

    Model operations are recorded in `calls`; `fail` maps an op name to the exception it raises.
    """

    kind = "scripted"

    def __init__(self, script=(), *, name="fake", unsupported=None, fail=None):
        super().__init__(name, "http://127.0.0.1:1")
        self.script = list(script)
        self.requests: list[ChatRequest] = []
        self.calls: list[tuple] = []
        self.fail = fail or {}
        self._caps = Capabilities(unsupported or {})

    @property
    def capabilities(self):
        return self._caps

    async def info(self):
        return EngineInfo(self.kind, self.base_url, "1", Health.OK)

    async def list_models(self):
        return []

    async def loaded_models(self):
        return []

    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        self.requests.append(request)
        for step, arg in self.script:
            now = time.perf_counter_ns()
            if step == "sleep":
                await asyncio.sleep(arg)
            elif step == "raise":
                raise arg
            elif step == "content":
                yield ChatEvent(EventKind.CONTENT, now, text=arg)
            elif step == "reasoning":
                yield ChatEvent(EventKind.REASONING, now, text=arg)
            elif step == "usage":
                yield ChatEvent(EventKind.USAGE, now, usage=arg)
            elif step == "done":
                yield ChatEvent(EventKind.DONE, now, done_reason=arg)
            elif step == "error":
                yield ChatEvent(EventKind.ERROR, now, error=arg)

    async def _op(self, op, *args):
        self.calls.append((op, *args))
        if op in self.fail:
            raise self.fail[op]

    async def load(self, model, keep_alive=None):
        await self._op("load", model, keep_alive)

    async def unload(self, model):
        await self._op("unload", model)

    async def delete(self, model):
        await self._op("delete", model)

    async def pull(self, model):
        await self._op("pull", model)
        for done in (10, 50, 100):
            yield PullProgress("downloading", total=100, completed=done)
            if "pull-mid" in self.fail and done == 50:
                raise self.fail["pull-mid"]


def words(*texts, usage=None):
    script = [("content", t) for t in texts]
    if usage:
        script.append(("usage", usage))
    return [*script, ("done", "stop")]


async def run(turn):
    return [e async for e in turn]


async def test_turn_is_saved_with_figures_from_server_usage(store):
    engine = ScriptedEngine([("reasoning", "hmm "), ("content", "Hello"), ("sleep", 0.02), ("content", " world"),
                             ("usage", Usage(prompt_tokens=7, completion_tokens=5)), ("done", "stop")])
    conv = Conversation(store, model="m1", system_prompt="be kind", params=ChatParams(temperature=0.2))
    turn = conv.send(engine, "hi there")
    events = await run(turn)
    assert [e.kind for e in events][-1] is EventKind.DONE
    assert (turn.status, turn.content, turn.reasoning, turn.done_reason) == ("complete", "Hello world", "hmm ",
                                                                           "stop")
    f = turn.figures
    assert f.tokens_out == 5 and f.tokens_in == 7 and f.token_source is TokenSource.SERVER_USAGE
    assert f.ttft_ms is not None and f.ttft_ms >= 0 and f.tok_s is not None and f.tok_s > 0
    req = engine.requests[0]
    assert [(m.role, m.content) for m in req.messages] == [("system", "be kind"), ("user", "hi there")]
    assert req.temperature == 0.2 and req.model == "m1"

    session = await store.sessions.get(conv.session_id)
    assert (session.title, session.engine, session.model, session.params) == ("hi there", "fake", "m1",
                                                                              {"temperature": 0.2})
    user, reply = await store.sessions.messages(conv.session_id)
    assert (user.role, user.content) == ("user", "hi there")
    assert (reply.status, reply.content, reply.reasoning, reply.tokens_out, reply.token_source) == (
        "complete", "Hello world", "hmm ", 5, "server usage")
    assert reply.params == {"temperature": 0.2} and reply.engine == "fake" and reply.model == "m1"
    assert reply.ttft_ms == pytest.approx(f.ttft_ms)


async def test_reply_row_exists_before_the_first_token(store):
    seen = {}

    class Peek(ScriptedEngine):
        async def chat(self, request):
            rows = await store.sessions.messages(conv.session_id)
            seen["rows"] = [(m.role, m.status) for m in rows]
            async for e in super().chat(request):
                yield e

    conv = Conversation(store, model="m")
    await run(conv.send(Peek(words("a")), "q"))
    assert seen["rows"] == [("user", "complete"), ("assistant", "partial")]


async def test_counted_chunks_are_marked_approximate(store):
    conv = Conversation(store, model="m")
    turn = conv.send(ScriptedEngine(words("a", "b", "c")), "q")
    await run(turn)
    assert turn.figures.tokens_out == 3 and turn.figures.token_source is TokenSource.CHUNKS
    assert turn.figures.approximate and turn.figures.describe().count("≈") == 2


async def test_text_is_flushed_while_streaming(store):
    snapshots = []

    class Slow(ScriptedEngine):
        async def chat(self, request):
            async for e in super().chat(request):
                yield e
                if conv.entries and conv.entries[-1].message_id:
                    snapshots.append((await store.sessions.message(conv.entries[-1].message_id)).content)

    conv = Conversation(store, model="m", flush_interval_s=0.05)
    script = []
    for i in range(6):
        script += [("content", f"w{i} "), ("sleep", 0.03)]
    await run(conv.send(Slow(script), "q"))
    # Mid-stream the row held a growing prefix of the reply, before the final save.
    partial = [s for s in snapshots if s and s != "w0 w1 w2 w3 w4 w5 "]
    assert partial and all("w0 w1 w2 w3 w4 w5 ".startswith(s) for s in partial)


async def test_cancel_keeps_partial_text_marked_cancelled(store):
    engine = ScriptedEngine([("content", "half an "), ("content", "answer"), ("sleep", 30), ("content", "never")])
    conv = Conversation(store, model="m")
    turn = conv.send(engine, "q")
    got = []
    both_words = asyncio.Event()

    async def consume():
        async for e in turn:
            got.append(e.text)
            if "".join(got) == "half an answer":
                both_words.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(both_words.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert turn.status == "cancelled"
    reply = (await store.sessions.messages(conv.session_id))[-1]
    assert (reply.status, reply.content, reply.tokens_out) == ("cancelled", "half an answer", 2)


@pytest.mark.parametrize("failure", ["event", "raise"])
async def test_engine_error_mid_stream_keeps_partial_text(store, failure):
    err = StreamError("connection reset mid-stream", engine="fake")
    step = ("error", err) if failure == "event" else ("raise", err)
    conv = Conversation(store, model="m")
    turn = conv.send(ScriptedEngine([("content", "partial "), step, ("content", "not reached")]), "q")
    events = await run(turn)
    assert events[-1].kind is EventKind.ERROR and events[-1].error is err
    assert (turn.status, turn.content) == ("error", "partial ")
    assert "connection reset" in turn.error
    reply = (await store.sessions.messages(conv.session_id))[-1]
    assert (reply.status, reply.content) == ("error", "partial ") and "connection reset" in reply.error


async def test_unreachable_engine_before_any_token(store):
    conv = Conversation(store, model="m")
    turn = conv.send(ScriptedEngine([("raise", UnreachableError("refused", engine="fake"))]), "q")
    await run(turn)
    assert turn.status == "error" and turn.figures.ttft_ms is None and turn.figures.tokens_out is None
    assert [m.role for m in await store.sessions.messages(conv.session_id)] == ["user", "assistant"]


async def test_store_failure_mid_stream_keeps_streaming_in_memory(store):
    class BreakDisk(ScriptedEngine):
        async def chat(self, request):
            async for e in super().chat(request):
                if e.text == "b":
                    await store.db.execute("PRAGMA query_only = ON")
                yield e

    conv = Conversation(store, model="m", flush_interval_s=0)
    turn = conv.send(BreakDisk(words("a", "b", "c")), "q")
    await run(turn)
    assert turn.status == "complete" and turn.content == "abc"
    assert turn.store_warning and "read-only" in turn.store_warning
    await store.db.execute("PRAGMA query_only = OFF")
    reply = (await store.sessions.messages(conv.session_id))[-1]
    assert reply.status == "partial" and "abc".startswith(reply.content)


async def test_store_failure_before_the_session_exists(store):
    await store.db.execute("PRAGMA query_only = ON")
    conv = Conversation(store, model="m")
    turn = conv.send(ScriptedEngine(words("ok")), "q")
    await run(turn)
    assert turn.content == "ok" and turn.status == "complete" and conv.session_id is None
    assert turn.store_warning and turn.message_id is None


async def test_without_a_store_everything_stays_in_memory():
    conv = Conversation(None, model="m")
    turn = conv.send(ScriptedEngine(words("x")), "q")
    await run(turn)
    assert turn.status == "complete" and conv.session_id is None and turn.store_warning is None
    assert [e.role for e in conv.entries] == ["user", "assistant"]


async def test_history_is_sent_and_resume_continues_the_session(store):
    conv = Conversation(store, model="m", system_prompt="sys")
    await run(conv.send(ScriptedEngine(words("one")), "first"))
    resumed = await Conversation.resume(store, conv.session_id)
    assert (resumed.model, resumed.system_prompt) == ("m", "sys")
    assert resumed.entries[1].figures.token_source is TokenSource.CHUNKS
    engine = ScriptedEngine(words("two"))
    await run(resumed.send(engine, "second"))
    assert [(m.role, m.content) for m in engine.requests[0].messages] == [
        ("system", "sys"), ("user", "first"), ("assistant", "one"), ("user", "second")]
    assert [m.content for m in await store.sessions.messages(conv.session_id)] == ["first", "one", "second", "two"]


async def test_regenerate_replaces_the_last_reply(store):
    conv = Conversation(store, model="m")
    await run(conv.send(ScriptedEngine(words("bad")), "q"))
    engine = ScriptedEngine(words("good"))
    turn = conv.regenerate(engine)
    await run(turn)
    assert [(m.role, m.content) for m in engine.requests[0].messages] == [("user", "q")]
    assert [m.content for m in await store.sessions.messages(conv.session_id)] == ["q", "good"]
    assert [e.content for e in conv.entries] == ["q", "good"]


async def test_edit_last_user_message_and_resend(store):
    conv = Conversation(store, model="m")
    await run(conv.send(ScriptedEngine(words("a1")), "q1"))
    await run(conv.send(ScriptedEngine(words("a2")), "q2 with typo"))
    engine = ScriptedEngine(words("a2 fixed"))
    await run(conv.edit_last(engine, "q2"))
    assert [m.content for m in engine.requests[0].messages] == ["q1", "a1", "q2"]
    assert [m.content for m in await store.sessions.messages(conv.session_id)] == ["q1", "a1", "q2", "a2 fixed"]


async def test_nothing_to_regenerate_is_a_clear_error():
    with pytest.raises(EngineDeckError, match="no user message"):
        Conversation(None, model="m").regenerate(ScriptedEngine())


async def test_changed_settings_are_saved_on_the_next_turn(store):
    conv = Conversation(store, model="m")
    await run(conv.send(ScriptedEngine(words("a")), "q"))
    conv.model, conv.params = "m2", ChatParams(max_tokens=64)
    await run(conv.send(ScriptedEngine(words("b"), name="other"), "q2"))
    session = await store.sessions.get(conv.session_id)
    assert (session.model, session.engine, session.params) == ("m2", "other", {"max_tokens": 64})


async def test_a_turn_runs_once():
    turn = Conversation(None, model="m").send(ScriptedEngine(words("a")), "q")
    await run(turn)
    with pytest.raises(RuntimeError):
        await run(turn)


def test_figures_line():
    f = Figures(ttft_ms=212.4, tokens_out=64, tok_s=158.31, token_source=TokenSource.SERVER_USAGE)
    assert f.describe() == "TTFT 212 ms · 64 tokens (server usage) · 158.3 tok/s"
    assert Figures().describe() == "TTFT — · — tokens · — tok/s"


def test_params_merge_and_round_trip():
    p = ChatParams(temperature=0.5, max_tokens=10).merged(ChatParams(max_tokens=20))
    assert p.as_dict() == {"temperature": 0.5, "max_tokens": 20}
    assert ChatParams.from_mapping({"top_p": 0.9, "unknown": 1}) == ChatParams(top_p=0.9)


async def test_an_engine_that_cannot_chat_is_refused_before_anything_is_written(store):
    engine = ScriptedEngine(words("a"), unsupported={Op.CHAT: "this server only embeds"})
    conv = Conversation(store, model="m")
    with pytest.raises(UnsupportedError, match="only embeds"):
        await run(conv.send(engine, "q"))
    assert await store.sessions.list() == [] and engine.requests == []


async def test_cancel_landing_in_the_consumers_own_await_still_closes_the_turn(store):
    import contextlib

    conv = Conversation(store, model="m")
    turn = conv.send(ScriptedEngine(words("first ", "second")), "q")
    waiting = asyncio.Event()

    async def consume():
        events = aiter(turn)
        async with contextlib.aclosing(events):
            async for _ in events:
                waiting.set()
                await asyncio.Event().wait()  # a slow renderer: the cancel arrives here, not in the turn

    task = asyncio.create_task(consume())
    await asyncio.wait_for(waiting.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert turn.status == "cancelled"
    reply = (await store.sessions.messages(conv.session_id))[-1]
    assert (reply.status, reply.content) == ("cancelled", "first ")
