"""Configuration: TOML in the XDG config dir, layered defaults < file < environment, frozen once built.

Secrets are never stored here: an engine names an environment variable or a key file, and the key is read
only when the engine is built (`resolve_api_key`). A key file that group or others can read is refused.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from console.errors import ConfigError
from console.secrets import remember

ENGINE_KINDS = ("auto", "ollama", "vllm", "llamacpp", "sglang", "tgi", "lmstudio", "openai")
ENV_CONFIG = "ENGINEDECK_CONFIG"
ENV_DATA_DIR = "ENGINEDECK_DATA_DIR"
# Floors for numbers a config may set: a zero poll interval would spin, a tiny audit file would rotate per record.
MIN_INTERVAL_S = 0.1
MIN_AUDIT_FILE_BYTES = 64 * 1024


def config_dir() -> Path:
    from platformdirs import user_config_path

    return user_config_path("enginedeck", appauthor=False)


def data_dir() -> Path:
    override = os.environ.get(ENV_DATA_DIR)
    if override:
        return Path(override)
    from platformdirs import user_data_path

    return user_data_path("enginedeck", appauthor=False)


def default_config_path() -> Path:
    return config_dir() / "config.toml"


@dataclass(frozen=True)
class Timeouts:
    """Deadlines for talking to an engine. A stream is judged by its events, not its bytes: a server that drips
    a byte at a time without completing a line is idle, however busy its socket looks."""

    connect_s: float = 3.0
    request_s: float = 30.0  # the whole answer of a request that is not a stream (lists, ps, props, metrics, show)
    first_byte_s: float = 120.0  # a stream's head and its first complete event: the engine may load the model first
    idle_s: float = 30.0  # a stream between two complete events
    load_s: float = 330.0  # load / unload / swap: an engine may read gigabytes of weights before it answers

    @classmethod
    def within(cls, seconds: float, *, connect_s: float | None = None, load_s: float | None = None) -> Timeouts:
        """Every deadline of a request or a stream at `seconds` (what `--timeout` means); connecting never takes
        longer than the default allows, a load keeps its own deadline unless given."""
        base = cls()
        return cls(connect_s=min(seconds, base.connect_s if connect_s is None else connect_s), request_s=seconds,
                   first_byte_s=seconds, idle_s=seconds, load_s=base.load_s if load_s is None else load_s)


KIB, MIB = 1024, 1024 * 1024


@dataclass(frozen=True)
class WireLimits:
    """The most enginedeck reads from an engine for one answer, counted after decompression. An answer past its
    limit is refused with an error that names the limit; nothing past it is kept in memory."""

    models_bytes: int = 8 * MIB  # /api/tags, /v1/models, router and LM Studio lists
    ps_bytes: int = 4 * MIB  # /api/ps, llama.cpp /slots
    props_bytes: int = 1 * MIB  # /props, /info, /version, /health, server info
    metrics_bytes: int = 8 * MIB  # /metrics (Prometheus text)
    show_bytes: int = 16 * MIB  # /api/show (templates, licences, model info)
    error_bytes: int = 64 * KIB  # the body of an answer that is an error
    other_bytes: int = 8 * MIB  # any other answer (load, unload, delete, detection probes)
    line_bytes: int = 1 * MIB  # one line (NDJSON) or event line (SSE) of a stream
    stream_bytes: int = 256 * MIB  # one whole stream (a chat reply, a pull's progress)


@dataclass(frozen=True)
class EngineConfig:
    name: str
    url: str
    kind: str = "auto"
    api_key_env: str | None = None
    api_key_file: Path | None = None
    verify_tls: bool = True
    ca_file: Path | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: WireLimits = field(default_factory=WireLimits)
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
            remember(value.strip())
            return value.strip()
        if self.api_key_file:
            return read_secret_file(self.api_key_file, what=f"engine {self.name!r} api_key_file")
        return None


@dataclass(frozen=True)
class SLO:
    ttft_p90_s: float = 1.0
    decode_p10_tok_s: float = 10.0
    max_error_rate: float = 0.01


@dataclass(frozen=True)
class UIConfig:
    theme: str = "dark"
    ascii: bool = False
    poll_interval_s: float = 2.0
    telemetry_interval_s: float = 1.0


@dataclass(frozen=True)
class AuditConfig:
    retention_days: int = 365
    max_file_bytes: int = 10 * 1024 * 1024  # rotate the JSONL beyond this; the chain continues across files
    key_file: Path | None = None  # default: <data dir>/audit.key


@dataclass(frozen=True)
class Config:
    path: Path | None = None  # the file it came from, None when defaults only
    engines: tuple[EngineConfig, ...] = ()
    slo: SLO = field(default_factory=SLO)
    ui: UIConfig = field(default_factory=UIConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: WireLimits = field(default_factory=WireLimits)
    discover: bool = True
    read_only: bool = False
    data_dir: Path = field(default_factory=data_dir)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "enginedeck.db"

    def engine(self, name: str) -> EngineConfig | None:
        return next((e for e in self.engines if e.name == name), None)

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **changes)


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
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc})") from None
    remember(value)
    return value


def _toml_line(exc: tomllib.TOMLDecodeError) -> str:
    match = re.search(r"line (\d+)", str(exc))
    return match.group(1) if match else "?"


def load_config(path: Path | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Build the config: explicit path > $ENGINEDECK_CONFIG > XDG default. A missing default file is fine."""
    env = os.environ if env is None else env
    explicit = path is not None or bool(env.get(ENV_CONFIG))
    path = path or (Path(env[ENV_CONFIG]) if env.get(ENV_CONFIG) else default_config_path())
    if not path.exists():
        if explicit:
            raise ConfigError(f"config file {path} does not exist")
        return Config()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}:{_toml_line(exc)}: invalid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    return _parse(raw, path)


