"""Configuration: layered defaults < file < environment < flags, frozen once built; docs/config.md lists it all.

The settings are the frozen dataclasses below. A field's metadata (`setting()`) says what the TOML file calls
it, the least value it takes, whether it is a byte size and which environment variable sets it; one reader
checks a file against them, so an unknown table or key, a value of the wrong type or a number under its floor
is a ConfigError that names the file, the line, the key and, for a misspelling, the nearest valid name. The
file and the environment are applied here (`load_config`); flags by console/services.py.

Not pydantic: on the 2-core development box, importing it and building validators for these classes add
0.1-0.2 s to every start (bench/config_load.py), against a TUI first paint of ~0.25 s; reading a file here
takes ~1.5 ms.

Secrets are never stored here: an engine names an environment variable or a key file, and the key is read
only when the engine is built (`resolve_api_key`). A key file that group or others can read is refused.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
import tomllib
import types
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, Union, get_args, get_origin, get_type_hints

from console.errors import ConfigError
from console.secrets import remember

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

ENGINE_KINDS = ("auto", "ollama", "vllm", "llamacpp", "sglang", "tgi", "lmstudio", "openai")
ENV_CONFIG = "ENGINEDECK_CONFIG"
ENV_DATA_DIR = "ENGINEDECK_DATA_DIR"
ENV_READ_ONLY = "ENGINEDECK_READ_ONLY"
ENV_DISCOVER = "ENGINEDECK_DISCOVER"
ENV_THEME = "ENGINEDECK_THEME"
ENV_ASCII = "ENGINEDECK_ASCII"
ENV_NO_COLOR = "NO_COLOR"
NO_COLOR_THEME = "monochrome"
# Floors for numbers a config may set: a zero poll interval would spin, a tiny audit file would rotate per record.
MIN_INTERVAL_S = 0.1
MIN_AUDIT_FILE_BYTES = 64 * 1024
MIN_LIMIT_BYTES = 1024
KIB, MIB = 1024, 1024 * 1024


def config_dir() -> Path:
    from platformdirs import user_config_path

    return user_config_path("enginedeck", appauthor=False)


def data_dir() -> Path:
    override = os.environ.get(ENV_DATA_DIR)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_path

    return user_data_path("enginedeck", appauthor=False)


def default_config_path() -> Path:
    return config_dir() / "config.toml"


def setting(default: Any = MISSING, *, factory: Any = MISSING, key: str | None = None, in_file: bool = True,
            flat: bool = False, floor: float | None = None, ceiling: float | None = None, size: bool = False,
            choices: tuple[str, ...] = (), env: str | None = None, env_also: tuple[str, str] | None = None,
            names: bool = False) -> Any:
    """A field with what the reader needs to know about it.

    key: the file's name for it (default: the field's); in_file=False: not settable in the file (inherited or
    computed); flat: a nested settings class whose keys sit in this table (the timeouts); floor / ceiling: the
    least / most value; size: a byte count, also written "8 MiB"; env: the variable that sets it; env_also:
    (variable, value): a variable that, when set and the `env` one is not, means this value (NO_COLOR); names: a
    table whose keys the file chooses (the keymap's binding ids), each set to a string.
    """
    meta = {"key": key, "in_file": in_file, "flat": flat, "floor": floor, "ceiling": ceiling, "size": size,
            "choices": choices, "env": env, "env_also": env_also, "names": names}
    return field(default=default, default_factory=factory, metadata=meta)


@dataclass(frozen=True)
class Timeouts:
    """Deadlines for talking to an engine. A stream is judged by its events, not its bytes: a server that drips
    a byte at a time without completing a line is idle, however busy its socket looks."""

    connect_s: float = setting(3.0, key="connect_timeout", floor=MIN_INTERVAL_S)
    # the whole answer of a request that is not a stream (lists, ps, props, metrics, show)
    request_s: float = setting(30.0, key="request_timeout", floor=MIN_INTERVAL_S)
    # a stream's head and its first complete event: the engine may load the model first
    first_byte_s: float = setting(120.0, key="first_byte_timeout", floor=MIN_INTERVAL_S)
    idle_s: float = setting(30.0, key="idle_timeout", floor=MIN_INTERVAL_S)  # a stream between two complete events
    # load / unload / swap: an engine may read gigabytes of weights before it answers
    load_s: float = setting(330.0, key="load_timeout", floor=MIN_INTERVAL_S)

    @classmethod
    def within(cls, seconds: float, *, connect_s: float | None = None, load_s: float | None = None) -> Timeouts:
        """Every deadline of a request or a stream at `seconds` (what `--timeout` means); connecting never takes
        longer than the default allows, a load keeps its own deadline unless given."""
        base = cls()
        return cls(connect_s=min(seconds, base.connect_s if connect_s is None else connect_s), request_s=seconds,
                   first_byte_s=seconds, idle_s=seconds, load_s=base.load_s if load_s is None else load_s)


def _limit(default: int, key: str) -> Any:
    return setting(default, key=key, size=True, floor=MIN_LIMIT_BYTES)


@dataclass(frozen=True)
class WireLimits:
    """The most enginedeck reads from an engine for one answer, counted after decompression. An answer past its
    limit is refused with an error that names the limit; nothing past it is kept in memory."""

    models_bytes: int = _limit(8 * MIB, "models")  # /api/tags, /v1/models, router and LM Studio lists
    ps_bytes: int = _limit(4 * MIB, "ps")  # /api/ps, llama.cpp /slots
    props_bytes: int = _limit(1 * MIB, "props")  # /props, /info, /version, /health, server info
    metrics_bytes: int = _limit(8 * MIB, "metrics")  # /metrics (Prometheus text)
    show_bytes: int = _limit(16 * MIB, "show")  # /api/show (templates, licences, model info)
    error_bytes: int = _limit(64 * KIB, "error")  # the body of an answer that is an error
    other_bytes: int = _limit(8 * MIB, "other")  # any other answer (load, unload, delete, detection probes)
    line_bytes: int = _limit(1 * MIB, "line")  # one line (NDJSON) or event line (SSE) of a stream
    stream_bytes: int = _limit(256 * MIB, "stream")  # one whole stream (a chat reply, a pull's progress)


@dataclass(frozen=True)
class EngineConfig:
    name: str
    url: str
    kind: str = setting("auto", choices=ENGINE_KINDS)
    api_key_env: str | None = None
    api_key_file: Path | None = None
    verify_tls: bool = True
    ca_file: Path | None = None
    # An engine's table may set any timeout key; the rest come from the top level of the file.
    timeouts: Timeouts = setting(factory=Timeouts, flat=True)
    limits: WireLimits = setting(factory=WireLimits, in_file=False)  # the file's [limits]
    # Commands to run the engine's own log source: a file path or a systemd unit (logs screen default).
    log_file: Path | None = None
    log_unit: str | None = None

    def resolve_api_key(self) -> str | None:
        """Read the key from where the config points. Never cached, never logged."""
        if self.api_key_env:
            value = os.environ.get(self.api_key_env)
            if not value:
                raise ConfigError(
                    f"engine {self.name!r}: api_key_env names {self.api_key_env}, which is not set",
                    hint=f"export {self.api_key_env}=... or remove api_key_env",
                )
            return _secret(value.strip())
        if self.api_key_file:
            return read_secret_file(self.api_key_file, what=f"engine {self.name!r} api_key_file")
        return None


@dataclass(frozen=True)
class SLO:
    ttft_p90_s: float = setting(1.0, floor=0)
    decode_p10_tok_s: float = setting(10.0, floor=0)
    max_error_rate: float = setting(0.01, floor=0, ceiling=1)


@dataclass(frozen=True)
class UIConfig:
    theme: str = setting("dark", env=ENV_THEME, env_also=(ENV_NO_COLOR, NO_COLOR_THEME))
    ascii: bool = setting(False, env=ENV_ASCII)
    poll_interval_s: float = setting(2.0, floor=MIN_INTERVAL_S)
    telemetry_interval_s: float = setting(1.0, floor=MIN_INTERVAL_S)


@dataclass(frozen=True)
class AuditConfig:
    retention_days: int = setting(365, floor=1)
    # rotate the JSONL beyond this; the chain continues across files
    max_file_bytes: int = setting(10 * MIB, size=True, floor=MIN_AUDIT_FILE_BYTES)
    key_file: Path | None = None  # default: <data dir>/audit.key


KEY_MODIFIERS = ("ctrl", "shift", "alt", "meta", "super", "hyper")
_KEY_NAME = re.compile(r"[a-z0-9_]+|[!-~]")  # a key's name (f5, pageup, question_mark) or one printable character


@dataclass(frozen=True)
class KeyChoice:
    """One line of [keymap]: a binding id and the keys the person wants for it."""

    binding: str
    keys: str  # as written: "f5", "ctrl+r", or several: "f5,ctrl+r"
    line: int | None = None  # where it is in the file, for an error the UI finds (an unknown id, a clash)


@dataclass(frozen=True)
class Keymap:
    """The file's [keymap]: binding ids to keys. The UI knows the ids and checks them (console/ui/keymap.py); the
    file's reader checks what it can alone: each value is keys written as Textual writes them."""

    choices: tuple[KeyChoice, ...] = setting((), in_file=False)

    def as_dict(self) -> dict[str, str]:
        return {choice.binding: choice.keys for choice in self.choices}


def key_problem(keys: str) -> str | None:
    """What is wrong with a key list such as "ctrl+r" or "f5,ctrl+r" (None: nothing)."""
    for key in keys.split(","):
        *modifiers, name = key.strip().split("+")
        if not _KEY_NAME.fullmatch(name):
            return f"{key.strip()!r} is not a key" if key.strip() else "a key is empty"
        if unknown := [m for m in modifiers if m not in KEY_MODIFIERS]:
            return f"{unknown[0]!r} in {key.strip()!r} is not a modifier (ctrl, shift, alt, meta, super, hyper)"
    return None


@dataclass(frozen=True)
class FleetConfig:
    """Every host's engines, read back from a Prometheus that scrapes `enginedeck exporter` on each host
    (docs/exporter.md)."""

    prometheus_url: str | None = None  # e.g. http://127.0.0.1:9090; unset: the fleet is this box
    host_name: str | None = None  # what this box's exporter calls it; default: the system's host name
    # the most series one PromQL answer may hold; a fleet larger than this is cut and says so
    max_series: int = setting(20_000, floor=1)


@dataclass(frozen=True)
class AlertsConfig:
    # the alert rules the TUI judges, firing ones in its title bar (the rules file of `enginedeck watch`)
    rules_file: Path | None = None


@dataclass(frozen=True)
class GatewayConfig:
    """One `[[gateways]]` entry: `enginedeck gateway NAME` runs it (docs/gateway.md)."""

    name: str
    listen: str  # HOST:PORT; a host that is not loopback needs keys_file or keys_env
    upstream: str  # a configured engine's name, or a URL
    log_dir: Path | None = None  # default: <data dir>/gateway/NAME
    key_file: Path | None = None  # the request log's HMAC key (0600); default: <log_dir>/request-log.key
    keys_file: Path | None = None  # the clients' API keys, one `ID KEY` a line (0600)
    keys_env: str | None = None  # or a variable holding the same lines
    log_max_bytes: int = setting(64 * MIB, size=True, floor=MIN_AUDIT_FILE_BYTES)
    log_max_age_s: float = setting(86400.0, floor=1.0)
    max_request_bytes: int = setting(16 * MIB, size=True, floor=MIN_LIMIT_BYTES)
    # A client's request line and headers: at most this many bytes (431), complete within this long (408)
    max_head_bytes: int = setting(64 * KIB, size=True, floor=MIN_LIMIT_BYTES)
    head_timeout_s: float = setting(30.0, floor=0.1)
    # Ask vLLM, SGLang and Ollama for their token counts on a client's OpenAI stream (docs/gateway.md)
    ask_usage: bool = True
    # Processes serving the gateway's socket (docs/gateway.md, "Workers"); 1: the one process does everything
    workers: int = setting(1, floor=1, ceiling=64)
    drain_timeout_s: float = setting(30.0, floor=0.0)
    # Opt-in capture of request bodies (docs/gateway.md): off at 0; a ring of this many bytes in <log_dir>/capture
    capture_bytes: int = setting(0, size=True, floor=0)
    capture_replies: bool = False
    capture_redact: str = ""  # JSON fields and headers to redact, comma-separated (Authorization, cookies always)


@dataclass(frozen=True)
class Config:
    path: Path | None = setting(None, in_file=False)  # the file it came from, None when defaults only
    engines: tuple[EngineConfig, ...] = ()
    gateways: tuple[GatewayConfig, ...] = ()
    slo: SLO = setting(factory=SLO)
    ui: UIConfig = setting(factory=UIConfig)
    audit: AuditConfig = setting(factory=AuditConfig)
    fleet: FleetConfig = setting(factory=FleetConfig)
    alerts: AlertsConfig = setting(factory=AlertsConfig)
    keymap: Keymap = setting(factory=Keymap, names=True)
    timeouts: Timeouts = setting(factory=Timeouts, flat=True)
    limits: WireLimits = setting(factory=WireLimits)
    discover: bool = setting(True, env=ENV_DISCOVER)
    read_only: bool = setting(False, env=ENV_READ_ONLY)
    data_dir: Path = setting(factory=data_dir, env=ENV_DATA_DIR)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "enginedeck.db"

    def engine(self, name: str) -> EngineConfig | None:
        return next((e for e in self.engines if e.name == name), None)

    def gateway(self, name: str) -> GatewayConfig | None:
        return next((g for g in self.gateways if g.name == name), None)


def _secret(value: str) -> str:
    """The one place a secret value (an engine's key from its variable or file, the audit key) leaves this module:
    whatever must know every secret, to redact it from untrusted text, hooks in here."""
    remember(value)
    return value


def read_secret_file(path: Path, *, what: str) -> str:
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc.strerror})") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{what} {path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o})",
            hint=f"chmod 600 {path}",
        )
    try:
        return _secret(path.read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc})") from None


