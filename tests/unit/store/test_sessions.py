"""Sessions, messages, FTS search, export and import."""

import asyncio
import threading
import time

import pytest

from console.errors import StoreError
from console.store.sessions import HitFinder, fts_query, parse_query


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


def snippet(query, text, cut=False):
    _, snip, hits = HitFinder(parse_query(query)).snippet(text, cut=cut)
    return snip, [snip[a:b] for a, b in hits]


def test_snippets_mark_what_the_index_matches():
    assert snippet("fox", "a Fox, a fox_den and foxes") == ("a Fox, a fox_den and foxes", ["Fox", "fox"])
    assert snippet("fox*", "foxes run") == ("foxes run", ["foxes"])
    assert snippet('"brown fox"', "the brown  fox; brown dog") == ("the brown  fox; brown dog", ["brown  fox"])
    assert snippet("cafe", "un Café crème") == ("un Café crème", ["Café"])
    assert snippet("a OR zebra", "zebra") == ("zebra", ["zebra"])


def test_snippet_is_a_window_around_the_best_hit():
    words = [f"w{i}" for i in range(200)]
    snip, marked = snippet("w100 w103", " ".join(words))
    assert snip.startswith("…w97 ") and snip.endswith(" w112…") and marked == ["w100", "w103"]
    # Nothing in the window (the match is further into a huge message): the start, unmarked, and … for the rest.
    snip, marked = snippet("w300", " ".join(words), cut=True)
    assert snip == " ".join(words[:16]) + "…" and marked == []


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


async def test_a_huge_message_of_one_repeated_word_is_searched_at_once(store):
    # FTS5's snippet() is quadratic in the hits of a row: 40 000 of them took 20 s here, 1 MB of them ~570 s.
    s = await store.sessions.create(title="huge")
    mid = await store.sessions.add_message(s.id, "user", "word " * 40_000)
    started = time.perf_counter()
    hits = await store.sessions.search("word")
    assert time.perf_counter() - started < 5
    assert hits.complete and [h.message_id for h in hits] == [mid]
    assert hits[0].snippet == "word " * 15 + "word…" and len(hits[0].hits) == 16


async def test_a_match_past_the_snippet_window_is_found_and_shown_unmarked(store):
    s = await store.sessions.create(title="long")
    mid = await store.sessions.add_message(s.id, "assistant", "filler " * 20_000 + "needle")
    hit, = await store.sessions.search("needle")
    assert hit.message_id == mid and hit.snippet == "filler " * 15 + "filler…" and hit.hits == ()


async def test_the_reasoning_gives_the_snippet_when_only_it_matches(store):
    s = await store.sessions.create(title="t")
    mid = await store.sessions.add_message(s.id, "assistant", "", status="partial")
    await store.sessions.update_message(mid, content="the answer", reasoning="thinking about zebras")
    hit, = await store.sessions.search("zebras")
    assert hit.snippet == "thinking about zebras" and [hit.snippet[a:b] for a, b in hit.hits] == ["zebras"]


async def test_a_search_past_its_time_limit_returns_what_it_found(store):
    s = await store.sessions.create(title="t")
    for i in range(30):
        await store.sessions.add_message(s.id, "user", f"common {i}")
    hits = await store.sessions.search("common", limit=100, time_limit_s=1e-9)
    assert not hits.complete and hits == []
    assert (await store.sessions.search("common", limit=100)).complete


async def test_the_progress_handler_interrupts_a_query_that_never_returns_a_row(store):
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
    started = time.perf_counter()
    rows, finished = await store.db.read_bounded(endless, (), tuple, time_limit_s=0.2)
    assert (rows, finished) == ([], False) and time.perf_counter() - started < 5


async def test_a_cancelled_search_stops_its_thread_and_frees_the_reader(store, monkeypatch):
    s = await store.sessions.create(title="t")
    for i in range(200):
        await store.sessions.add_message(s.id, "user", f"common {i}")
    rows_done = []
    running = threading.Event()
    real = HitFinder.snippet

    def slow(self, text, *, cut):
        rows_done.append(text)
        if len(rows_done) == 3:
            running.set()
        time.sleep(0.02)
        return real(self, text, cut=cut)

    monkeypatch.setattr(HitFinder, "snippet", slow)
    task = asyncio.create_task(store.sessions.search("common", limit=200, time_limit_s=60))
    assert await asyncio.to_thread(running.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.1)
    stopped_at = len(rows_done)
    assert stopped_at < 50  # the thread stopped at the next row, not after 200 rows (4 s)
    monkeypatch.setattr(HitFinder, "snippet", real)
    assert len(await asyncio.wait_for(store.sessions.search("common", limit=5), 5)) == 5
