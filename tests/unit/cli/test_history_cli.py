"""`enginedeck history ...` over a real database file, and two processes writing it at once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from console import cli
from tests.unit.cli import test_chat_cli
from tests.unit.test_conversation import ScriptedEngine, words

HOSTILE, messages = test_chat_cli.HOSTILE, test_chat_cli.messages


def chat(env, prompt, *reply, extra=()):
    env["engine"] = ScriptedEngine(words(*reply), name="lab")
    assert cli.main(["chat", "lab", "m", prompt, *extra]) == 0


def run_json(capsys, *argv):
    capsys.readouterr()
    assert cli.main(["history", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_list_show_rename_archive_delete(env, capsys):
    chat(env, "about zebras", "zebras have stripes")
    chat(env, "about owls", "owls hoot", extra=("--temperature", "0.7"))
    listed = run_json(capsys, "list")
    assert [s["title"] for s in listed] == ["about owls", "about zebras"]
    assert listed[0]["message_count"] == 2 and listed[0]["params"] == {"temperature": 0.7}

    shown = run_json(capsys, "show", "2")
    assert [m["content"] for m in shown["messages"]] == ["about owls", "owls hoot"]
    assert shown["messages"][1]["token_source"] == "counted chunks"
    assert cli.main(["history", "show", "2"]) == 0
    text = capsys.readouterr().out
    assert "owls hoot" in text and "≈1 tokens (counted chunks)" in text

    assert cli.main(["history", "rename", "2", "Owl facts"]) == 0
    assert cli.main(["history", "archive", "2"]) == 0
    assert [s["title"] for s in run_json(capsys, "list")] == ["about zebras"]
    assert [s["title"] for s in run_json(capsys, "list", "--archived")] == ["Owl facts"]
    assert cli.main(["history", "unarchive", "2"]) == 0

    assert cli.main(["history", "delete", "1"]) == 2  # no --yes
    assert "--yes" in capsys.readouterr().err
    assert cli.main(["history", "delete", "1", "--yes"]) == 0
    assert [s["id"] for s in run_json(capsys, "list")] == [2]
    assert cli.main(["history", "show", "1"]) == 1
    assert "no session 1" in capsys.readouterr().err


def test_search_marks_hits(env, capsys, monkeypatch):
    chat(env, "tell me about foxes", "the quick brown fox jumps")
    hits = run_json(capsys, "search", "fox")
    assert len(hits) == 1 and hits[0]["role"] == "assistant"
    (start, end), = hits[0]["hits"]
    assert hits[0]["snippet"][start:end] == "fox"
    assert cli.main(["history", "search", "fox"]) == 0
    assert "brown «fox» jumps" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert cli.main(["history", "search", "fox"]) == 0
    assert "brown \x1b[1mfox\x1b[0m jumps" in capsys.readouterr().out
    assert cli.main(["history", "search", "nothing-like-this"]) == 0


def test_search_on_a_terminal_neutralises_hostile_text(env, capsys, monkeypatch):
    chat(env, "q", HOSTILE + " needle")
    capsys.readouterr()
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert cli.main(["history", "search", "needle"]) == 0
    out = capsys.readouterr().out
    assert "\x07" not in out and "\x1b]" not in out and "\x1b[2J" not in out
    assert "ab [bold]c[/] \x1b[1mneedle\x1b[0m" in out


def test_export_markdown_and_json_then_import_round_trip(env, capsys, tmp_path):
    chat(env, "q1", "a1", extra=("--system", "be brief", "--top-p", "0.9"))
    md = tmp_path / "s.md"
    assert cli.main(["history", "export", "1", "-o", str(md)]) == 0
    text = md.read_text()
    front = text.split("---\n")[1]
    assert 'engine: "lab"' in front and 'model: "m"' in front and '"top_p": 0.9' in front
    assert 'system_prompt: "be brief"' in front
    assert "## assistant · m on lab" in text and "> TTFT" in text and "(counted chunks)" in text

    js = tmp_path / "s.json"
    assert cli.main(["history", "export", "1", "--format", "json", "-o", str(js)]) == 0
    assert run_json(capsys, "import", str(js)) == {"session_id": 2}
    a, b = (run_json(capsys, "show", str(i)) for i in (1, 2))
    strip = [{k: v for k, v in m.items() if k != "id"} for m in a["messages"]]
    assert strip == [{k: v for k, v in m.items() if k != "id"} for m in b["messages"]]

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli.main(["history", "import", str(bad)]) == 1
    assert "not JSON" in capsys.readouterr().err


def test_export_to_stdout_is_raw_when_piped(env, capsys):
    chat(env, "q", HOSTILE)
    capsys.readouterr()
    assert cli.main(["history", "export", "1", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["messages"][1]["content"] == HOSTILE


WRITER = """
import asyncio, sys
from pathlib import Path
from console.store.db import Store

async def main(path, tag, n):
    store = await Store.open(Path(path))
    session = await store.sessions.create(title=tag)
    for i in range(n):
        mid = await store.sessions.add_message(session.id, "assistant", "", status="partial")
        await store.sessions.update_message(mid, content=f"{tag} message {i}", status="complete")
        await store.model_events.record(engine=tag, engine_kind=None, model=None, op="load", duration_s=0, ok=True)
    await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def test_two_processes_write_the_same_database_at_once(tmp_path):
    db = tmp_path / "shared.db"
    environ = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), tag, "150"], env=environ,
                              stderr=subprocess.PIPE, text=True) for tag in ("alpha", "beta")]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert not any("locked" in e for e in errors)
    sessions, msgs = messages(db)
    assert sorted(s.title for s in sessions) == ["alpha", "beta"]
    assert len(msgs) == 300 and all(m.status == "complete" for m in msgs)


@pytest.mark.parametrize("argv", [["history"], ["history", "show"], ["history", "export", "1", "--format", "pdf"]])
def test_usage_errors_exit_2(env, argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2


def test_export_json_flag_prints_json(env, capsys):
    chat(env, "q", "a")
    capsys.readouterr()
    assert cli.main(["history", "export", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "enginedeck-session" and doc["messages"][1]["content"] == "a"


def test_search_past_its_time_limit_says_so_and_exits_1(env, capsys, monkeypatch):
    chat(env, "q", "needle")
    capsys.readouterr()
    from console.store import sessions

    monkeypatch.setattr(sessions, "SEARCH_TIME_LIMIT_S", 1e-9)
    assert cli.main(["history", "search", "needle"]) == 1
    assert "stopped at its time limit with 0 hits" in capsys.readouterr().err
    assert cli.main(["history", "search", "needle", "--time-limit", "30"]) == 0
    assert "needle" in capsys.readouterr().out


@pytest.mark.parametrize("limit", ["0", "-1", "nan", "inf", "soon"])
def test_search_time_limit_must_be_a_positive_number(env, capsys, limit):
    with pytest.raises(SystemExit) as exc:
        cli.main(["history", "search", "x", "--time-limit", limit])
    assert exc.value.code == 2 and "above 0" in capsys.readouterr().err
