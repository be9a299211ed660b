"""One operator audit event and the rules that make the trail tamper-evident.

A record's `hash` is SHA-256 over its canonical JSON (sorted keys, compact separators, UTF-8), which includes
`seq` and `prev_hash`, so every record commits to all the records before it. `hmac` is HMAC-SHA256 of that
hash under the trail's key: without the key nobody can rewrite a record and re-chain the ones after it.
"""

from __future__ import annotations

import hashlib
import hmac as hmac_mod
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
REDACTED = "[redacted]"
# A parameter named with one of these words holds a secret; the name is split at "_", "-", "." and camelCase, so
# "keep_alive" and "monkey" are not keys. "token" counts only with a text value (an auth token): max_tokens,
# prompt_tokens and token counts are numbers. A name that also says where a secret lives (key_file, api_key_env)
# is a reference, not the secret.
_SECRET_WORDS = frozenset({"key", "apikey", "secret", "secrets", "password", "passwd", "passphrase", "authorization",
                           "cookie", "credential", "credentials", "bearer"})
_REFERENCE_WORDS = frozenset({"file", "path", "env", "var", "encoding", "id", "name"})
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_SECRET_VALUE = re.compile(r"^\s*(?:bearer|basic)\s+\S|^sk-[A-Za-z0-9_\-]{12,}", re.IGNORECASE)
# Fields of the JSONL record other than `hash` and `hmac`, i.e. what the hash covers.
HASHED_FIELDS = ("seq", "time", "os_user", "ssh_origin", "host", "action", "engine", "target", "params", "result",
                 "duration_s", "prev_hash")


def secret_name(name: str, value: Any) -> bool:
    """Whether a parameter called `name` holding `value` is a secret (see _SECRET_WORDS)."""
    words = {w.lower() for w in _WORD.findall(name)}
    if words & _REFERENCE_WORDS:
        return False
    return bool(words & _SECRET_WORDS) or ("token" in words and isinstance(value, str))


def strip_secrets(value: Any) -> Any:
    """A copy of `value` with secrets replaced: parameters named as secrets (`secret_name`) and values that look
    like bearer tokens or API keys. Secrets enginedeck has read are removed by the trail (console/secrets.py)."""
    if isinstance(value, Mapping):
        return {str(k): REDACTED if secret_name(str(k), v) else strip_secrets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strip_secrets(v) for v in value]
    if isinstance(value, str) and _SECRET_VALUE.search(value):
        return REDACTED
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


def canonical(record: Mapping[str, Any]) -> bytes:
    body = {k: record.get(k) for k in HASHED_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def sign(key: bytes, digest: str) -> str:
    return hmac_mod.new(key, digest.encode("ascii"), hashlib.sha256).hexdigest()


def signature_ok(key: bytes, digest: str, signature: Any) -> bool:
    return isinstance(signature, str) and hmac_mod.compare_digest(sign(key, digest), signature)


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    ts: float  # Unix time, rounded to µs; `time` in the JSONL is derived from it
    os_user: str
    ssh_origin: str | None
    host: str
    action: str
    engine: str | None
    target: str | None
    params: Mapping[str, Any] = field(default_factory=dict)
    result: str = "ok"
    duration_s: float | None = None
    prev_hash: str = GENESIS
    hash: str = ""
    hmac: str | None = None

    def body(self) -> dict[str, Any]:
        """The hashed fields, as they appear in the JSONL."""
        return {"seq": self.seq, "time": iso_time(self.ts), "os_user": self.os_user, "ssh_origin": self.ssh_origin,
                "host": self.host, "action": self.action, "engine": self.engine, "target": self.target,
                "params": dict(self.params), "result": self.result, "duration_s": self.duration_s,
                "prev_hash": self.prev_hash}

    def to_json(self) -> str:
        record = self.body() | {"hash": self.hash, "hmac": self.hmac}
        return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def sealed(self, key: bytes) -> AuditEvent:
        """This event with its hash and HMAC computed."""
        from dataclasses import replace

        digest = record_hash(self.body())
        return replace(self, hash=digest, hmac=sign(key, digest))

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.ts, UTC)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> AuditEvent:
        """From a parsed JSONL line (trusted shape: call after the line's hash was checked)."""
        ts = datetime.fromisoformat(str(record["time"])).timestamp()
        return cls(seq=int(record["seq"]), ts=ts, os_user=str(record.get("os_user") or ""),
                   ssh_origin=record.get("ssh_origin"), host=str(record.get("host") or ""),
                   action=str(record.get("action") or ""), engine=record.get("engine"), target=record.get("target"),
                   params=dict(record.get("params") or {}), result=str(record.get("result") or ""),
                   duration_s=record.get("duration_s"), prev_hash=str(record.get("prev_hash") or ""),
                   hash=str(record.get("hash") or ""), hmac=record.get("hmac"))
