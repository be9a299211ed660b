"""Probe runs in the store, and `enginedeck probe` end to end against the synthetic engine."""

import json

import pytest

from console.cli import main
from console.services import Context
from console.store.db import Store


async def test_repo_round_trip(tmp_path):
    store = await Store.open(tmp_path / "e.db")
    try:
        repo = store.probes
        run_id = await repo.start(engine="sim", engine_kind="openai", engine_version="1.0", model="m",
                                  params={"levels": [1, 2]}, slo={"ttft_p90_s": 1.0}, environment={"host": "h"})
        await repo.save_level(run_id, 2, {"concurrency": 2, "agg_tok_s": 20.0})
        await repo.save_level(run_id, 1, {"concurrency": 1, "agg_tok_s": 9.0})
        await repo.save_level(run_id, 1, {"concurrency": 1, "agg_tok_s": 10.0})  # c=1 again (the noise guard): kept
        running = await repo.get(run_id)
        assert running.status == "running" and running.finished_at is None
        await repo.finish(run_id, "cancelled", {"max_usable_concurrency": 1})
        run = await repo.get(run_id)
        assert run.status == "cancelled" and run.finished_at is not None
        assert [lv["agg_tok_s"] for lv in run.levels] == [20.0, 9.0, 10.0]  # in the order measured
        assert run.verdict == {"max_usable_concurrency": 1} and run.environment == {"host": "h"}
        other = await repo.start(engine="b", engine_kind=None, engine_version=None, model="m2", params={}, slo={})
        assert [r.id for r in await repo.recent()] == [other, run_id]
        assert [r.id for r in await repo.recent(engine="sim")] == [run_id]
        assert await repo.get(999) is None
        with pytest.raises(ValueError):
            await repo.finish(run_id, "running", None)
    finally:
        await store.close()


@pytest.fixture
def cli_env(tmp_path, monkeypatch, synthetic_engine):
    sim = synthetic_engine(ttft_s=0.05, itl_s=0.01, tokens=8, slots=2)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[engines]]\nname = "sim"\nurl = "{sim.url}"\nkind = "openai"\n')
    monkeypatch.setenv("ENGINEDECK_CONFIG", str(cfg))
    monkeypatch.setenv("ENGINEDECK_DATA_DIR", str(tmp_path / "data"))
    recorded = []

    class Sink:
        async def record(self, action, **kw):
            recorded.append((action, kw))

    async def audit(self):
        return Sink()

    monkeypatch.setattr(Context, "audit", audit)
    return recorded


