"""`enginedeck watch --rules FILE --once`: NDJSON events on stdout and the documented exit codes (0 ok, 1 firing,
2 usage or rules-file error, 3 unknown); a rule's command runs with its result reported."""

from __future__ import annotations

import json
import sys

import pytest

from console.telemetry.gpu import GpuMonitor, GpuSnapshot


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch):
    monkeypatch.setattr(GpuMonitor, "sample", lambda self: GpuSnapshot(available=False, reason="no NVIDIA GPU"))


def rules(tmp_path, text):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return str(path)


def lines(out):
    return [json.loads(line) for line in out.splitlines()]


def test_nothing_firing_is_exit_0_and_prints_nothing(cli, capsys, ollama_server, tmp_path):
    path = rules(tmp_path, '[[rule]]\nname = "down"\nmetric = "engine_down"\n')
    assert cli("watch", "--rules", path, "--once", engines={"o": ollama_server.url + "=ollama"}) == 0
    assert capsys.readouterr().out == ""


def test_a_down_engine_fires_exit_1_and_the_command_runs(cli, capsys, tmp_path):
    script = "import os; print('got', os.environ['ENGINEDECK_ALERT_EVENT'], os.environ['ENGINEDECK_ALERT_SUBJECT'])"
    path = rules(tmp_path, f'[[rule]]\nname = "down"\nmetric = "engine_down"\n'
                           f'command = [{json.dumps(sys.executable)}, "-c", {json.dumps(script)}]\n')
    assert cli("watch", "--rules", path, "--once", "--timeout", "1", engines={"dead": "http://127.0.0.1:9=ollama"}) == 1
    events = lines(capsys.readouterr().out)
    assert events[0]["event"] == "firing" and events[0]["rule"] == "down" and events[0]["subject"] == "engine:dead"
    assert events[0]["value"] == 1.0 and "cannot connect" in events[0]["detail"]
    assert events[1]["event"] == "command" and events[1]["exit_code"] == 0
    assert events[1]["output"].strip() == "got firing engine:dead"


def test_a_rule_with_nothing_to_judge_is_exit_3(cli, capsys, tmp_path):
    path = rules(tmp_path, '[[rule]]\nname = "hot"\nmetric = "gpu_temperature"\nabove = 80\n')
    assert cli("watch", "--rules", path, "--once") == 3
    (event,) = lines(capsys.readouterr().out)
    assert event["event"] == "unknown" and "no NVIDIA GPU" in event["detail"]


def test_a_bad_rules_file_is_exit_2_with_one_line(cli, capsys, tmp_path):
    path = rules(tmp_path, '[[rule]]\nname = "a"\nmetric = "waiting"\nabove = 3\nfro = 10\n')
    assert cli("watch", "--rules", path, "--once") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and ":5: unknown key `fro`" in captured.err
    assert "did you mean `for`" in captured.err


def test_a_missing_rules_option_is_a_usage_error(cli, capsys):
    with pytest.raises(SystemExit) as exc:
        cli("watch", "--once")
    assert exc.value.code == 2


def test_without_once_it_watches_until_sigterm_and_exits_0(write_config, ollama_server, tmp_path):
    import os
    import signal
    import subprocess

    config = write_config({"o": ollama_server.url + "=ollama"})
    path = rules(tmp_path, 'interval = 0.2\n[[rule]]\nname = "down"\nmetric = "engine_down"\n')
    proc = subprocess.Popen([sys.executable, "-m", "console", "--config", str(config), "--no-discover", "--timeout",
                             "1", "watch", "--rules", path], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        ollama_server.stop()  # the engine goes away while it is watched
        event = json.loads(proc.stdout.readline())
        assert (event["event"], event["subject"]) == ("firing", "engine:o")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
