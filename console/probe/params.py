"""What a probe run is asked to do (`ProbeParams`) and the bounds on it, shared by the ladder, its streams and
its worker processes (console/probe/ladder.py, streams.py, workers.py), which all import it from here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from console.errors import ConfigError

DEFAULT_LEVELS = (1, 2, 4, 8, 16, 32)
MAX_LEVEL = 4096
MAX_WORKERS = 64
MAX_RATE = 10_000.0  # requests per second an open-loop level may ask for
ARRIVALS = ("poisson", "constant")
VERDICTS = ("pessimistic", "point")
PRECISION = 1  # bisection's default for a person (CLI and TUI): exact; ProbeParams' own 0 keeps library runs short

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
    verdict: str = "pessimistic"  # judge TTFT p90 / decode p10 at their intervals' pessimistic end, or "point"
    precision: int = 0  # bisect between the last passing and first failing level down to this gap; 0 = no bisection
    noise_guard: bool = False  # run concurrency 1 twice and report the spread of TTFT and TPOT p50
    # Open loop (console/probe/openloop.py): arrival rates (requests/s) instead of concurrency levels.
    rates: tuple[float, ...] = ()
    arrivals: str = "poisson"
    max_in_flight: int = 256  # open loop: a request due while this many are in flight is dropped, never delayed

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
        if self.verdict not in VERDICTS:
            raise ConfigError(f"probe --verdict must be one of {', '.join(VERDICTS)}, not {self.verdict!r}")
        if self.precision < 0:
            raise ConfigError(f"probe --precision must be 0 (no bisection) or more, not {self.precision}")
        if self.arrivals not in ARRIVALS:
            raise ConfigError(f"probe --arrivals must be one of {', '.join(ARRIVALS)}, not {self.arrivals!r}")
        if any(not 0 < r <= MAX_RATE for r in self.rates):
            raise ConfigError(f"probe rates must be above 0 and at most {MAX_RATE:g} requests/s, "
                              f"not {list(self.rates)}")
        if list(self.rates) != sorted(set(self.rates)):
            raise ConfigError(f"probe rates must rise without repeats, not {list(self.rates)}")
        if not 1 <= self.max_in_flight <= MAX_LEVEL:
            raise ConfigError(f"probe --max-in-flight must be between 1 and {MAX_LEVEL}, not {self.max_in_flight}")

    def requests_for(self, level: int) -> int:
        return max(self.requests, 2 * level)

    @property
    def open_loop(self) -> bool:
        return bool(self.rates)

    @property
    def connections(self) -> int:
        """Connection pool the engine client needs: every stream in flight plus the metrics scraper."""
        return (self.max_in_flight if self.open_loop else max(self.levels)) + 4

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["levels"] = list(self.levels)
        out["rates"] = list(self.rates)
        return out


def parse_rates(text: str) -> tuple[float, ...]:
    """`--rates 1,2,5.5` (requests per second); a bad number is a one-line error."""
    try:
        rates = tuple(float(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise ConfigError(f"--rates wants requests per second separated by commas, like 1,2,4; not {text!r}") from None
    if not rates or any(r != r for r in rates):  # nan compares unequal to itself
        raise ConfigError(f"--rates wants requests per second separated by commas, like 1,2,4; not {text!r}")
    return rates


def parse_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise ConfigError(f"--levels wants numbers separated by commas, like 1,2,4,8; not {text!r}") from None
    return levels


def parse_count(text: str | int, flag: str) -> int:
    """A whole number given as text (a flag's value, a form field); a bad one is a one-line error."""
    if isinstance(text, int):
        return text
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(f"probe {flag} wants a whole number, not {text!r}") from None


# The options given as text, by the CLI's flags and the TUI's form alike, and the flag each is named by in errors.
COUNTS = {"requests": "--requests", "max_tokens": "--max-tokens", "prompt_tokens": "--prompt-tokens",
          "workers": "--workers", "precision": "--precision", "max_in_flight": "--max-in-flight"}


def probe_params(*, levels: str | None = None, rate: str | None = None, rates: str | None = None,
                 **options: Any) -> ProbeParams:
    """What a probe is asked to do, from the options as a person gives them: `enginedeck probe`'s flags and the
    probe screen's form both come through here, so a value means the same and is refused with the same words.

    `levels` is the closed ladder; `rate` or `rates` the open loop (one of the two kinds, never both). The counts
    (COUNTS) may be text; the other options are ProbeParams' own fields.
    """
    if rate and rates:
        raise ConfigError("probe: give --rate or --rates, not both")
    if (rate or rates) and levels:
        raise ConfigError("probe: --levels is the closed loop and --rate/--rates the open loop; give one")
    counted: Mapping[str, Any] = {k: parse_count(v, COUNTS[k]) if k in COUNTS else v for k, v in options.items()}
    return ProbeParams(levels=parse_levels(levels) if levels else DEFAULT_LEVELS,
                       rates=parse_rates(rate or rates or "") if rate or rates else (), **counted)