# -- loading -------------------------------------------------------------------------------------------------


def load_config(path: Path | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """The file (explicit path > $ENGINEDECK_CONFIG > XDG default; a missing default file is fine) over the
    defaults, then the environment over the file."""
    env = os.environ if env is None else env
    explicit = path is not None or bool(env.get(ENV_CONFIG))
    path = path or (Path(env[ENV_CONFIG]).expanduser() if env.get(ENV_CONFIG) else default_config_path())
    if not path.exists():
        if explicit:
            raise ConfigError(f"config file {path} does not exist")
        return with_environment(Config(), env)
    text, raw = _read_toml(path)
    reader = _Reader(path, text)
    config: Config = reader.table(Config, raw, (), {})
    reader.gateways(config.gateways)
    return with_environment(replace(config, path=path, engines=reader.engines(config.engines),
                                    fleet=reader.fleet(config.fleet)), env)


def _read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise ConfigError(f"{path}:{line.group(1) if line else '?'}: invalid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None


Settings = TypeVar("Settings", bound="DataclassInstance")


def read_settings_file(path: Path, cls: type[Settings], *, what: str) -> tuple[Settings, Callable[..., NoReturn]]:
    """Another TOML file held to the same rules as the config (`cls` a settings dataclass like `Config`): an
    unknown key, a wrong type or a number under its floor fails with the file, the line, the key and the nearest
    valid name. Also returns `fail(loc, message, hint=None)`, which names the line of `loc` (a tuple of keys and
    array indexes) for the checks a type cannot express. `what` names the file in errors ("rules file")."""
    if not path.exists():
        raise ConfigError(f"{what} {path} does not exist")
    text, raw = _read_toml(path)
    reader = _Reader(path, text, root=cls)
    settings: Settings = reader.table(cls, raw, (), {})
    return settings, reader.fail


def with_environment(settings: Settings, env: Mapping[str, str]) -> Settings:
    """`settings` (a settings dataclass) with every field whose variable is set (and not empty) taken from it."""
    changes: dict[str, Any] = {}
    hints = _hints(type(settings))
    for f in fields(settings):
        current = getattr(settings, f.name)
        if is_dataclass(current) and not isinstance(current, type) and \
                (nested := with_environment(current, env)) is not current:
            changes[f.name] = nested
        var, also = f.metadata.get("env"), f.metadata.get("env_also")
        if var and env.get(var):
            changes[f.name] = _from_env(hints[f.name], var, env[var])
        elif also and env.get(also[0]):
            changes[f.name] = also[1]
    return replace(settings, **changes) if changes else settings


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _from_env(typ: Any, var: str, text: str) -> Any:
    if typ is bool:
        if text.strip().lower() in _TRUE + _FALSE:
            return text.strip().lower() in _TRUE
        raise ConfigError(f"{var}={text!r} is neither true nor false", hint="use 1 or 0 (true/false, yes/no, on/off)")
    if typ is Path:
        return Path(text).expanduser()
    return text


def parse_size(value: Any) -> int | None:
    """A byte count: an integer, or a string such as "512 KiB" or "8MiB"; None when it is neither."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", value) if isinstance(value, str) else None
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in SIZE_UNITS:
        return None
    return int(match.group(1)) * SIZE_UNITS[unit]


SIZE_UNITS = {"": 1, "b": 1, "kib": KIB, "kb": 1000, "mib": MIB, "mb": 1000**2, "gib": 1024**3, "gb": 1000**3}
# Keys that would put a secret into the file, and where the secret goes instead.
SECRET_KEYS = {"api_key": 'use api_key_env = "VAR" or api_key_file = "/path" (mode 600)'}

Loc = tuple[str | int, ...]


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


@cache
def _keys(cls: type) -> dict[str, tuple[Field[Any], Field[Any] | None, type]]:
    """The file's keys of a settings class: key -> (field, the flat field it sits in or None, the field's class)."""
    keys: dict[str, tuple[Field[Any], Field[Any] | None, type]] = {}
    for f in fields(cls):
        if not f.metadata.get("in_file", True):
            continue
        if f.metadata.get("flat"):
            keys |= {key: (inner, f, owner) for key, (inner, _, owner) in _keys(_hints(cls)[f.name]).items()}
        else:
            keys[f.metadata.get("key") or f.name] = (f, None, cls)
    return keys


@cache
def file_keys(root: type | None = None) -> dict[str, str]:
    """Every key of the file (of `root`'s file: the config's by default) -> the table it belongs in, for "it
    belongs in [ui]"."""
    homes: dict[str, str] = {}

    def walk(cls: type, shown: str) -> None:
        for key, (f, _, owner) in _keys(cls).items():
            homes.setdefault(key, shown)
            typ = _strip_none(_hints(owner)[f.name])
            if isinstance(typ, type) and is_dataclass(typ):  # a hint is a class, not an instance
                walk(typ, f"[{key}]")
            elif get_origin(typ) is tuple and is_dataclass(get_args(typ)[0]):
                walk(get_args(typ)[0], f"[[{key}]]")

    walk(root or Config, "the top level")
    return homes


def _strip_none(typ: Any) -> Any:
    if get_origin(typ) in (Union, types.UnionType):
        return next(a for a in get_args(typ) if a is not type(None))
    return typ


def _name(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class _Reader:
    """Builds settings from one parsed file, failing on its first problem with the file, line and key."""

    def __init__(self, path: Path, text: str, root: type | None = None) -> None:
        self.path = path
        self.lines = _key_lines(text)
        self.root = root  # the class of the whole file (None: the config's)

    def fail(self, loc: Loc, message: str, hint: str | None = None) -> NoReturn:
        line = next((self.lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in self.lines), None)
        raise ConfigError(f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}", hint=hint)

    def table(self, cls: type, raw: Mapping[str, Any], loc: Loc, inherited: Mapping[str, Any],
              base: Any = None) -> Any:
        """`cls` from one table, over `base` when given. `inherited` holds the parent table's values of fields
        that `cls` has too: a flat field starts from them, a field the file cannot set takes them as they are
        (an engine's timeouts and limits)."""
        keys = _keys(cls)
        for key, value in raw.items():
            if key in SECRET_KEYS:
                self.fail((*loc, key), f"{_name((*loc, key))} is a secret, and secrets are not kept in the config",
                          SECRET_KEYS[key])
            if key not in keys:
                self.unknown(loc, key, value, keys)
        hints = _hints(cls)
        values: dict[str, Any] = {}
        # Arrays of tables last: their entries inherit from the values of this table.
        for f in sorted(fields(cls), key=lambda f: get_origin(hints[f.name]) is tuple):
            key = f.metadata.get("key") or f.name
            if f.metadata.get("flat"):
                given = {k: v for k, v in raw.items() if keys[k][1] is f}
                values[f.name] = self.table(hints[f.name], given, loc, {}, inherited.get(f.name))
            elif not f.metadata.get("in_file", True):
                if f.name in inherited:
                    values[f.name] = inherited[f.name]
            elif key in raw:
                values[f.name] = self.value(hints[f.name], f, raw[key], (*loc, key), values)
            elif f.default is MISSING and f.default_factory is MISSING and base is None:
                self.fail(loc, f"{_table_name(loc)} has no `{key}`", f"add {key} = ...")
        return replace(base, **values) if base is not None else cls(**values)

    def engines(self, engines: tuple[EngineConfig, ...]) -> tuple[EngineConfig, ...]:
        """What a type cannot say about engines: a web address, and a name no other engine has."""
        seen: set[str] = set()
        for i, engine in enumerate(engines):
            if not re.match(r"^https?://", engine.url):
                self.fail(("engines", i, "url"),
                          f"engines[{i}].url must start with http:// or https://, not {engine.url!r}")
            if engine.name in seen:
                self.fail(("engines", i, "name"), f"two engines are named {engine.name!r}")
            seen.add(engine.name)
        return tuple(replace(e, url=e.url.rstrip("/")) for e in engines)

    def gateways(self, gateways: tuple[GatewayConfig, ...]) -> None:
        """A listen address HOST:PORT, and a name no other gateway has."""
        seen: set[str] = set()
        for i, gateway in enumerate(gateways):
            if split_listen(gateway.listen) is None:
                self.fail(("gateways", i, "listen"),
                          f"gateways[{i}].listen must be HOST:PORT (127.0.0.1:8181, [::1]:8181), "
                          f"not {gateway.listen!r}")
            if gateway.name in seen:
                self.fail(("gateways", i, "name"), f"two gateways are named {gateway.name!r}")
            seen.add(gateway.name)

    def fleet(self, fleet: FleetConfig) -> FleetConfig:
        url = fleet.prometheus_url
        if url is not None and not re.match(r"^https?://", url):
            self.fail(("fleet", "prometheus_url"), f"fleet.prometheus_url must start with http:// or https://, "
                      f"not {url!r}")
        return replace(fleet, prometheus_url=url.rstrip("/")) if url else fleet

    def keymap(self, value: Any, loc: Loc) -> Keymap:
        where = _name(loc)
        if not isinstance(value, dict):
            self.fail(loc, f"{where} must be a table ([{where}]), not {value!r}")
        for binding, keys in value.items():
            if not isinstance(keys, str):
                self.fail((*loc, binding), f"{where}.{binding} must be keys such as \"ctrl+r\", not {keys!r}")
            if problem := key_problem(keys):
                self.fail((*loc, binding), f"{where}.{binding}: {problem}",
                          "write keys as Textual does: r, ctrl+r, f5, shift+tab, question_mark; several with commas")
        return Keymap(tuple(KeyChoice(binding, keys.strip(), self.lines.get((*loc, binding)))
                            for binding, keys in value.items()))

    def unknown(self, loc: Loc, key: str, value: Any, keys: Mapping[str, Any]) -> NoReturn:
        import difflib  # only a misspelt file needs it

        here = _table_name(loc)
        if isinstance(value, dict):
            what = f"table [{_name((*loc, key))}]"
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            what = f"table [[{_name((*loc, key))}]]"
        else:
            what = f"key `{key}`" + (f" in {here}" if loc else "")
        homes = file_keys(self.root)
        home = homes.get(key)
        nearest = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.6)
        elsewhere = difflib.get_close_matches(key, list(homes), n=1, cutoff=0.6)
        if home and home != here:
            hint = f"`{key}` belongs in {home}"
        elif nearest:
            hint = f"did you mean `{nearest[0]}`?"
        elif elsewhere:
            hint = f"did you mean `{elsewhere[0]}` (in {homes[elsewhere[0]]})?"
        else:
            hint = f"valid keys {'at' if not loc else 'in'} {here}: {', '.join(keys)}"
        self.fail((*loc, key), f"unknown {what}", hint)

    def value(self, typ: Any, f: Field[Any], value: Any, loc: Loc, siblings: Mapping[str, Any]) -> Any:
        typ = _strip_none(typ)
        meta = f.metadata
        where = _name(loc)
        if meta.get("names"):
            return self.keymap(value, loc)
        if isinstance(typ, type) and is_dataclass(typ):  # a hint is a class, not an instance
            if not isinstance(value, dict):
                self.fail(loc, f"{where} must be a table ([{where}]), not {value!r}")
            return self.table(typ, value, loc, {})
        if get_origin(typ) is tuple and get_args(typ)[0] is str:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                self.fail(loc, f"{where} must be an array of strings, not {value!r}")
            return tuple(value)
        if get_origin(typ) is tuple:
            item = get_args(typ)[0]
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                self.fail(loc, f"{where} must be an array of tables ([[{where}]]), not {value!r}")
            inherit = {g.name: siblings[g.name] for g in fields(item) if g.name in siblings}
            return tuple(self.table(item, v, (*loc, i), inherit) for i, v in enumerate(value))
        if meta.get("size"):
            size = parse_size(value)
            if size is None:
                self.fail(loc, f"{where} must be a size such as 8388608 or \"8 MiB\", not {value!r}")
            value = size
        elif typ is bool:
            if not isinstance(value, bool):
                self.fail(loc, f"{where} must be true or false, not {value!r}")
        elif typ is int:
            if not isinstance(value, int) or isinstance(value, bool):
                self.fail(loc, f"{where} must be a whole number, not {value!r}")
        elif typ is float:
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                self.fail(loc, f"{where} must be a finite number, not {value!r}")
            value = float(value)
        elif typ in (str, Path):
            if not isinstance(value, str):
                self.fail(loc, f"{where} must be a string, not {value!r}")
            if meta.get("choices") and value not in meta["choices"]:
                self.fail(loc, f"{where} {value!r} is not one of {', '.join(meta['choices'])}")
            if typ is Path:
                value = Path(value).expanduser()
        floor, ceiling = meta.get("floor"), meta.get("ceiling")
        if floor is not None and value < floor:
            self.fail(loc, f"{where} must be at least {floor:g}{' bytes' if meta.get('size') else ''}, not {value!r}")
        if ceiling is not None and value > ceiling:
            self.fail(loc, f"{where} must be at most {ceiling:g}, not {value!r}")
        return value


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine's loopback (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_listen(listen: str) -> tuple[str, int] | None:
    """HOST:PORT (an IPv6 host in brackets) as (host, port); None when it is not that."""
    match = re.fullmatch(r"\s*(?:\[([0-9A-Fa-f:.]+)\]|([^\s:\[\]]+)):(\d{1,5})\s*", listen)
    if match is None or not 0 <= int(match.group(3)) < 65536:  # 0: any free port (the log line says which)
        return None
    return match.group(1) or match.group(2), int(match.group(3))


def _table_name(loc: Loc) -> str:
    if not loc:
        return "the top level"
    return f"[[{_name(loc[:-1])}]]" if isinstance(loc[-1], int) else f"[{_name(loc)}]"


_BARE_OR_QUOTED = r"(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
_HEADER = re.compile(rf"\s*(\[\[?)\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(rf"\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*=")


def _dotted(text: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in re.findall(rf"{_BARE_OR_QUOTED}", text))


def _key_lines(text: str) -> dict[Loc, int]:
    """The line where each table and key of a TOML text starts (tomllib keeps no positions). A key inside an
    inline table or a multi-line value is not found; errors about it name its table's line instead."""
    lines: dict[Loc, int] = {}
    table: Loc = ()
    counts: dict[Loc, int] = {}
    open_string = ""
    for number, line in enumerate(text.splitlines(), 1):
        if open_string:
            if line.count(open_string) % 2:
                open_string = ""
            continue
        if header := _HEADER.match(line):
            name = _dotted(header.group(2))
            if header.group(1) == "[[":
                counts[name] = counts.get(name, -1) + 1
                table = (*name, counts[name])
            else:
                table = name
            lines.setdefault(name, number)
            lines.setdefault(table, number)
        elif key := _KEY.match(line):
            lines.setdefault((*table, *_dotted(key.group(1))), number)
            rest = line[key.end():]
            open_string = next((q for q in ('"""', "'''") if rest.count(q) % 2), "")
    return lines
