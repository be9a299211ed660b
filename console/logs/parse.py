"""Turn raw log lines into `LogLine`s: level, normalised timestamp, readable text and structured fields.

Formats recognised (the first that matches wins, and moves to the front, so a steady stream costs one regex):
- JSON objects: journald's `-o json` records (MESSAGE, PRIORITY, __REALTIME_TIMESTAMP; the message itself is
  parsed again, because Ollama under systemd writes its slog lines into MESSAGE) and generic JSON logs;
- Ollama's Go slog text (`time=... level=INFO source=file.go:12 msg="..."`) and its gin access lines;
- vLLM (`(APIServer pid=1) INFO 11-22 06:50:01 [api_server.py:123] msg`) and uvicorn (`INFO:     ...`);
- llama.cpp's common log (`0.05.888.436 I srv  llama_server: model loaded`; relative time kept as a field);
- anything else: an ISO timestamp at the start and a level word near it, if present.

Every value that reaches `text` or `fields` is neutralised here; the raw line is kept as it was read.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any

from console.logs.line import Level, LogLine, Mark
from console.logs.sanitize import neutralise

# journald PRIORITY (syslog severity) → Level.
_PRIORITY = {0: Level.FATAL, 1: Level.FATAL, 2: Level.FATAL, 3: Level.ERROR, 4: Level.WARN, 5: Level.INFO,
             6: Level.INFO, 7: Level.DEBUG}
# journald fields worth showing beside the message; the rest stay in the raw line.
_JOURNAL_FIELDS = ("_SYSTEMD_UNIT", "SYSLOG_IDENTIFIER", "_PID", "_HOSTNAME", "_TRANSPORT")
_JSON_LEVEL_KEYS = ("level", "lvl", "severity", "levelname", "log.level", "loglevel")
_JSON_TIME_KEYS = ("time", "ts", "timestamp", "@timestamp", "asctime", "datetime", "t")
_JSON_MSG_KEYS = ("msg", "message", "MESSAGE", "event", "text")
# A field value longer than this is cut in `text` (the raw line keeps all of it).
FIELD_VALUE_LIMIT = 200

_LOGFMT_PAIR = re.compile(r'([\w.\-/]+)=("(?:[^"\\]|\\.)*"|\S*)')
_GIN = re.compile(r"^\[GIN\] (\d{4}/\d\d/\d\d - \d\d:\d\d:\d\d) \|\s*(\d{3}) \|(.*)$")
_VLLM = re.compile(
    r"^(?:\((?P<proc>[^)]*)\) )?(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"(?P<ts>\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)? \[(?P<loc>[^\]]+)\] (?P<msg>.*)$"
)
_PYLOG = re.compile(r"^(?:\((?P<proc>[^)]*)\) )?(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL):\s+(?P<msg>.*)$")
_LLAMA_PREFIXED = re.compile(r"^(?:(?P<up>\d+\.\d\d\.\d{3}\.\d{3}) )?(?P<level>[IWEDT]) (?P<msg>.*)$")
_LLAMA_PLAIN = re.compile(
    r"^(?:srv|slot|cmn|main|llama_\w+|ggml_\w+|common_\w+|load\w*|print_info|build_info|system_info|"
    r"init|que|gguf_\w+)[\s:]"
)
_LEADING_ISO = re.compile(r"^\[?(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)\]?\s*")
# Upper case only: "error" in a sentence is not a level, "ERROR" or "[error]" or "level: error" near the start is.
_LEVEL_WORD = re.compile(
    r"\b(TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|CRITICAL|FATAL|PANIC)\b"
    r"|\[(trace|debug|info|notice|warn|warning|error|critical|fatal)\]"
    r"|\blevel[:=]\s*\"?(\w+)")
_PROBLEM_WORD = re.compile(r"\b(error|failed|failure|fatal|exception|panic)\b", re.I)
_WARNING_WORD = re.compile(r"\b(warn|warning|deprecated)\b", re.I)

Parsed = tuple[Level | None, datetime | None, str, tuple[tuple[str, str], ...], str]
TextFormat = Callable[[str, float], Parsed | None]


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 text or a Unix time in s/ms/µs/ns → aware datetime. Naive times are taken as local time."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
        while seconds > 1e11:  # ms, µs, ns since the epoch
            seconds /= 1000.0
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace(",", ".", 1) if "," in value else value.strip()
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else _local(dt)


def _unquote(value: str) -> str:
    """A logfmt value without its quotes; decoding escapes can produce control characters again."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        if "\\" not in value:
            return value[1:-1]
        try:
            return neutralise(str(json.loads(value)))
        except ValueError:
            return value[1:-1]
    return value


