import json
import subprocess
import sys
from pathlib import Path

from console.cli import main

SAMPLES = Path(__file__).parents[2] / "fakes" / "journal_samples"


def test_no_follow_level_filter_text(capsys):
    assert main(["logs", str(SAMPLES / "ollama.jsonl"), "--no-follow", "-n", "100", "--level", "error"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all(" ERROR " in line for line in out)
    assert "error loading llama server" in out[0]


def test_json_lines_output_is_one_object_per_line(capsys):
    assert main(["logs", str(SAMPLES / "llama-server.log"), "--no-follow", "-n", "3", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and rows[-1]["text"].startswith("srv    operator()")
    assert {"source", "lineno", "ts", "level", "text", "fields", "mark", "raw"} <= rows[0].keys()
    assert rows[0]["lineno"] == 14


def test_hostile_line_reaches_stdout_inert(tmp_path, capsys):
    log = tmp_path / "evil.log"
    log.write_text("ok \x1b]52;c;ZXZpbA==\x07 \x1b]0;title\x07 \x1b[2J \x9b1m \x07 bs\x08\x08 [link=x]y[/link]\n")
    assert main(["logs", str(log), "--no-follow"]) == 0
    out = capsys.readouterr().out
    assert not any((ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F for c in out)
    assert main(["logs", str(log), "--no-follow", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.isascii() and "\x1b" not in out


def test_grep_and_several_sources_are_prefixed(tmp_path, capsys):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("alpha 1\nbeta 1\n")
    b.write_text("alpha 2\n")
    assert main(["logs", str(a), str(b), "--grep", "ALPHA", "-i", "--no-follow"]) == 0
    out = sorted(capsys.readouterr().out.splitlines())
    assert out == [f"{a}: alpha 1", f"{b}: alpha 2"]


def test_errors_are_one_line_and_exit_1(capsys):
    assert main(["logs", "/no/such.log", "--no-follow"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["logs", "x.log", "--grep", "("]) == 1
    assert "invalid regular expression" in capsys.readouterr().err
    assert main(["logs", "audit:/x.jsonl", "--no-follow"]) == 1
    assert "needs its key" in capsys.readouterr().err


def test_command_source_reports_exit_code(capsys):
    code = "import sys; print('hello'); sys.exit(5)"
    assert main(["logs", f"cmd:{sys.executable} -c \"{code}\""]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == "hello" and "exited with code 5" in captured.err


def test_follow_prints_appended_lines(tmp_path):
    log = tmp_path / "f.log"
    log.write_text("first\n")
    proc = subprocess.Popen([sys.executable, "-m", "console", "logs", str(log)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "first"
        with log.open("a") as f:
            f.write("second\n")
        assert proc.stdout.readline().strip() == "second"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_following_stops_once_nobody_reads(tmp_path):
    """`enginedeck logs FILE | head -1`: the next line written after the reader left ends the command, exit 0,
    without a word about the pipe."""
    import os
    import time

    log = tmp_path / "app.log"
    log.write_text("first\n")
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen([sys.executable, "-m", "console", "logs", str(log), "--no-discover"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.stdout.readline() == b"first\n"
    proc.stdout.close()
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        with log.open("a") as f:
            f.write("more\n")
        time.sleep(0.3)
    assert proc.wait(5) == 0
    assert proc.stderr.read() == b""