def _expect(value: Any, typ: type | tuple[type, ...], where: str, path: Path, *,
            minimum: float | None = None) -> Any:
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ is not bool and isinstance(value, bool)):
        want = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise ConfigError(f"{path}: {where} must be a {want}, not {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{path}: {where} must be at least {minimum:g}, not {value!r}")
    return value


def _section(raw: Mapping[str, Any], key: str, path: Path) -> Mapping[str, Any]:
    return _expect(raw.get(key, {}), dict, f"[{key}]", path)


TIMEOUT_KEYS = {"connect_timeout": "connect_s", "request_timeout": "request_s",
                "first_byte_timeout": "first_byte_s", "idle_timeout": "idle_s", "load_timeout": "load_s"}
LIMIT_UNITS = {"": 1, "b": 1, "kib": KIB, "kb": 1000, "mib": MIB, "mb": 1000**2, "gib": 1024**3, "gb": 1000**3}
MIN_LIMIT_BYTES = 1024


def _timeouts(raw: Mapping[str, Any], where: str, path: Path, base: Timeouts) -> Timeouts:
    return replace(base, **{
        field_name: _expect(raw[key], float, f"{where}.{key}", path, minimum=MIN_INTERVAL_S)
        for key, field_name in TIMEOUT_KEYS.items() if key in raw
    })


