"""Turn raw log lines into `LogLine`s: level, normalised timestamp, readable text and structured fields.

Formats recognised (the first that matches wins; a format is only tried on lines whose first character it can
start with, so most lines cost one anchored regex and the generic fallback runs only when nothing else fits):
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

from console.audit.mark import Mark
from console.logs.line import Level, LogLine
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

_LOGFMT_VALUE = r'("(?:[^"\\]|\\.)*"|\S*)'
_LOGFMT_PAIR = re.compile(r"([\w.\-/]+)=" + _LOGFMT_VALUE)
# The head every Ollama slog line has, in one match instead of four turns of the pair loop. Atomic groups: a value
# is cut exactly where `_LOGFMT_PAIR` would cut it, or the head does not match and the pair loop does it all.
_SLOG_HEAD = re.compile(" ".join(f"{key}=(?>{_LOGFMT_VALUE})" for key in ("time", "level", "source", "msg")))
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
# Each of these starts with a lookahead on the first letters its words can start with: it changes nothing that
# matches, but lets `re` skip to candidate positions instead of trying every alternative at every character
# (about 3x faster on a line with no level, which is every plain line).
_LEVEL_WORD = re.compile(
    r"(?=[TDINWECFP\[l])"
    r"(?:\b(TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|CRITICAL|FATAL|PANIC)\b"
    r"|\[(trace|debug|info|notice|warn|warning|error|critical|fatal)\]"
    r"|\blevel[:=]\s*\"?(\w+))")
_PROBLEM_WORD = re.compile(r"(?=[efp])\b(error|failed|failure|fatal|exception|panic)\b", re.I)
_WARNING_WORD = re.compile(r"(?=[wd])\b(warn|warning|deprecated)\b", re.I)

# Level names as engines usually write them, looked up as they are: the same answer as Level.parse, without its
# strip() and lower() on every line. Every token the vLLM and llama.cpp patterns capture is here.
_KNOWN_LEVELS: dict[str, Level | None] = {
    token: Level.parse(token)
    for name in ("trace", "debug", "info", "warn", "warning", "error", "critical", "fatal", *"iwedt")
    for token in (name, name.upper())
}

Parsed = tuple[Level | None, datetime | None, str, tuple[tuple[str, str], ...], str]
TextFormat = Callable[[str, float], Parsed | None]
RecordShape = Callable[[dict[str, Any]], Parsed | None]


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 text or a Unix time in s/ms/µs/ns → aware datetime. Naive times are taken as local time."""
    if type(value) is str:  # the common case first: one C call for a well-formed ISO time
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            text = value.strip().replace(",", ".", 1)
            try:
                dt = datetime.fromisoformat(text)
            except ValueError:
                return None
        return dt if dt.tzinfo is not None else _local(dt)
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
    return None


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
    return dt.replace(tzinfo=_local_tz(dt))


def _local_tz(dt: datetime) -> tzinfo:
    """The local UTC offset in force at naive local time `dt`."""
    key = (dt.year, dt.month, dt.day, dt.hour)
    tz = _LOCAL_TZ.get(key)
    if tz is None:
        if len(_LOCAL_TZ) > 1000:
            _LOCAL_TZ.clear()
        tz = _LOCAL_TZ[key] = dt.astimezone().tzinfo or UTC
    return tz


# `MM-DD HH` of a vLLM time → (the quarter hour of `now` it was worked out in, then year, month, day, hour and
# local offset, or None when it is not a date). Working out the year and the offset once per hour of log instead
# of once per line is most of a vLLM line's cost.
_YEAR_LESS_HOURS: dict[str, tuple[int, tuple[int, int, int, int, tzinfo] | None]] = {}


def _year_less(ts: str, now: float) -> datetime | None:
    """vLLM writes `MM-DD HH:MM:SS` in local time without a year: take the year that is not in the future."""
    quarter = int(now) // 900  # "today" only changes on a quarter hour, in every time zone
    hit = _YEAR_LESS_HOURS.get(ts[:8])
    if hit is None or hit[0] != quarter:
        if len(_YEAR_LESS_HOURS) > 1000:
            _YEAR_LESS_HOURS.clear()
        hit = _YEAR_LESS_HOURS[ts[:8]] = (quarter, _year_less_hour(ts, now))
    hour = hit[1]
    if hour is None:
        return None
    try:
        return datetime(hour[0], hour[1], hour[2], hour[3], int(ts[9:11]), int(ts[12:14]), 0, hour[4])
    except ValueError:
        return None


def _year_less_hour(ts: str, now: float) -> tuple[int, int, int, int, tzinfo] | None:
    today = time.localtime(now)
    try:
        month, day, hour = int(ts[0:2]), int(ts[3:5]), int(ts[6:8])
        year = today.tm_year - 1 if (month, day) > (today.tm_mon, today.tm_mday + 1) else today.tm_year
        return year, month, day, hour, _local_tz(datetime(year, month, day, hour))
    except ValueError:
        return None


