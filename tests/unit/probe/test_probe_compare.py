"""`enginedeck probe compare A B` on open-loop runs: levels matched by rate, not by concurrency; a closed-loop run
against an open-loop one is one clear line."""

from console.cli import main
from tests.unit.probe.test_store_cli import cli_env, run_json  # noqa: F401  (cli_env is a fixture)


def open_run(capsys, rates: str) -> dict:
    code, doc = run_json(capsys, "probe", "sim", "synthetic", "--rates", rates, "--arrivals", "constant",
                         "--requests", "4", "--max-tokens", "8", "--json", "--no-discover")
    assert code == 0, doc
    return doc


def test_compare_open_loop_runs_by_rate(cli_env, capsys):  # noqa: F811
    a = open_run(capsys, "5,10")
    b = open_run(capsys, "5,20")
    code, cmp = run_json(capsys, "probe", "compare", str(a["run_id"]), str(b["run_id"]), "--json", "--no-discover")
    assert code == 0
    assert cmp["by"] == "rate"
    assert [r["rate"] for r in cmp["levels"]] == [5.0, 10.0, 20.0]
    five, ten, twenty = cmp["levels"]
    assert "concurrency" not in five
    for key in ("offered_rate", "req_s", "goodput", "slo_attainment", "ttft_p90_s"):
        assert five[key]["a"] is not None and five[key]["b"] is not None, key
    assert five["req_s"]["a"] == a["levels"][0]["req_s"] and five["req_s"]["b"] == b["levels"][0]["req_s"]
    assert ten["req_s"]["a"] == a["levels"][1]["req_s"] and ten["req_s"]["b"] is None  # B never ran 10/s
    assert twenty["goodput"]["a"] is None and twenty["goodput"]["b"] == b["levels"][1]["goodput"]
    assert cmp["a"]["max_rate"] == a["max_rate"] and cmp["b"]["run_id"] == b["run_id"]

    code, text = run_json(capsys, "probe", "compare", str(a["run_id"]), str(b["run_id"]), "--no-discover")
    assert code == 0 and "max sustainable rate" in text and "RATE" in text
    assert [line.split()[0] for line in text.splitlines() if line.split() and line.split()[0].endswith("/s")] == [
        "5/s", "10/s", "20/s"]


def test_compare_closed_against_open_is_one_line(cli_env, capsys):  # noqa: F811
    opened = open_run(capsys, "5")
    code, closed = run_json(capsys, "probe", "sim", "synthetic", "--levels", "1", "--requests", "2",
                            "--max-tokens", "8", "--json", "--no-discover")
    assert code == 0
    code = main(["probe", "compare", str(closed["run_id"]), str(opened["run_id"]), "--json", "--no-discover"])
    captured = capsys.readouterr()
    assert code != 0 and captured.out == ""
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"run {closed['run_id']} is a closed loop" in err and f"run {opened['run_id']} an open loop" in err
