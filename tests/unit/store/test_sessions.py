"""Sessions, messages, FTS search, export and import."""

import pytest

from console.errors import StoreError
from console.store.sessions import fts_query, split_hits


async def test_session_lifecycle(store):
    s = await store.sessions.create(title="first", engine="ollama", model="m", system_prompt="be brief",
                                    params={"temperature": 0.3})
    await store.sessions.add_message(s.id, "user", "hello")
    got = await store.sessions.get(s.id)
    assert (got.title, got.system_prompt, got.params, got.message_count) == ("first", "be brief",
                                                                             {"temperature": 0.3}, 1)
    await store.sessions.rename(s.id, "renamed")
    await store.sessions.set_archived(s.id, True)
    assert await store.sessions.list() == []
    assert [x.title for x in await store.sessions.list(archived=True)] == ["renamed"]
    await store.sessions.set_archived(s.id, False)
    await store.sessions.delete(s.id)
    assert await store.sessions.get(s.id) is None
    # Messages went with the session, and so did their index entries.
    assert (await store.db.fetchone("SELECT count(*) FROM messages"))[0] == 0
    assert await store.sessions.search("hello") == []


async def test_unknown_session_is_a_clear_error(store):
    for call in (store.sessions.rename(99, "x"), store.sessions.set_archived(99, True), store.sessions.delete(99),
                 store.sessions.require(99)):
        with pytest.raises(StoreError, match="no session 99"):
            await call


async def test_streaming_updates_keep_the_index_in_sync(store):
    s = await store.sessions.create(title="t")
    mid = await store.sessions.add_message(s.id, "assistant", "", status="partial", params={"top_p": 0.9})
    await store.sessions.update_message(mid, content="partial answer about zebras")
    assert [h.message_id for h in await store.sessions.search("zebras")] == [mid]
    await store.sessions.update_message(mid, content="final answer about giraffes", status="complete",
                                        tokens_out=4, token_source="server usage")
    assert await store.sessions.search("zebras") == []
    assert [h.message_id for h in await store.sessions.search("giraffes")] == [mid]
    m = await store.sessions.message(mid)
    assert (m.status, m.tokens_out, m.params) == ("complete", 4, {"top_p": 0.9})
    with pytest.raises(ValueError):
        await store.sessions.update_message(mid, session_id=2)


async def test_search_finds_newest_first_and_marks_hits(store):
    s = await store.sessions.create(title="animals")
    first = await store.sessions.add_message(s.id, "user", "tell me about the quick brown fox")
    newest = await store.sessions.add_message(s.id, "assistant", "fox fox fox: a fox is a small canid")
    await store.sessions.add_message(s.id, "user", "thanks, nothing about that animal here")
    hits = await store.sessions.search("fox")
    assert [h.message_id for h in hits] == [newest, first]
    for h in hits:
        assert h.hits and all(h.snippet[a:b].lower() == "fox" for a, b in h.hits)
    assert [h.session_title for h in hits] == ["animals", "animals"]
    assert len(await store.sessions.search("fox", limit=1)) == 1


@pytest.mark.parametrize("typed", ['fox AND', 'NEAR(', '"unbalanced', 'a:b', '***', '(', "col:fox", "-fox"])
async def test_fts_syntax_in_a_query_is_not_an_error(store, typed):
    s = await store.sessions.create(title="t")
    await store.sessions.add_message(s.id, "user", "fox a b")
    await store.sessions.search(typed)  # must not raise


def test_fts_query_shapes():
    assert fts_query("brown fox") == '"brown" "fox"'
    assert fts_query('"brown fox" jump*') == '"brown fox" "jump"*'
    assert fts_query("cat OR dog") == '"cat" OR "dog"'
    assert fts_query('say "hi') == '"say" "hi"'
    assert fts_query('OR') == '"OR"'  # a lone OR is a word to look for
    assert fts_query("   ") == ""


def test_split_hits():
    assert split_hits("a \ue000fox\ue001 b \ue000fox\ue001") == ("a fox b fox", ((2, 5), (8, 11)))


async def test_export_import_round_trip(store):
    s = await store.sessions.create(title="trip", engine="e", model="m", system_prompt="sys", params={"seedless": 1})
    await store.sessions.add_message(s.id, "user", "q \x1b[31m [bold]raw[/]")
    a = await store.sessions.add_message(s.id, "assistant", "", status="partial", engine="e", model="m",
                                         params={"temperature": 0.1})
    await store.sessions.update_message(a, content="answer", reasoning="because", ttft_ms=12.5, tokens_in=3,
                                        tokens_out=9, tok_s=44.0, token_source="counted chunks", status="error",
                                        error="boom")
    doc = await store.sessions.export(s.id)
    new_id = await store.sessions.import_session(doc)
    assert new_id != s.id
    again = await store.sessions.export(new_id)
    assert again["messages"] == doc["messages"]
    assert {k: v for k, v in again["session"].items() if k != "id"} == \
           {k: v for k, v in doc["session"].items() if k != "id"}
    assert again["messages"][0]["content"] == "q \x1b[31m [bold]raw[/]"  # stored exactly


@pytest.mark.parametrize("doc, why", [
    ({}, "not an enginedeck-session"),
    ({"format": "enginedeck-session", "version": 9}, "unknown version"),
    ({"format": "enginedeck-session", "version": 1, "session": {}, "messages": []}, "created_at"),
    ({"format": "enginedeck-session", "version": 1, "session": {"created_at": 1, "updated_at": 1},
      "messages": [{"role": "wizard", "created_at": 1}]}, "role"),
    ({"format": "enginedeck-session", "version": 1, "session": {"created_at": 1, "updated_at": 1},
      "messages": [{"role": "user", "created_at": 1, "status": "odd"}]}, "status"),
])
async def test_import_rejects_bad_documents(store, doc, why):
    with pytest.raises(StoreError, match=why):
        await store.sessions.import_session(doc)
    assert await store.sessions.list() == []


async def test_delete_messages_from(store):
    s = await store.sessions.create()
    ids = [await store.sessions.add_message(s.id, "user", str(i)) for i in range(4)]
    await store.sessions.delete_messages_from(s.id, ids[2])
    assert [m.content for m in await store.sessions.messages(s.id)] == ["0", "1"]