def _slog(text: str, now: float) -> Parsed | None:
    if not (text.startswith("time=") or text.startswith("level=")):
        return None
    time_value = level_value = None
    msg = ""
    rest: list[tuple[str, str]] = []
    head = _SLOG_HEAD.match(text)
    if head is not None:
        time_value, level_value, source, msg = head.groups()
        if msg[:1] == '"':
            msg = _unquote(msg)
        if '"' in text[:head.start(4)]:  # time, level or source quoted: rare, so one check for the three
            time_value, level_value, source = _unquote(time_value), _unquote(level_value), _unquote(source)
        rest.append(("source", source))
        pairs = _LOGFMT_PAIR.findall(text, head.end())
    else:
        pairs = _LOGFMT_PAIR.findall(text)
    for key, value in pairs:
        if value[:1] == '"':
            value = _unquote(value)
        if key == "level":
            level_value = value
        elif key == "time":
            time_value = value
        elif key == "msg":
            msg = value
        else:
            rest.append((key, value))
    level = None if level_value is None else _KNOWN_LEVELS.get(level_value) or Level.parse(level_value)
    ts = parse_time(time_value) if time_value is not None else None
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
    proc, level, ts, loc, msg = m.groups()
    fields = (("process", proc), ("at", loc)) if proc else (("at", loc),)
    return _KNOWN_LEVELS[level], _year_less(ts, now), msg, fields, "vllm"


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
        return _KNOWN_LEVELS[m["level"]], None, m["msg"], fields, "llamacpp"
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
# The characters a line of each specific format can start with (`_generic` can start with anything).
_FIRST_CHARS: dict[TextFormat, str] = {
    _slog: "tl",  # time= level=
    _vllm: "(DIWEC",  # (APIServer pid=1) or a level name
    _pylog: "(DIWEC",
    _llama: "0123456789IWEDT" "scmlgpbiq",  # uptime, level letter, or srv slot cmn main llama_ ggml_ ... que
    _gin: "[",
}
_BY_FIRST_CHAR: dict[str, tuple[TextFormat, ...]] = {
    char: tuple(fmt for fmt in TEXT_FORMATS if fmt is _generic or char in _FIRST_CHARS[fmt])
    for char in set("".join(_FIRST_CHARS.values()))
}
_ONLY_GENERIC: tuple[TextFormat, ...] = (_generic,)


class LineParser:
    """Parses the lines of one source. Gives continuation lines (a traceback, an indented detail line) the
    level of the line they continue, so a level filter keeps a stack trace with its error.

    `marker` (for signed JSONL) decides the signature mark of each raw line; a marked line without a level of
    its own takes one from its mark (`MARK_LEVELS`), and an invalid one is an error whatever it says, so a level
    filter shows tampering instead of hiding every record. `shape` reads the JSON objects of a known kind of
    record (`audit_record`) before the generic rules. `carry=False` for random access (a huge file read out of
    order), where "the line before" is not the one parsed before.
    """

    def __init__(self, source: str, *, marker: Callable[[str], Mark] | None = None, shape: RecordShape | None = None,
                 carry: bool = True, now: Callable[[], float] = time.time) -> None:
        self._carry = carry
        self.source = source
        self._marker = marker
        self._shape = shape
        self._now = now
        self._last_level: Level | None = None

    def for_random_access(self) -> LineParser:
        """A parser for the same source that reads lines out of order (no level carried between lines)."""
        return LineParser(self.source, marker=self._marker, shape=self._shape, carry=False, now=self._now)

    def parse(self, raw: str, *, lineno: int | None = None, offset: int | None = None) -> LogLine:
        if raw[-1:] in ("\n", "\r"):
            raw = raw.rstrip("\r\n")
        first = raw[:1]
        if first == "{" or (first.isspace() and raw.lstrip().startswith("{")):
            parsed = self._json(raw.lstrip() if first != "{" else raw)
            if parsed is None:
                parsed = self._text(neutralise(raw))
        else:
            parsed = self._text(neutralise(raw))
        level, ts, text, fields, fmt = parsed
        if level is None:
            if self._last_level is not None and _continues(text):
                level = self._last_level
        elif self._carry:
            self._last_level = level
        mark = None
        if self._marker is not None:
            mark = self._marker(raw)
            if level is None or mark is Mark.INVALID:
                level = MARK_LEVELS[mark]
        return LogLine(self.source, raw, text, level, ts, lineno, offset, fields, mark, fmt)

    def _text(self, text: str) -> Parsed:
        now = self._now()
        for fmt in _BY_FIRST_CHAR.get(text[:1], _ONLY_GENERIC):
            parsed = fmt(text, now)
            if parsed is not None:
                return parsed
        return None, None, text, (), "plain"

    def _json(self, stripped: str) -> Parsed | None:
        try:
            obj, end = _JSON.raw_decode(stripped)
        except ValueError:
            return None
        if end != len(stripped) and stripped[end:].strip(" \t\n\r"):
            return None  # something after the object: not a JSON line
        if type(obj) is not dict:
            return None
        if self._shape is not None and (shaped := self._shape(obj)) is not None:
            return shaped
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


