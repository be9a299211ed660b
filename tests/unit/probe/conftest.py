"""The synthetic engine fixture for every probe test (a factory; each engine runs in its own process)."""

from tests.fakes.synthetic_engine import synthetic_engine_fixture  # noqa: F401 - the `synthetic_engine` fixture