def parse_size(value: Any, where: str, path: Path) -> int:
    """A byte count: an integer, or a string such as "512 KiB" or "8MiB"."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", value) if isinstance(value, str) else None
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in LIMIT_UNITS:
            raise ConfigError(f"{path}: {where} must be a size such as 8388608 or \"8 MiB\", not {value!r}")
        size = int(match.group(1)) * LIMIT_UNITS[unit]
    if size < MIN_LIMIT_BYTES:
        raise ConfigError(f"{path}: {where} must be at least {MIN_LIMIT_BYTES} bytes, not {value!r}")
    return size


def _limits(raw: Mapping[str, Any], path: Path) -> WireLimits:
    names = {f.name.removesuffix("_bytes"): f.name for f in fields(WireLimits)}
    for key in raw:
        if key not in names:
            raise ConfigError(f"{path}: limits.{key} is not a limit; the limits are {', '.join(names)}")
    return WireLimits(**{names[k]: parse_size(v, f"limits.{k}", path) for k, v in raw.items()})


def _parse(raw: Mapping[str, Any], path: Path) -> Config:
    timeouts = _timeouts(raw, "top level", path, Timeouts())
    limits = _limits(_section(raw, "limits", path), path)
    engines: list[EngineConfig] = []
    seen: set[str] = set()
    for i, entry in enumerate(_expect(raw.get("engines", []), list, "engines", path)):
        where = f"engines[{i}]"
        entry = _expect(entry, dict, where, path)
        name = _expect(entry.get("name"), str, f"{where}.name", path)
        url = _expect(entry.get("url"), str, f"{where}.url", path)
        if not re.match(r"^https?://", url):
            raise ConfigError(f"{path}: {where}.url must start with http:// or https://, not {url!r}")
        if name in seen:
            raise ConfigError(f"{path}: two engines are named {name!r}")
        seen.add(name)
        kind = _expect(entry.get("kind", "auto"), str, f"{where}.kind", path)
        if kind not in ENGINE_KINDS:
            raise ConfigError(f"{path}: {where}.kind {kind!r} is not one of {', '.join(ENGINE_KINDS)}")
        if "api_key" in entry:
            raise ConfigError(
                f"{path}: {where} has api_key; secrets are not kept in the config",
                hint="use api_key_env = \"VAR\" or api_key_file = \"/path\" (mode 600)",
            )
        opt_path = {k: Path(os.path.expanduser(_expect(entry[k], str, f"{where}.{k}", path)))
                    for k in ("api_key_file", "ca_file", "log_file") if k in entry}
        engines.append(EngineConfig(
            name=name, url=url.rstrip("/"), kind=kind,
            api_key_env=_expect(entry["api_key_env"], str, f"{where}.api_key_env", path)
            if "api_key_env" in entry else None,
            verify_tls=_expect(entry.get("verify_tls", True), bool, f"{where}.verify_tls", path),
            timeouts=_timeouts(entry, where, path, timeouts), limits=limits,
            log_unit=_expect(entry["log_unit"], str, f"{where}.log_unit", path) if "log_unit" in entry else None,
            **opt_path,
        ))
    slo_raw = _section(raw, "slo", path)
    slo = SLO(
        ttft_p90_s=_expect(slo_raw.get("ttft_p90_s", SLO.ttft_p90_s), float, "slo.ttft_p90_s", path, minimum=0),
        decode_p10_tok_s=_expect(
            slo_raw.get("decode_p10_tok_s", SLO.decode_p10_tok_s), float, "slo.decode_p10_tok_s", path, minimum=0),
        max_error_rate=_expect(
            slo_raw.get("max_error_rate", SLO.max_error_rate), float, "slo.max_error_rate", path, minimum=0),
    )
    ui_raw = _section(raw, "ui", path)
    ui = UIConfig(
        theme=_expect(ui_raw.get("theme", UIConfig.theme), str, "ui.theme", path),
        ascii=_expect(ui_raw.get("ascii", UIConfig.ascii), bool, "ui.ascii", path),
        poll_interval_s=_expect(
            ui_raw.get("poll_interval_s", UIConfig.poll_interval_s), float, "ui.poll_interval_s", path,
            minimum=MIN_INTERVAL_S),
        telemetry_interval_s=_expect(
            ui_raw.get("telemetry_interval_s", UIConfig.telemetry_interval_s), float,
            "ui.telemetry_interval_s", path, minimum=MIN_INTERVAL_S),
    )
    audit_raw = _section(raw, "audit", path)
    audit = AuditConfig(
        retention_days=_expect(
            audit_raw.get("retention_days", AuditConfig.retention_days), int, "audit.retention_days", path,
            minimum=1),
        max_file_bytes=_expect(
            audit_raw.get("max_file_bytes", AuditConfig.max_file_bytes), int, "audit.max_file_bytes", path,
            minimum=MIN_AUDIT_FILE_BYTES),
        key_file=Path(_expect(audit_raw["key_file"], str, "audit.key_file", path))
        if "key_file" in audit_raw else None,
    )
    extra: dict[str, Any] = {}
    if "data_dir" in raw:
        extra["data_dir"] = Path(os.path.expanduser(_expect(raw["data_dir"], str, "data_dir", path)))
    return Config(
        path=path, engines=tuple(engines), slo=slo, ui=ui, audit=audit, timeouts=timeouts, limits=limits,
        discover=_expect(raw.get("discover", True), bool, "discover", path),
        read_only=_expect(raw.get("read_only", False), bool, "read_only", path),
        **extra,
    )
