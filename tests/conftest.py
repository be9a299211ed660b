"""Shared pytest set-up for every test: the engine-lab fixtures (tests/lab_fixtures.py), the fake engines'
fixtures (`ollama_server`, `sglang_server`, `tgi_server`, `lmstudio_server`, `hostile_server`,
`synthetic_engine`) and a fresh history `store`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from console import secrets
from console.store.db import Store
from scripts.lab import VLLM_READY_S

pytest_plugins = [
    "tests.lab_fixtures",
    "tests.fakes.ollama_server",
    "tests.fakes.openai_family",
    "tests.fakes.hostile_server",
    "tests.fakes.synthetic_engine",
]

# pytest-timeout counts fixture set-up, and the first vLLM test of a session waits minutes for the server to start.
VLLM_TEST_TIMEOUT_S = int(VLLM_READY_S) + 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("vllm") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(VLLM_TEST_TIMEOUT_S))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """An empty history database in tmp, closed after the test."""
    s = await Store.open(tmp_path / "store.db")
    yield s
    await s.close()


@pytest.fixture(autouse=True)
def forget_secrets() -> Iterator[None]:
    """Each test starts with no secret remembered: a key one test read (say "secret") would otherwise be redacted
    from every later test's text in this process."""
    secrets.forget_all()
    yield
    secrets.forget_all()
