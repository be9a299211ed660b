"""Headless tables at 80 columns: they fit, names are elided in the middle, columns go by priority, numbers stay
whole, --wide shows everything, $COLUMNS is followed."""

from __future__ import annotations

import io
import json
import re

import pytest

from console.cli import main
from console.commands.output import Col, print_table
from console.present.format import cell_width, elide_middle
from console.services import Context
from tests.fakes.ollama_server import FakeModel, FakeOllama

LONG_ENGINE = "gpu-node-17-ollama-production-primary"
LONG_MODEL = "hf.co/bartowski/Meta-Llama-3.1-70B-Instruct-GGUF:Q4_K_M"


def lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line]


def table(columns, rows, width):
    out = io.StringIO()
    print_table(columns, rows, out, width=width)
    return out.getvalue()


def test_elide_middle_keeps_both_ends():
    assert elide_middle("gpu-node-17-ollama-production-primary", 15) == "gpu-nod…primary"
    assert elide_middle("short", 15) == "short"
    assert elide_middle("模型名字很长很长", 9) == "模型…很长" and cell_width("模型…很长") == 9


def test_names_give_way_then_columns_by_priority_and_numbers_stay_whole(capsys):
    cols = [Col("NAME", "middle", keep=9, min=12), Col("NOTE", "end", keep=2, min=10), Col("SIZE", keep=6, right=True),
            Col("CONTEXT", keep=1, right=True)]
    rows = [(LONG_ENGINE, "a note that is rather long and goes on", "123.4 GB", 131072)]
    wide = table(cols, rows, None)
    assert LONG_ENGINE in wide and "131072" in wide
    at40 = table(cols, rows, 40)
    assert all(cell_width(line) <= 40 for line in lines(at40))
    assert "123.4 GB" in at40 and "CONTEXT" not in at40 and "131072" not in at40  # lowest keep went first
    assert re.search(r"\bgpu-node\S*…\S*primary\b", at40)
    assert "CONTEXT" in capsys.readouterr().err  # says what was left out and how to see it
    at30 = table(cols, rows, 30)
    assert all(cell_width(line) <= 30 for line in lines(at30)) and "NOTE" not in at30 and "123.4 GB" in at30


def test_a_wrap_column_folds_at_spaces_under_its_own_column():
    cols = [Col("check", keep=9), Col("detail", "wrap", keep=8, min=20)]
    out = table(cols, [("config", "the file is writable by group or others (0664): chmod go-w file")], 40)
    assert all(cell_width(line) <= 40 for line in lines(out))
    body = lines(out)[1:]
    assert len(body) > 1 and all(line.startswith(" " * 8) for line in body[1:])
    assert " ".join(line.strip() for line in body).endswith("chmod go-w file")


@pytest.fixture
def long_names(ollama_server: FakeOllama, write_config) -> FakeOllama:
    model = FakeModel(LONG_MODEL, parameter_size="70.6B", quantization_level="Q4_K_M", size=42_520_395_584,
                      vram_fraction=0.8)
    ollama_server.add_model(model)
    ollama_server.load(model, None, None)
    ollama_server.load(ollama_server.resolve("gemma3:4b"), None, None)
    write_config({LONG_ENGINE: ollama_server.url})
    return ollama_server


@pytest.mark.parametrize("command", ["ps", "models", "engines"])
def test_fleet_tables_fit_80_columns(command, long_names, isolated, capsys):
    assert main([command, "--no-discover", "--config", str(isolated)]) == 0
    out = capsys.readouterr().out
    assert all(cell_width(line) <= 80 for line in lines(out)), out
    assert re.search(r"\bgpu-\S*mary\b", out)  # whole, or elided in the middle: both ends kept
    if command == "ps":
        assert "39.7 GB  31.8 GB (20%/80% CPU/GPU)" in out and "gemma3:4b " in out  # figures whole, short names too


