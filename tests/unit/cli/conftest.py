"""The isolated environment every CLI test runs in, and `cli(...)` to run `enginedeck` in-process within it.

No ENGINEDECK_* variable of the caller leaks in; ENGINEDECK_CONFIG names a config file in tmp (empty until a test
writes one with `write_config`) and ENGINEDECK_DATA_DIR a data dir in tmp, so subprocesses inherit the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from console.cli import main
from console.services import Context
from tests.unit.test_conversation import ScriptedEngine, words

WriteConfig = Callable[..., Path]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config file ENGINEDECK_CONFIG names (empty), with ENGINEDECK_DATA_DIR at tmp_path/data."""
    for name in [k for k in os.environ if k.startswith("ENGINEDECK_")]:
        monkeypatch.delenv(name)
    config = tmp_path / "config.toml"
    config.write_text("")
    monkeypatch.setenv("ENGINEDECK_CONFIG", str(config))
    monkeypatch.setenv("ENGINEDECK_DATA_DIR", str(tmp_path / "data"))
    return config


@pytest.fixture
def write_config(isolated: Path) -> WriteConfig:
    """`write_config(engines, extra=TOML)`: short timeouts plus `engines` (name -> "url[=kind]"), mode 600."""

    def write(engines: Mapping[str, str] | None = None, *, extra: str = "") -> Path:
        lines = ["connect_timeout = 1.0", "request_timeout = 5.0", "first_byte_timeout = 5.0", "idle_timeout = 5.0"]
        for name, spec in (engines or {}).items():
            url, _, kind = spec.partition("=")
            lines += ["[[engines]]", f'name = "{name}"', f'url = "{url}"'] + ([f'kind = "{kind}"'] if kind else [])
        isolated.write_text("\n".join(lines) + "\n" + extra)
        isolated.chmod(0o600)
        return isolated

    return write


@pytest.fixture
def cli(write_config: WriteConfig) -> Callable[..., int]:
    """`cli(*args, engines=..., extra=...)`: `enginedeck ARGS --no-discover` with that config; the exit code."""

    def run(*args: str, engines: Mapping[str, str] | None = None, extra: str = "") -> int:
        return main([*args, "--no-discover", "--config", str(write_config(engines, extra=extra))])

    return run


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """`ctx.engine()` answers with `env["engine"]` (a ScriptedEngine) and notes the ref in `env["ref"]`;
    `env["db"]` is the history database."""
    state: dict[str, Any] = {"engine": ScriptedEngine(words("hello")), "db": tmp_path / "data" / "enginedeck.db"}

    async def engine(self: Context, ref: str) -> ScriptedEngine:
        state["ref"] = ref
        return state["engine"]

    monkeypatch.setattr(Context, "engine", engine)
    return state
