"""The HMAC keys: enginedeck's own trail key (created on first use, mode 0600) and keys for proxies' files."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from console.config import read_secret_file
from console.errors import AuditError
from console.secrets import remember


def load_or_create_key(path: Path) -> bytes:
    """The trail key at `path`, created (256 random bits, hex, mode 0600) if there is none. A key file that
    group or others can read is refused (ConfigError from read_secret_file)."""
    if not path.exists():
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another enginedeck created it a moment ago: use theirs
        except OSError as exc:
            raise AuditError(f"cannot create the audit key {path}: {exc.strerror}") from None
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
    key = read_secret_file(path, what="audit key file")
    if not key:
        raise AuditError(f"the audit key file {path} is empty", hint="restore it from a backup")
    return key.encode("utf-8")


def key_from_env(var: str) -> bytes:
    value = os.environ.get(var)
    if not value:
        raise AuditError(f"the environment variable {var} is not set (it should hold the HMAC key)")
    remember(value.strip())
    return value.strip().encode("utf-8")


def decode_key(text: bytes, encoding: str) -> bytes:
    """The key as the proxy used it: its text as UTF-8 bytes (`utf8`) or hex-decoded (`hex`)."""
    if encoding == "hex":
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise AuditError("the key is not valid hex", hint="use --key-encoding utf8") from None
    return text
