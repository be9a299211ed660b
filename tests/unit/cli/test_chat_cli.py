"""`enginedeck chat`: streaming to stdout, figures on stderr, --json, sessions, errors, untrusted text."""

import asyncio
import io
import json

from console import cli
from console.engines.base import Usage
from console.errors import StreamError
from console.store.db import Store
from tests.unit.test_conversation import ScriptedEngine, words

HOSTILE = "a\x1b[2J\x1b]52;c;ZXZpbA==\x07b [bold]c[/]"


def messages(db):
    async def read():
        store = await Store.open(db)
        try:
            sessions = await store.sessions.list()
            return sessions, [m for s in sessions for m in await store.sessions.messages(s.id)]
        finally:
            await store.close()

    return asyncio.run(read())


def test_streams_reply_and_prints_figures(env, capsys):
    env["engine"] = ScriptedEngine(words("Hel", "lo", usage=Usage(prompt_tokens=3, completion_tokens=2)))
    assert cli.main(["chat", "lab", "m1", "hi", "--temperature", "0.3", "--max-tokens", "8"]) == 0
    out, err = capsys.readouterr()
    assert out == "Hello\n"
    assert "TTFT" in err and "2 tokens (server usage)" in err and "tok/s" in err and "≈" not in err
    assert env["ref"] == "lab"
    req = env["engine"].requests[0]
    assert (req.model, req.temperature, req.max_tokens) == ("m1", 0.3, 8)
    sessions, msgs = messages(env["db"])
    assert len(sessions) == 1 and [(m.role, m.content, m.status) for m in msgs] == [
        ("user", "hi", "complete"), ("assistant", "Hello", "complete")]


def test_prompt_from_stdin_and_json(env, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin"))
    env["engine"] = ScriptedEngine([("reasoning", "think"), *words("a", "b")])
    assert cli.main(["chat", "lab", "m", "--json", "--system", "sys"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["reply"], doc["reasoning"], doc["status"], doc["tokens_out"]) == ("ab", "think", "complete", 3)
    assert doc["token_source"] == "counted chunks" and doc["approximate"] is True and doc["session_id"] == 1
    assert [m.content for m in env["engine"].requests[0].messages] == ["sys", "from stdin"]


def test_empty_prompt_is_refused(env, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("  \n"))
    assert cli.main(["chat", "lab", "m"]) == 1
    assert "empty prompt" in capsys.readouterr().err


def test_error_mid_stream_keeps_partial_and_exits_1(env, capsys):
    env["engine"] = ScriptedEngine([("content", "half"), ("error", StreamError("reset", engine="lab"))])
    assert cli.main(["chat", "lab", "m", "q"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("half") and "reset" in err
    _, msgs = messages(env["db"])
    assert (msgs[-1].status, msgs[-1].content) == ("error", "half")


def test_no_save_writes_nothing(env, capsys):
    assert cli.main(["chat", "lab", "m", "q", "--no-save"]) == 0
    assert not env["db"].exists()


def test_session_continues(env, capsys):
    assert cli.main(["chat", "lab", "m", "first", "--temperature", "0.5"]) == 0
    env["engine"] = ScriptedEngine(words("again"))
    assert cli.main(["chat", "lab", "m2", "second", "--session", "1"]) == 0
    req = env["engine"].requests[0]
    assert [m.content for m in req.messages] == ["first", "hello", "second"]
    assert req.temperature == 0.5 and req.model == "m2"
    assert cli.main(["chat", "lab", "m", "x", "--session", "99"]) == 1
    assert "no session 99" in capsys.readouterr().err


def test_output_is_inert_on_a_terminal_and_in_a_pipe_and_raw_on_request(env, capsys, monkeypatch):
    for tty in (False, True):
        env["engine"] = ScriptedEngine([("reasoning", "think \x1b]0;title\x07"), *words(HOSTILE)])
        monkeypatch.setattr("sys.stdout.isatty", lambda tty=tty: tty)
        assert cli.main(["chat", "lab", "m", "q"]) == 0
        out, err = capsys.readouterr()
        assert out == "ab [bold]c[/]\n"
        assert "\x1b" not in err and "\x07" not in err and err.startswith("think \n")

    env["engine"] = ScriptedEngine(words(HOSTILE))
    assert cli.main(["chat", "lab", "m", "q", "--raw"]) == 0
    assert capsys.readouterr().out == HOSTILE + "\n"


def test_a_sequence_streamed_over_several_tokens_is_removed_whole(env, capsys):
    # A model writes OSC 52 a token at a time: the pieces of one sequence are held until it ends, then dropped.
    env["engine"] = ScriptedEngine(words("before ", "\x1b", "]52;", "c;ZXZp", "bA==", "\x07", " after \x1b[", "31",
                                         "m."))
    assert cli.main(["chat", "lab", "m", "q"]) == 0
    assert capsys.readouterr().out == "before  after .\n"


def test_unusable_history_does_not_stop_the_chat(env, capsys):
    env["db"].parent.mkdir(parents=True)
    env["db"].write_bytes(b"garbage" * 100)
    assert cli.main(["chat", "lab", "m", "q"]) == 0
    out, err = capsys.readouterr()
    assert out == "hello\n" and "history is off" in err and "corrupt" in err


def test_reasoning_goes_to_stderr_on_its_own_lines(env, capsys):
    env["engine"] = ScriptedEngine([("reasoning", "let me think"), *words("answer")])
    assert cli.main(["chat", "lab", "m", "q"]) == 0
    out, err = capsys.readouterr()
    assert out == "answer\n"
    assert err.splitlines()[0] == "let me think" and err.splitlines()[1].startswith("TTFT")


def test_a_model_the_engine_does_not_list_is_refused_before_anything_is_saved(cli, capsys, ollama_server):
    assert cli("chat", ollama_server.url, "no-such-model", "hi") == 1
    err = capsys.readouterr().err
    assert "does not serve a model named 'no-such-model'" in err and "gemma3:4b" in err
    assert not ollama_server.loaded_names()
    assert cli("history", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []
    # Ollama reads a name without a tag as :latest, and so does the check.
    assert cli("chat", ollama_server.url, "hostile", "hi", "--no-save") == 0


def test_read_only_chat_to_a_model_that_is_not_loaded_is_refused(cli, capsys, ollama_server):
    assert cli("chat", ollama_server.url, "llama3.2:1b", "hi", "--read-only") == 1
    err = capsys.readouterr().err
    assert "refused under --read-only" in err and "not loaded" in err and "may evict" in err
    assert not ollama_server.loaded_names()  # nothing was loaded
    ollama_server.load(ollama_server.resolve("llama3.2:1b"), None, None)
    assert cli("chat", ollama_server.url, "llama3.2:1b", "hi", "--read-only") == 0
    assert "sky looks blue" in capsys.readouterr().out
    assert ollama_server.loaded_names() == ["llama3.2:1b"]