def _short(value: str) -> str:
    return value if len(value) <= FIELD_VALUE_LIMIT else value[: FIELD_VALUE_LIMIT - 1] + "…"


def _with_fields(msg: str, fields: tuple[tuple[str, str], ...]) -> str:
    if not fields:
        return msg
    tail = " ".join([f"{k}={v if len(v) <= FIELD_VALUE_LIMIT else _short(v)}" for k, v in fields])
    return f"{msg}  {tail}" if msg else tail


_LOCAL_TZ: dict[tuple[int, int, int, int], tzinfo] = {}  # local UTC offset by hour (DST changes on the hour)


def _local(dt: datetime) -> datetime:
    """A naive local time made aware, without a localtime() call per line."""
    key = (dt.year, dt.month, dt.day, dt.hour)
    tz = _LOCAL_TZ.get(key)
    if tz is None:
        if len(_LOCAL_TZ) > 1000:
            _LOCAL_TZ.clear()
        tz = _LOCAL_TZ[key] = dt.astimezone().tzinfo or UTC
    return dt.replace(tzinfo=tz)


def _year_less(ts: str, now: float) -> datetime | None:
    """vLLM writes `MM-DD HH:MM:SS` in local time without a year: take the year that is not in the future."""
    today = time.localtime(now)
    try:
        month, day = int(ts[0:2]), int(ts[3:5])
        year = today.tm_year - 1 if (month, day) > (today.tm_mon, today.tm_mday + 1) else today.tm_year
        return _local(datetime(year, month, day, int(ts[6:8]), int(ts[9:11]), int(ts[12:14])))
    except ValueError:
        return None


def _slog(text: str, now: float) -> Parsed | None:
    if not (text.startswith("time=") or text.startswith("level=")):
        return None
    level: Level | None = None
    ts: datetime | None = None
    msg = ""
    rest: list[tuple[str, str]] = []
    for key, value in _LOGFMT_PAIR.findall(text):
        value = _unquote(value)
        if key == "level":
            level = Level.parse(value)
        elif key == "time":
            ts = parse_time(value)
        elif key == "msg":
            msg = value
        else:
            rest.append((key, value))
    fields = tuple(rest)
    return level, ts, _with_fields(msg, fields), fields, "slog"


def _gin(text: str, now: float) -> Parsed | None:
    m = _GIN.match(text)
    if m is None:
        return None
    status = int(m.group(2))
    level = Level.ERROR if status >= 500 else Level.WARN if status >= 400 else Level.INFO
    try:
        ts = _local(datetime.strptime(m.group(1), "%Y/%m/%d - %H:%M:%S"))
    except ValueError:
        ts = None
    return level, ts, text, (("status", str(status)),), "gin"


def _vllm(text: str, now: float) -> Parsed | None:
    m = _VLLM.match(text)
    if m is None:
        return None
    fields = (("process", m["proc"]),) if m["proc"] else ()
    fields += (("at", m["loc"]),)
    return Level.parse(m["level"]), _year_less(m["ts"], now), m["msg"], fields, "vllm"


def _pylog(text: str, now: float) -> Parsed | None:
    m = _PYLOG.match(text)
    if m is None:
        return None
    fields = (("process", m["proc"]),) if m["proc"] else ()
    return Level.parse(m["level"]), None, m["msg"], fields, "python"


def _llama(text: str, now: float) -> Parsed | None:
    m = _LLAMA_PREFIXED.match(text)
    if m is not None and (m["up"] or _LLAMA_PLAIN.match(m["msg"])):
        # The timestamp is time since the server started, not a wall clock: kept as a field, not as ts.
        fields = (("uptime", m["up"]),) if m["up"] else ()
        return Level.parse(m["level"]), None, m["msg"], fields, "llamacpp"
    if _LLAMA_PLAIN.match(text):
        return _guess_level(text), None, text, (), "llamacpp"
    return None


def _guess_level(text: str) -> Level:
    if _PROBLEM_WORD.search(text):
        return Level.ERROR
    if _WARNING_WORD.search(text):
        return Level.WARN
    return Level.INFO


def _generic(text: str, now: float) -> Parsed | None:
    ts = None
    m = _LEADING_ISO.match(text)
    if m is not None:
        ts = parse_time(m.group(1))
    word = _LEVEL_WORD.search(text, 0, (m.end() if m else 0) + 40)
    level = Level.parse(next(g for g in word.groups() if g)) if word else None
    if ts is None and level is None:
        return None
    return level, ts, text, (), "text"


