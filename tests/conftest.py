"""Shared pytest set-up: the engine-lab fixtures (tests/lab_fixtures.py) for every test."""

from __future__ import annotations

import pytest

from scripts.lab import VLLM_READY_S

pytest_plugins = ["tests.lab_fixtures"]

# pytest-timeout counts fixture set-up, and the first vLLM test of a session waits minutes for the server to start.
VLLM_TEST_TIMEOUT_S = int(VLLM_READY_S) + 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("vllm") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(VLLM_TEST_TIMEOUT_S))