def run_json(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip().startswith(("{", "[")) else out


def test_probe_command_saves_shows_and_compares(cli_env, capsys):
    code, doc = run_json(capsys, "probe", "sim", "synthetic", "--levels", "1,2,4", "--requests", "4",
                         "--max-tokens", "8", "--slo", "ttft_p90=110ms", "--precision", "0", "--json",
                         "--no-discover")
    assert code == 0
    assert doc["status"] == "complete" and doc["engine"] == "sim" and doc["model"] == "synthetic"
    # two slots: c=4 queues a whole reply (~120 ms) before its first token
    assert doc["max_usable_concurrency"] == 2, [(lv["concurrency"], lv["slo_fail_reasons"]) for lv in doc["levels"]]
    assert doc["token_source"] == "server usage"
    assert [lv["concurrency"] for lv in doc["levels"]] == [1, 2, 4]
    assert doc["levels"][2]["slo_pass"] is False and doc["levels"][2]["slo_fail_reasons"]
    assert "1" in doc["overhead"] and "ttft_s" in doc["definitions"]
    assert cli_env[0][0] == "probe start" and cli_env[0][1]["result"] == "complete"
    assert cli_env[0][1]["target"] == "synthetic"
    first = doc["run_id"]

    code, _ = run_json(capsys, "probe", "sim", "synthetic", "--levels", "1", "--requests", "2", "--max-tokens", "8",
                       "--json", "--no-discover")
    assert code == 0

    code, history = run_json(capsys, "probe", "history", "--json", "--no-discover")
    assert code == 0 and [h["run_id"] for h in history][-1] == first and len(history) == 2

    code, shown = run_json(capsys, "probe", "show", str(first), "--json", "--no-discover")
    assert shown["levels"] == doc["levels"] and shown["max_usable_concurrency"] == 2

    code, cmp = run_json(capsys, "probe", "compare", str(first), str(first + 1), "--json", "--no-discover")
    assert [r["concurrency"] for r in cmp["levels"]] == [1, 2, 4]
    assert cmp["levels"][2]["agg_tok_s"]["b"] is None  # the second run never reached c=4
    assert cmp["levels"][0]["agg_tok_s"]["delta_pct"] is not None

    code, text = run_json(capsys, "probe", "show", str(first), "--no-discover")
    assert "Max usable concurrency: 2" in text and "TTFT p90" in text and "p90 95% CI" in text
    code, md = run_json(capsys, "probe", "show", str(first), "--markdown", "--no-discover")
    assert md.startswith("**sim") and "| C |" in md
    code, csv_text = run_json(capsys, "probe", "show", str(first), "--csv", "--no-discover")
    assert csv_text.splitlines()[0].startswith("phase,c,ok,err") and len(csv_text.splitlines()) == 4


def test_probe_command_errors_are_one_line(cli_env, capsys):
    assert main(["probe", "show", "12345", "--no-discover"]) == 1
    assert "no probe run 12345" in capsys.readouterr().err
    assert main(["probe", "sim", "synthetic", "--levels", "4,2", "--no-discover"]) == 1
    assert "must rise" in capsys.readouterr().err
    assert main(["probe", "sim", "--no-discover"]) == 1
    assert "ENGINE MODEL" in capsys.readouterr().err
    assert main(["probe", "sim", "synthetic", "--read-only", "--no-discover"]) == 1
    assert "read-only" in capsys.readouterr().err


def test_probe_command_runs_a_level_in_worker_processes_and_records_it(cli_env, capsys):
    code, doc = run_json(capsys, "probe", "sim", "synthetic", "--levels", "1,4", "--requests", "8", "--max-tokens",
                         "8", "--workers", "2", "--json", "--no-discover")
    assert code == 0 and doc["status"] == "complete"
    assert doc["params"]["workers"] == 2
    assert doc["overhead"]["1"]["workers"] == 1 and doc["overhead"]["4"]["workers"] == 2
    assert doc["levels"][1]["ok"] == 8
    code, shown = run_json(capsys, "probe", "show", str(doc["run_id"]), "--json")
    assert code == 0 and shown["overhead"]["4"]["workers"] == 2  # stored with the run
    assert main(["probe", "sim", "synthetic", "--workers", "-1", "--no-discover"]) == 1
    assert "workers must be between 0 (automatic)" in capsys.readouterr().err


def test_probe_command_bisects_runs_the_noise_guard_and_fits_80_columns(cli_env, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, doc = run_json(capsys, "probe", "sim", "synthetic", "--levels", "1,4", "--requests", "4", "--max-tokens",
                         "8", "--slo", "ttft_p90=110ms", "--noise-guard", "--json", "--no-discover")
    assert code == 0 and doc["verdict_mode"] == "pessimistic"
    phases = [(lv["concurrency"], lv["phase"]) for lv in doc["levels"]]
    assert phases[:3] == [(1, "ladder"), (2, "bisection"), (3, "bisection")] or phases[:2] == [
        (1, "ladder"), (2, "bisection")]
    assert (1, "noise") in phases and doc["bisected"][0] == 2
    assert doc["noise"]["ttft_p50_s"] and doc["noise"]["spread"] is not None
    assert all(lv["ci"]["ttft_s"]["p90"][0] <= lv["ttft_s"]["p90"] <= lv["ci"]["ttft_s"]["p90"][1]
               for lv in doc["levels"])
    assert all(lv["slo_attainment_ci"] is not None and lv["goodput"] is not None for lv in doc["levels"])
    code, text = run_json(capsys, "probe", "show", str(doc["run_id"]), "--no-discover")
    assert all(len(line) <= 80 for line in text.splitlines()[:len(doc["levels"]) + 2])
    header = text.splitlines()[1]
    assert "p90 95% CI" in header and "SLO MET" in header and "SLO" in header
    assert "2 b" in text and "1 again" in text and "Bisection after the ladder (1, 4): c=2" in text
    assert "Noise guard: c=1 twice" in text and "judged at the pessimistic end" in text


def test_probe_command_open_loop(cli_env, capsys):
    code, doc = run_json(capsys, "probe", "sim", "synthetic", "--rates", "5,60", "--arrivals", "constant",
                         "--requests", "10", "--max-tokens", "8", "--max-in-flight", "3", "--slo", "ttft_p90=1s",
                         "--json", "--no-discover")
    assert code == 0 and doc["params"]["rates"] == [5.0, 60.0] and doc["params"]["arrivals"] == "constant"
    low, high = doc["levels"]
    assert (low["phase"], low["rate"], high["rate"]) == ("open", 5.0, 60.0)
    assert low["offered_rate"] == pytest.approx(5.0, rel=0.05) and low["send_lag_s"]["n"] >= 1
    assert high["errors"].get("dropped", 0) > 0  # 60/s against ~17/s of capacity, three in flight at most
    assert doc["max_rate"] == 5.0 and doc["max_usable_concurrency"] is None
    code, text = run_json(capsys, "probe", "show", str(doc["run_id"]), "--no-discover")
    assert "Max sustainable rate: 5/s" in text and "scheduled arrival" in text and "60/s" in text
    code, history = run_json(capsys, "probe", "history", "--json", "--no-discover")
    assert history[0]["max_rate"] == 5.0 and history[0]["rates"] == [5.0, 60.0]
    code, text = run_json(capsys, "probe", "history", "--no-discover")
    assert "5/s,60/s" in text


@pytest.mark.parametrize(("argv", "said"), [
    (["--rate", "0"], "rates must be above 0"),
    (["--rates", "2,x"], "--rates wants requests per second"),
    (["--rate", "5", "--levels", "1,2"], "give one"),
    (["--rate", "5", "--rates", "1,2"], "not both"),
    (["--rate", "5", "--max-in-flight", "0"], "--max-in-flight must be between"),
    (["--precision", "-1"], "--precision must be 0"),
])
def test_probe_open_loop_and_bisection_option_errors_are_one_line(cli_env, capsys, argv, said):
    assert main(["probe", "sim", "synthetic", *argv, "--no-discover"]) == 1
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