TEXT_FORMATS: tuple[TextFormat, ...] = (_slog, _vllm, _llama, _pylog, _gin, _generic)


class LineParser:
    """Parses the lines of one source. Keeps the format that matched last in front, and gives continuation
    lines (a traceback, an indented detail line) the level of the line they continue, so a level filter
    keeps a stack trace with its error.

    `marker` (for signed JSONL) decides the signature mark of each raw line. `carry=False` for random
    access (a huge file read out of order), where "the line before" is not the one parsed before.
    """

    def __init__(self, source: str, *, marker: Callable[[str], Mark] | None = None, carry: bool = True,
                 now: Callable[[], float] = time.time) -> None:
        self._carry = carry
        self.source = source
        self._formats = list(TEXT_FORMATS)
        self._marker = marker
        self._now = now
        self._last_level: Level | None = None

    def for_random_access(self) -> LineParser:
        """A parser for the same source that reads lines out of order (no level carried between lines)."""
        return LineParser(self.source, marker=self._marker, carry=False, now=self._now)

    def parse(self, raw: str, *, lineno: int | None = None, offset: int | None = None) -> LogLine:
        raw = raw.rstrip("\r\n")
        stripped = raw.lstrip()
        parsed = self._json(stripped) if stripped.startswith("{") else None
        if parsed is None:
            parsed = self._text(neutralise(raw))
        level, ts, text, fields, fmt = parsed
        if level is None and self._last_level is not None and _continues(text):
            level = self._last_level
        elif level is not None and self._carry:
            self._last_level = level
        mark = self._marker(raw) if self._marker is not None else None
        return LogLine(self.source, raw, text, level, ts, lineno, offset, fields, mark, fmt)

    def _text(self, text: str) -> Parsed:
        now = self._now()
        formats = self._formats
        for i, fmt in enumerate(formats):
            parsed = fmt(text, now)
            if parsed is not None:
                if i:
                    formats.insert(0, formats.pop(i))
                return parsed
        return None, None, text, (), "plain"

    def _json(self, stripped: str) -> Parsed | None:
        try:
            obj = json.loads(stripped)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        if "MESSAGE" in obj and ("__REALTIME_TIMESTAMP" in obj or "PRIORITY" in obj):
            return self._journal(obj)
        return _generic_json(obj)

    def _journal(self, obj: dict[str, Any]) -> Parsed:
        message = _journal_message(obj.get("MESSAGE"))
        inner_level, inner_ts, text, inner_fields, _ = self._text(neutralise(message))
        try:
            level = inner_level or _PRIORITY.get(int(obj.get("PRIORITY", 6)))
        except (TypeError, ValueError):
            level = inner_level
        ts = None
        try:
            ts = datetime.fromtimestamp(int(obj["__REALTIME_TIMESTAMP"]) / 1e6, UTC)
        except (KeyError, TypeError, ValueError, OverflowError, OSError):
            ts = inner_ts
        fields = tuple((k, neutralise(str(obj[k]))) for k in _JOURNAL_FIELDS if k in obj) + inner_fields
        return level, ts, text, fields, "journal"


def _journal_message(value: Any) -> str:
    # journald exports a message that is not valid UTF-8 as an array of byte values.
    if isinstance(value, list):
        try:
            return bytes(value).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return str(value)
    return "" if value is None else str(value)


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    return neutralise(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _generic_json(obj: dict[str, Any]) -> Parsed:
    level = ts = None
    msg = ""
    used: set[str] = set()
    for key in _JSON_LEVEL_KEYS:
        if key in obj:
            value = obj[key]
            level = Level.parse(str(value)) if not isinstance(value, int) else _numeric_level(value)
            used.add(key)
            break
    for key in _JSON_TIME_KEYS:
        if key in obj:
            ts = parse_time(obj[key])
            used.add(key)
            break
    for key in _JSON_MSG_KEYS:
        if key in obj:
            msg = _scalar(obj[key])
            used.add(key)
            break
    fields = tuple((neutralise(str(k)), _scalar(v)) for k, v in obj.items() if k not in used)
    return level, ts, _with_fields(msg, fields), fields, "json"


def _numeric_level(value: int) -> Level | None:
    # Numeric levels in JSON come from pino/bunyan (10 trace … 60 fatal); Python's JSON loggers write names.
    table = {10: Level.TRACE, 20: Level.DEBUG, 30: Level.INFO, 40: Level.WARN, 50: Level.ERROR, 60: Level.FATAL}
    return table.get(value)


def _continues(text: str) -> bool:
    return not text or text[0] in " \t" or text.startswith(("Traceback", "During handling", "The above exception"))
