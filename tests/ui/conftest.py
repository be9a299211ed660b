"""UI tests run the crash guard strict: a bug that the guard would turn into a notice fails the test, as Textual's
own handling would. Tests of the guard itself, and the sweep over every key, are marked `crash_guard` and see
the guard as a person does."""

from __future__ import annotations

import pytest

from console.ui.guard import CrashReporter


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "crash_guard: the crash guard reports instead of failing the test")


@pytest.fixture(autouse=True)
def strict_crash_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("crash_guard") is None:
        monkeypatch.setattr(CrashReporter, "strict", True)
