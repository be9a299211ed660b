"""What a probe run is asked to do (`ProbeParams`) and the bounds on it, shared by the ladder, its streams and
its worker processes (console/probe/ladder.py, streams.py, workers.py), which all import it from here."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from console.errors import ConfigError

DEFAULT_LEVELS = (1, 2, 4, 8, 16, 32)
MAX_LEVEL = 4096
MAX_WORKERS = 64

GC_THRESHOLD_DURING_PROBE = 50_000  # measured: halves p99 client lag at 64 and 256 streams (docs/probe.md)


@dataclass(frozen=True)
class ProbeParams:
    levels: tuple[int, ...] = DEFAULT_LEVELS
    requests: int = 20  # measured per level; raised to 2 per stream at high levels
    max_tokens: int = 128
    prompt_tokens: int = 64
    warmup: bool = True
    timeout_s: float = 120.0  # a whole reply; a stalled stream becomes a "timeout" error
    temperature: float = 0.0
    seed: int = 1234
    ignore_eos: bool = False  # ask engines that support it (vLLM, llama.cpp, SGLang) for exactly max_tokens
    workers: int = 0  # processes per large level; 0 = by level size and free cores; 1 = the probe's own loop

    def __post_init__(self) -> None:
        if not self.levels:
            raise ConfigError("probe levels: give at least one concurrency level")
        if any(n < 1 or n > MAX_LEVEL for n in self.levels):
            raise ConfigError(f"probe levels must be between 1 and {MAX_LEVEL}, not {list(self.levels)}")
        if list(self.levels) != sorted(set(self.levels)):
            raise ConfigError(f"probe levels must rise without repeats, not {list(self.levels)}")
        if self.requests < 1 or self.max_tokens < 1 or self.prompt_tokens < 1:
            raise ConfigError("probe --requests, --max-tokens and --prompt-tokens must be at least 1")
        if self.timeout_s <= 0:
            raise ConfigError("probe timeout must be positive")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"probe workers must be between 0 (automatic) and {MAX_WORKERS}, not {self.workers}")

    def requests_for(self, level: int) -> int:
        return max(self.requests, 2 * level)

    @property
    def connections(self) -> int:
        """Connection pool the engine client needs: every stream in flight plus the metrics scraper."""
        return max(self.levels) + 4

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["levels"] = list(self.levels)
        return out


def parse_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise ConfigError(f"--levels wants numbers separated by commas, like 1,2,4,8; not {text!r}") from None
    return levels
