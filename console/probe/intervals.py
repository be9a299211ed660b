"""How sure a level's figures are: a Wilson 95 % interval for a proportion, percentile-bootstrap 95 % intervals
for percentiles (definitions and how to read them: docs/probe.md, "How sure").

- Wilson score interval: the set of proportions p a two-sided score test at 95 % does not reject for x successes in
  n trials. Unlike the normal approximation it stays inside [0, 1] and is not a zero-width interval at 0/n or n/n,
  which is exactly where a probe's SLO attainment usually sits.
- Percentile bootstrap: resample the n values with replacement B times, take the percentile of each resample (the
  same linear interpolation as the point figure, console/probe/stats.py), and report the 2.5th and 97.5th
  percentiles of those B figures. The generator is seeded, so the same values always give the same interval.

The standard library is enough here (random.Random.choices, sorting): B = 1000 resamples of a level's few hundred
requests take tens of milliseconds, and numpy would be a new dependency for every install.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from console.probe.stats import MIN_N_P95, MIN_N_P99, percentile

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
BOOTSTRAP_RESAMPLES = 1000
# A percentile's interval is given where the point figure is (console/probe/stats.py's sample-size guards).
MIN_N_FOR = {10: 1, 50: 1, 90: 1, 95: MIN_N_P95, 99: MIN_N_P99}

Interval = tuple[float, float]


def wilson(successes: int, n: int, z: float = Z95) -> Interval | None:
    """The Wilson score interval of successes/n; None for n = 0 (nothing was tried)."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n} trials")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At 0/n and n/n the exact end is 0 or 1; rounding must not leave it a hair inside.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def bootstrap(values: Sequence[float], quantiles: Sequence[float], *, seed: int,
              resamples: int = BOOTSTRAP_RESAMPLES) -> dict[float, Interval]:
    """Percentile-bootstrap 95 % intervals of the given percentiles (0..100) of `values`, one resampling shared by
    all of them. Percentiles whose point figure needs more samples than there are (p95, p99) are left out."""
    data = list(values)
    n = len(data)
    wanted = [q for q in quantiles if n >= MIN_N_FOR.get(int(q), 1)]
    if n == 0 or not wanted:
        return {}
    rng = random.Random(seed)
    figures: dict[float, list[float]] = {q: [] for q in wanted}
    for _ in range(resamples):
        sample = sorted(rng.choices(data, k=n))
        for q in wanted:
            figures[q].append(percentile(sample, q))
    out: dict[float, Interval] = {}
    for q, fs in figures.items():
        fs.sort()
        out[q] = (percentile(fs, 2.5), percentile(fs, 97.5))
    return out


def named(intervals: Mapping[float, Interval]) -> dict[str, Interval]:
    """{90.0: (lo, hi)} as {"p90": (lo, hi)}: the keys of the JSON document and the store."""
    return {f"p{q:g}": iv for q, iv in intervals.items()}