# raw_decode rather than json.loads: one line is one object, so loads' extra whitespace passes are wasted.
_JSON = json.JSONDecoder()


def _journal_message(value: Any) -> str:
    # journald exports a message that is not valid UTF-8 as an array of byte values.
    if isinstance(value, list):
        try:
            return bytes(value).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return str(value)
    return "" if value is None else str(value)


def _scalar(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return neutralise(value)
    if kind is int or kind is float or (isinstance(value, int | float) and not isinstance(value, bool)):
        return repr(value)
    return neutralise(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _generic_json(obj: dict[str, Any]) -> Parsed:
    level = ts = None
    msg = ""
    level_key = time_key = msg_key = None
    for key in _JSON_LEVEL_KEYS:
        if key in obj:
            value = obj[key]
            level = _KNOWN_LEVELS.get(value) if type(value) is str else None
            if level is None:
                level = Level.parse(str(value)) if not isinstance(value, int) else _numeric_level(value)
            level_key = key
            break
    for key in _JSON_TIME_KEYS:
        if key in obj:
            ts = parse_time(obj[key])
            time_key = key
            break
    for key in _JSON_MSG_KEYS:
        if key in obj:
            msg = _scalar(obj[key])
            msg_key = key
            break
    rest = [(neutralise(k), _scalar(v)) for k, v in obj.items() if k != level_key and k != time_key and k != msg_key]
    if not rest:
        return level, ts, msg, (), "json"
    fields = tuple(rest)
    return level, ts, _with_fields(msg, fields), fields, "json"


MARK_LEVELS = {Mark.VALID: Level.INFO, Mark.UNSIGNED: Level.WARN, Mark.INVALID: Level.ERROR}
# What an audit record's `result` says about how it went: anything else (cancelled, partial, ...) is a warning.
_RESULT_LEVELS = {"ok": Level.INFO, "complete": Level.INFO, "error": Level.ERROR, "failed": Level.ERROR}
_AUDIT_HIDDEN = ("time", "hash", "hmac", "prev_hash")  # the chain is checked by the marker; the raw view has it


def audit_record(obj: dict[str, Any]) -> Parsed | None:
    """A record of enginedeck's audit trail (console/audit/record.py), what matters first: `action result  target
    on engine  duration`, then who (`user`, `from`, `host`), `seq` and the parameters; the hashes only in the raw
    line. Long engine and model names come after the verb and how it went, so an 80-column row keeps both. Its
    level comes from its result. None for an object that is not such a record."""
    if "action" not in obj or "seq" not in obj or "hash" not in obj:
        return None
    result = _scalar(obj.get("result") or "")
    parts = [f"{_scalar(obj['action'])} {result}"]
    if obj.get("target") not in (None, ""):
        parts.append(_scalar(obj["target"]))
    if obj.get("engine") not in (None, ""):
        parts.append(f"on {_scalar(obj['engine'])}")
    duration = obj.get("duration_s")
    if isinstance(duration, int | float):
        parts.append(f"{duration:.2f} s")
    who = [("user", obj.get("os_user")), ("from", obj.get("ssh_origin")), ("host", obj.get("host")),
           ("seq", obj.get("seq"))]
    params = obj.get("params")
    shown = [(k, _scalar(v)) for k, v in who if v not in (None, "")]
    if isinstance(params, dict):
        shown += [(neutralise(str(k)), _scalar(v)) for k, v in params.items()]
    fields = tuple((neutralise(k), _scalar(v)) for k, v in obj.items() if k not in _AUDIT_HIDDEN)
    level = _RESULT_LEVELS.get(result.partition(":")[0].strip().lower(), Level.WARN)
    return level, parse_time(obj.get("time")), _with_fields("  ".join(parts), tuple(shown)), fields, "audit"


def signed_record(obj: dict[str, Any]) -> Parsed:
    """A line of a proxy's signed JSONL: read like any JSON log line, without its `signature` in the text (the
    mark shows whether it holds)."""
    return _generic_json({k: v for k, v in obj.items() if k != "signature"})


_NUMERIC_LEVELS = {10: Level.TRACE, 20: Level.DEBUG, 30: Level.INFO, 40: Level.WARN, 50: Level.ERROR, 60: Level.FATAL}


def _numeric_level(value: int) -> Level | None:
    # Numeric levels in JSON come from pino/bunyan (10 trace … 60 fatal); Python's JSON loggers write names.
    return _NUMERIC_LEVELS.get(value)


def _continues(text: str) -> bool:
    return not text or text[0] in " \t" or text.startswith(("Traceback", "During handling", "The above exception"))
