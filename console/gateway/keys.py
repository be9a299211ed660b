"""The clients' API keys of a gateway: read from a 0600 file or an environment variable, never from the config.

One key a line: `ID KEY` (an id of your choosing: a client, a team), blank lines and `#` comments ignored. A
record names the id, never the key. Without keys, a client's own `Authorization: Bearer` key (meant for the
engine, which the gateway replaces with the configured one) is recorded as a fingerprint: `key:` and the first
12 hex digits of its SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

from console.config import read_secret_file
from console.errors import ConfigError
from console.secrets import remember


def fingerprint(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:12]


def bearer(authorization: bytes | None) -> str | None:
    """The key of `Authorization: Bearer KEY`; None without one."""
    if not authorization:
        return None
    scheme, _, value = authorization.decode("latin-1").strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


class ClientKeys:
    def __init__(self, keys: Mapping[str, str]) -> None:
        self._keys = [(kid, key.encode("utf-8")) for kid, key in keys.items()]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def match(self, presented: str | None) -> str | None:
        """The id of the key presented; every key is compared in constant time, so timing says nothing."""
        if presented is None:
            return None
        given = presented.encode("utf-8", "replace")
        found = None
        for kid, key in self._keys:
            if hmac.compare_digest(given, key) and found is None:
                found = kid
        return found

    @classmethod
    def parse(cls, text: str, *, where: str) -> ClientKeys:
        keys: dict[str, str] = {}
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            kid, _, key = line.partition(" ")
            key = key.strip()
            if not key or len(key) < 16:
                raise ConfigError(f"{where}: line {n} is not `ID KEY` with a key of at least 16 characters",
                                  hint="one client a line: an id, a space, the key (e.g. from `openssl rand -hex 32`)")
            if kid in keys:
                raise ConfigError(f"{where}: line {n}: the id {kid!r} is given twice")
            remember(key)
            keys[kid] = key
        return cls(keys)

    @classmethod
    def load(cls, *, keys_file: Path | None, keys_env: str | None, env: Mapping[str, str] | None = None) -> ClientKeys:
        env = os.environ if env is None else env
        keys = cls({})
        if keys_file is not None:
            keys = cls.parse(read_secret_file(keys_file, what="gateway keys_file"), where=str(keys_file))
        if keys_env is not None:
            text = env.get(keys_env)
            if not text:
                raise ConfigError(f"gateway keys_env names {keys_env}, which is not set",
                                  hint=f"export {keys_env}='ID KEY' or remove keys_env")
            more = cls.parse(text.replace(",", "\n"), where=f"${keys_env}")
            keys = cls({**dict(keys.items()), **dict(more.items())})
        return keys

    def items(self) -> list[tuple[str, str]]:
        return [(kid, key.decode("utf-8")) for kid, key in self._keys]
