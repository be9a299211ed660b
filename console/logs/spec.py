"""How a person names a log source, on the command line and in the TUI's "open source" prompt.

    PATH | file:PATH      a file, followed like `tail -F`
    journal:UNIT          a systemd unit, through `journalctl -u UNIT -o json`
    cmd:COMMAND ARGS...   run COMMAND (split like a shell, no shell) and show its stdout and stderr
    audit:PATH            a signed JSONL file from a proxy; each line marked valid / invalid / unsigned
    audit:                enginedeck's own audit trail (data dir), each record's hash and HMAC checked
    engine:NAME           the log_file or log_unit of a configured engine
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from console.errors import LogSourceError
from console.logs.parse import LineParser, audit_record, signed_record
from console.logs.sources import CommandSource, FileSource, JournalSource, LogSource

if TYPE_CHECKING:
    from console.config import Config

@dataclass(frozen=True)
class SourceSpec:
    kind: str
    target: str

    @property
    def label(self) -> str:
        if self.kind == "file":
            return self.target
        return "audit:" if self.kind == "trail" else f"{self.kind}:{self.target}"


def parse_spec(text: str) -> SourceSpec:
    prefix, sep, rest = text.partition(":")
    if sep and prefix in ("file", "journal", "cmd", "audit", "engine"):
        if prefix == "audit" and not rest:
            return SourceSpec("trail", "")
        if not rest.strip():
            raise LogSourceError(f"{text!r}: nothing after {prefix}:", hint=f"{prefix}:{_HINTS[prefix]}")
        return SourceSpec(prefix, rest)
    if not text:
        raise LogSourceError("empty log source", hint="a file path, journal:UNIT, cmd:COMMAND or audit:PATH")
    return SourceSpec("file", text)


_HINTS = {"file": "PATH", "journal": "UNIT", "cmd": "COMMAND ARGS...", "audit": "PATH", "engine": "NAME"}


def build_source(spec: SourceSpec, *, config: Config, lines: int = 10, follow: bool = True,
                 key: bytes | None = None, keep: int | None = None) -> LogSource:
    """The source for `spec`. `key` is the HMAC key of a signed file (audit:PATH); enginedeck's own trail uses
    its own key. `keep`: the most lines the consumer holds (see `FileSource`)."""
    if spec.kind == "file":
        return FileSource(Path(spec.target).expanduser(), lines=lines, follow=follow, keep=keep)
    if spec.kind == "journal":
        return JournalSource(spec.target, lines=lines, follow=follow)
    if spec.kind == "cmd":
        try:
            argv = shlex.split(spec.target)
        except ValueError as exc:
            raise LogSourceError(f"cmd:{spec.target}: {exc}") from None
        return CommandSource(argv, name=spec.label)
    if spec.kind == "audit":
        if key is None:
            raise LogSourceError(f"{spec.label}: a signed file needs its key", hint="--key-file FILE or --key-env VAR")
        from console.audit.signed import SignedMarker

        path = Path(spec.target).expanduser()
        return FileSource(path, lines=lines, follow=follow, name=spec.label, keep=keep,
                          parser=LineParser(spec.label, marker=SignedMarker(key), shape=signed_record))
    if spec.kind == "trail":
        from console.audit.trail import AuditTrail
        from console.audit.verify import TrailMarker

        trail = AuditTrail.for_config(config, None)
        return FileSource(trail.path, lines=lines, follow=follow, name=spec.label, keep=keep,
                          parser=LineParser(spec.label, marker=TrailMarker(trail.key()), shape=audit_record))
    if spec.kind == "engine":
        engine = config.engine(spec.target)
        if engine is None:
            raise LogSourceError(f"no engine named {spec.target!r} in the config")
        if engine.log_file is not None:
            return build_source(SourceSpec("file", str(engine.log_file)), config=config, lines=lines, follow=follow,
                                keep=keep)
        if engine.log_unit is not None:
            return build_source(SourceSpec("journal", engine.log_unit), config=config, lines=lines, follow=follow)
        raise LogSourceError(f"engine {spec.target!r} has no log source",
                             hint="set log_file or log_unit in its [[engines]] entry")
    raise LogSourceError(f"unknown log source kind {spec.kind!r}")