def test_wide_and_columns(long_names, isolated, capsys, monkeypatch):
    assert main(["ps", "--wide", "--no-discover", "--config", str(isolated)]) == 0
    out = capsys.readouterr().out
    assert LONG_ENGINE in out and LONG_MODEL in out and "UNTIL/STATUS" in out
    assert max(cell_width(line) for line in lines(out)) > 80
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["ps", "--no-discover", "--config", str(isolated)]) == 0
    assert capsys.readouterr().out == out


def test_probe_table_keeps_the_verdict_columns_at_80(tmp_path, monkeypatch, synthetic_engine, capsys):
    sim = synthetic_engine(ttft_s=0.05, itl_s=0.01, tokens=8, slots=2)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[engines]]\nname = "{LONG_ENGINE}"\nurl = "{sim.url}"\nkind = "openai"\n')
    monkeypatch.setenv("ENGINEDECK_CONFIG", str(cfg))

    class Sink:
        async def record(self, action, **kw):
            return None

    async def audit(self):
        return Sink()

    monkeypatch.setattr(Context, "audit", audit)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)  # the live progress line, rewritten in place
    assert main(["probe", LONG_ENGINE, "synthetic", "--levels", "1,2", "--requests", "2", "--max-tokens", "8",
                 "--no-discover"]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"\r\x1b\[2Kc=2: \d+ requests, 0 errors\n", err)
    rows = lines(out)
    start = next(i for i, line in enumerate(rows) if line.lstrip().startswith("C "))
    end = next(i for i, line in enumerate(rows) if line.startswith("Max usable"))
    assert all(cell_width(line) <= 80 for line in rows[start:end]), out
    header = rows[start]
    for verdict_column in ("ERR", "TTFT p90", "DECODE p10", "TOK/S", "SLO"):
        assert verdict_column in header
    assert re.search(r"\d+ ms", out)  # a figure and its unit on one line, never wrapped
    assert main(["probe", "history", "--no-discover"]) == 0
    assert all(cell_width(line) <= 80 for line in lines(capsys.readouterr().out))
    assert main(["probe", "history", "--json", "--no-discover"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["engine"] == LONG_ENGINE


def test_history_list_and_search_fit_80_columns(env, capsys):
    from tests.unit.test_conversation import ScriptedEngine, words

    env["engine"] = ScriptedEngine(words("a reply about " + "very " * 40 + "long things"), name=LONG_ENGINE)
    assert main(["chat", LONG_ENGINE, LONG_MODEL, "a question with a title far longer than any column " * 2]) == 0
    capsys.readouterr()
    assert main(["history", "list"]) == 0
    out = capsys.readouterr().out
    assert all(cell_width(line) <= 80 for line in lines(out)), out
    assert "hf.co/" in out and "_K_M" in out
    assert main(["history", "search", "long"]) == 0
    out = capsys.readouterr().out
    assert all(cell_width(line) <= 80 for line in lines(out)) and "«long»" in out and "…" in out


def test_audit_list_and_doctor_fit_80_columns(isolated, capsys):
    import asyncio

    from console.audit.trail import AuditTrail
    from console.config import load_config
    from console.store.db import Store

    async def record() -> None:
        config = load_config(None)
        store = await Store.open(config.db_path)
        try:
            await AuditTrail.for_config(config, store.audit).record(
                "swap", engine=LONG_ENGINE, target=LONG_MODEL, params={}, result="error: " + "no room " * 20,
                duration_s=12.5)
        finally:
            await store.close()

    asyncio.run(record())
    assert main(["audit", "list"]) == 0
    out = capsys.readouterr().out
    assert all(cell_width(line) <= 80 for line in lines(out)), out
    assert "swap" in out and "error: no room" in out and "hf.co/" in out
    main(["doctor", "--no-discover"])
    out = capsys.readouterr().out
    assert all(cell_width(line) <= 80 for line in lines(out)), out
    assert "database" in out
