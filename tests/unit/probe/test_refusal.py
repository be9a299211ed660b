"""A probe the engine refuses outright (a model it does not have, a key it wants) stops with the engine's own
error instead of reporting a "complete" run of 100 % errors: the core (`refused`, `Probe.run`), the CLI (one
line, exit 1, the run kept as "error"), and the TUI probe screen."""

from __future__ import annotations

import json

import pytest
from textual.widgets import Input, Static

from console.cli import main
from console.config import SLO, EngineConfig
from console.engines.registry import build_engine
from console.probe.ladder import Probe, refused
from console.probe.params import ProbeParams
from console.probe.record import ErrorKind, RequestRecord
from console.ui.app import EngineDeckApp
from tests.fakes.ollama_server import ollama_contract_server
from tests.ui.fixtures import TestContext, make_config, settle


def rec(status: int | None, message: str = "", ok: bool = False) -> RequestRecord:
    return RequestRecord(index=0, tag="t", warmup=False, t_send_ns=0, t_end_ns=1,
                         error=None if ok else ErrorKind.HTTP_4XX, error_message=message, http_status=status)


def test_refused_rules():
    nf = rec(404, "e: answered 404 to chat: model 'x' not found")
    assert refused([rec(None, ok=True), nf], first=False) == nf.error_message  # a 404 at any level, any share
    assert refused([rec(401, "e: answered 401\x1b]0;t\x07 x"), rec(401, "again")], first=True) == "e: answered 401 x"
    assert refused([rec(401, "a"), rec(401, "b")], first=False) is None  # later levels: measured, not refused
    assert refused([rec(401, "a"), rec(400, "b")], first=True) is None  # no single answer
    assert refused([rec(401, "a"), rec(None, ok=True)], first=True) is None  # one got through
    assert refused([rec(429, "busy"), rec(429, "busy")], first=True) is None  # overload is what a probe measures
    assert refused([rec(500, "boom"), rec(500, "boom")], first=True) is None
    assert refused([], first=True) is None


async def test_unknown_model_stops_the_ladder_with_the_404():
    with ollama_contract_server() as fake:
        params = ProbeParams(levels=(1, 2, 4), requests=3, max_tokens=4)
        engine = build_engine(EngineConfig(name="o", url=fake.url, kind="ollama"), "ollama",
                              max_connections=params.connections)
        try:
            result = await Probe(engine, "no-such-model", params, SLO()).run()
        finally:
            await engine.aclose()
    assert result.status == "error"
    assert result.error is not None and "404" in result.error and "no-such-model" in result.error
    assert result.levels == []  # the preflight request met it: no level was measured
    assert result.verdict is not None and result.verdict.stopped == f"stopped before c=1: {result.error}"


@pytest.fixture
def probe_cli(tmp_path, monkeypatch):
    """`run(*argv, **fake knobs)` → (exit code, stdout, stderr, the stored runs, the audit trail's records)."""

    def run(*argv: str, capsys: pytest.CaptureFixture[str], **knobs: object) -> tuple[int, str, str, list, list]:
        with ollama_contract_server(**knobs) as fake:
            cfg = tmp_path / "config.toml"
            cfg.write_text(f'[[engines]]\nname = "o"\nurl = "{fake.url}"\nkind = "ollama"\n')
            monkeypatch.setenv("ENGINEDECK_CONFIG", str(cfg))
            monkeypatch.setenv("ENGINEDECK_DATA_DIR", str(tmp_path / "data"))
            code = main(["probe", "o", *argv, "--levels", "1,2", "--requests", "2", "--max-tokens", "4",
                         "--no-discover"])
        out = capsys.readouterr()
        main(["probe", "history", "--json", "--no-discover"])
        runs = json.loads(capsys.readouterr().out)
        trail = [json.loads(line) for line in (tmp_path / "data" / "audit.jsonl").read_text().splitlines()]
        return code, out.out, out.err, runs, trail

    return run


def test_cli_unknown_model_exits_1_with_the_engine_error(probe_cli, capsys):
    code, out, err, runs, trail = probe_cli("no-such-model", capsys=capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("enginedeck: o: answered 404") and "no-such-model" in err
    assert runs[0]["status"] == "error" and trail[-1]["result"] == "error"


def test_cli_json_also_exits_1_with_one_line(probe_cli, capsys):
    code, out, err, _, _ = probe_cli("no-such-model", "--json", capsys=capsys)
    assert code == 1 and out == "" and "answered 404" in err


def test_cli_every_request_401_stops_with_it(probe_cli, capsys):
    code, out, err, runs, _ = probe_cli("llama3.2:1b", capsys=capsys, require_token="s3cret-token")
    assert code == 1 and out == "" and "answered 401" in err and "api_key_env" in err
    assert runs[0]["status"] == "error"


def test_cli_a_model_that_exists_still_completes(probe_cli, capsys):
    code, out, _, runs, _ = probe_cli("llama3.2:1b", capsys=capsys)
    assert code == 0 and runs[0]["status"] == "complete" and "Max usable concurrency" in out


async def test_probe_screen_shows_the_engine_error(tmp_path):
    with ollama_contract_server() as fake:
        config = make_config(tmp_path, engines=[EngineConfig(name="o", url=fake.url, kind="ollama")])
        app = EngineDeckApp(TestContext(config))
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot, until=lambda: app.store is not None and app.engines_ready)
            await pilot.press("4")
            await settle(pilot, until=lambda: app.screen.query_one("#engine").value == "o")
            screen = app.screen
            screen.query_one("#model", Input).value = "no-such-model"
            screen.query_one("#levels", Input).value = "1,2"
            screen.query_one("#requests", Input).value = "2"
            screen.query_one("#max-tokens", Input).value = "4"
            screen.query_one("#levels-table").focus()
            await pilot.press("r")
            verdict = screen.query_one("#verdict", Static)
            await settle(pilot, until=lambda: "404" in str(verdict.render()) and not screen.running, timeout_s=30)
            shown = str(verdict.render())
            assert "error" in shown and "stopped before c=1: o: answered 404" in shown and "no-such-model" in shown
            assert (await app.store.probes.recent())[0].status == "error"
