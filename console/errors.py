"""One typed error hierarchy. Every message says what happened and what to try.

Nothing below the UI prints: code raises these, and the CLI or the UI turns them into one line for a person.
"""

from __future__ import annotations

from console.secrets import redact


class EngineDeckError(Exception):
    """Base of every error enginedeck means to show a person (never a traceback)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message = redact(message)  # an engine may echo a key in its error body (console/secrets.py)
        super().__init__(message)
        self.message = message
        self.hint = hint and redact(hint)

    def __str__(self) -> str:
        return f"{self.message}: {self.hint}" if self.hint else self.message


class ConfigError(EngineDeckError):
    """The config file, an engine entry or a secret reference is unusable."""


class StoreError(EngineDeckError):
    """The SQLite store cannot be opened or written (full disk, read-only file, corrupt database)."""


class ReadOnlyError(EngineDeckError):
    """A mutating action was asked for while enginedeck runs with --read-only."""


class EngineError(EngineDeckError):
    """Something went wrong talking to an engine. `engine` names it the way a person knows it."""

    def __init__(
        self, message: str, *, engine: str = "", status: int | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.engine = engine
        self.status = status

    def __str__(self) -> str:
        where = f"{self.engine}: " if self.engine else ""
        return where + super().__str__()


class UnreachableError(EngineError):
    """Connection refused, DNS failure, TLS failure: nothing answered."""


class AuthError(EngineError):
    """401/403: the engine wants a key we do not have, or rejected the one we sent."""


class NotFoundError(EngineError):
    """404: the model or endpoint does not exist on this engine."""


class BusyError(EngineError):
    """429/503: the engine is overloaded or still loading; retrying later may work."""


class BadResponseError(EngineError):
    """The engine answered, but not with what its API promises (garbage JSON, wrong shape, 5xx)."""


class LimitError(BadResponseError):
    """An answer went past one of enginedeck's limits (the size of a body, a line or a stream); the message names
    the limit and where it is set."""


class EngineTimeoutError(EngineError):
    """No answer within the configured timeout."""


class StreamError(EngineError):
    """A stream broke midway: an error line, a reset connection, or an end without a final chunk."""


class UnsupportedError(EngineError):
    """This engine kind (or this server's configuration) cannot do the operation; the message says why."""


class ProbeError(EngineDeckError):
    """The probe itself failed (a worker process could not start or died); the levels measured so far are kept."""


class LogSourceError(EngineDeckError):
    """A log source cannot be opened or followed (missing file, no journalctl, a command that cannot start)."""


class AuditError(EngineDeckError):
    """The audit trail cannot be written or verified (key file unsafe, file unreadable, broken chain)."""
