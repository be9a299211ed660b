import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from console.logs.filter import LogFilter
from console.logs.line import Level
from console.logs.parse import LineParser, parse_time

SAMPLES = Path(__file__).parents[2] / "fakes" / "journal_samples"
NOW = datetime(2025, 11, 22, 12, 0, tzinfo=UTC)


def parser(**kw):
    return LineParser("t", now=NOW.timestamp, **kw)


def test_ollama_slog_line():
    line = parser().parse('time=2025-11-22T06:50:01.123+01:00 level=WARN source=gpu.go:605 msg="no GPUs found" n=0')
    assert line.level is Level.WARN and line.fmt == "slog"
    assert line.ts == datetime(2025, 11, 22, 5, 50, 1, 123000, tzinfo=UTC)
    assert line.text.startswith("no GPUs found") and ("source", "gpu.go:605") in line.fields


@pytest.mark.parametrize("raw, level", [
    ("(APIServer pid=4107) INFO 11-22 06:50:01 [api_server.py:1234] Starting vLLM API server", Level.INFO),
    ("WARNING 11-22 06:50:01 [config.py:12] sleep mode off", Level.WARN),
    ("(EngineCore_DP0 pid=4200) ERROR 11-22 06:50:01 [core.py:9] EngineCore failed to start.", Level.ERROR),
])
def test_vllm_lines(raw, level):
    line = parser().parse(raw)
    assert line.fmt == "vllm" and line.level is level
    assert line.ts is not None and (line.ts.month, line.ts.day, line.ts.hour) == (11, 22, 6)
    assert "[" not in line.text


def test_vllm_year_is_never_in_the_future():
    line = parser().parse("INFO 12-31 23:59:00 [a.py:1] x")
    assert line.ts is not None and line.ts.year == 2024


def test_vllm_coloured_line_is_parsed_after_neutralising():
    raw = ("\x1b[0;36m(APIServer pid=1)\x1b[0;0m \x1b[32mINFO\x1b[0m \x1b[90m11-22 06:50:01\x1b[0m "
           "\x1b[90m[a.py:1]\x1b[0m hi")
    line = parser().parse(raw)
    assert (line.fmt, line.level, line.text) == ("vllm", Level.INFO, "hi")


def test_uvicorn_access_line():
    line = parser().parse('(APIServer pid=1) INFO:     127.0.0.1:5000 - "GET /health HTTP/1.1" 200 OK')
    assert line.level is Level.INFO and line.text.startswith("127.0.0.1")


def test_real_llama_server_output():
    lines = [parser().parse(raw) for raw in (SAMPLES / "llama-server.log").read_text().splitlines()]
    assert all(line.fmt == "llamacpp" for line in lines)
    assert lines[2].level is Level.WARN and "no API key" in lines[2].text
    assert lines[0].level is Level.INFO and dict(lines[0].fields)["uptime"] == "0.00.001.079"
    assert lines[0].ts is None  # the llama.cpp timestamp is time since start, not a clock


def test_llama_unprefixed_lines_guess_level():
    p = parser()
    assert p.parse("srv  load_model: failed to load model 'x.gguf'").level is Level.ERROR
    assert p.parse("slot launch_slot_: id  0 | task 0 | processing task").level is Level.INFO


def test_gin_status_sets_level():
    p = parser()
    assert p.parse('[GIN] 2025/11/22 - 06:50:10 | 200 |  612µs | 127.0.0.1 | GET "/api/tags"').level is Level.INFO
    assert p.parse('[GIN] 2025/11/22 - 06:50:10 | 503 |  612µs | 127.0.0.1 | GET "/api/tags"').level is Level.ERROR


def test_generic_json_line_keeps_raw_and_shows_fields():
    raw = json.dumps({"ts": 1763794201.5, "level": "error", "msg": "boom", "req": {"id": 7}})
    line = parser().parse(raw)
    assert line.raw == raw and line.fmt == "json" and line.level is Level.ERROR
    assert line.ts == datetime.fromtimestamp(1763794201.5, UTC)
    assert line.text == 'boom  req={"id":7}'


def test_journal_samples():
    p = parser()
    lines = [p.parse(raw) for raw in (SAMPLES / "ollama.jsonl").read_text().splitlines()]
    assert {line.fmt for line in lines} == {"journal"}
    first = lines[0]
    assert first.text.startswith("Listening on 127.0.0.1:11434") and first.level is Level.INFO
    assert first.ts == datetime.fromtimestamp(1763794201.123456, UTC)
    assert ("_SYSTEMD_UNIT", "ollama.service") in first.fields
    assert lines[2].level is Level.WARN  # the slog level inside MESSAGE wins over PRIORITY 6
    assert lines[4].level is Level.WARN  # gin 404
    assert lines[5].level is Level.ERROR
    assert lines[6].level is Level.ERROR  # PRIORITY 3, no level in the text
    assert "\x1b" not in lines[7].text and "\x07" not in lines[7].text
    assert lines[8].text == "bad byte \ufffd here" and lines[8].level is Level.WARN


def test_continuation_lines_inherit_level_so_filters_keep_tracebacks():
    p = parser()
    lines = [p.parse(r) for r in ["ERROR 11-22 06:50:01 [a.py:1] failed", "Traceback (most recent call last):",
                                  '  File "x.py", line 1', "INFO 11-22 06:50:02 [a.py:2] ok", "unrelated text"]]
    flt = LogFilter.build("error")
    assert [flt.matches(line) for line in lines] == [True, True, True, False, False]


def test_filter_regex_and_bad_input():
    from console.errors import LogSourceError

    line = parser().parse("level=INFO msg=hello")
    assert LogFilter.build(regex="hel+o").matches(line)
    assert not LogFilter.build(regex="bye").matches(line)
    with pytest.raises(LogSourceError, match="invalid regular expression"):
        LogFilter.build(regex="(")
    with pytest.raises(LogSourceError, match="unknown level"):
        LogFilter.build(level="loud")


@pytest.mark.parametrize("value, expected", [
    ("2025-11-22T06:50:01Z", datetime(2025, 11, 22, 6, 50, 1, tzinfo=UTC)),
    (1763794201000, datetime.fromtimestamp(1763794201, UTC)),
    ("garbage", None), (True, None),
])
def test_parse_time(value, expected):
    assert parse_time(value) == expected


def test_naive_times_become_aware_local():
    ts = parse_time("2025-11-22 06:50:01,250")
    assert ts is not None and ts.tzinfo is not None and ts.microsecond == 250000


def test_format_does_not_depend_on_the_line_before():
    # A generic line must not make the next vLLM or slog line generic too (formats are picked per line).
    p = parser()
    p.parse("2025-11-22T06:50:01Z ERROR something generic")
    assert p.parse("INFO 11-22 06:50:01 [a.py:1] x").fmt == "vllm"
    assert p.parse("time=2025-11-22T06:50:01Z level=INFO source=a.go:1 msg=hi").fmt == "slog"


def test_slog_head_and_pair_loop_agree():
    # The fast head match and the pair loop must cut values the same way, quoted or not.
    p = parser()
    line = p.parse('time="2025-11-22T06:50:01Z" level=WARN source="a b.go:1" msg="x \\"y\\"" k=v level=ERROR')
    assert (line.level, line.text) == (Level.ERROR, 'x "y"  source=a b.go:1 k=v')
    assert line.ts == datetime(2025, 11, 22, 6, 50, 1, tzinfo=UTC)
