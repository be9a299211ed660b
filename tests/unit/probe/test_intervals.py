"""Wilson and bootstrap intervals against reference values computed here by other means: published Wilson
intervals (Newcombe 1998, table I) and the score test inverted by bisection; the exact bootstrap distribution of a
small sample, enumerated over every resample."""

import itertools
import math
from collections import Counter

import pytest

from console.probe.intervals import Z95, bootstrap, wilson
from console.probe.stats import percentile

# Newcombe, "Two-sided confidence intervals for the single proportion", Stat. Med. 1998, table I, method 3.
NEWCOMBE = [((81, 263), (0.2553, 0.3662)), ((15, 148), (0.0624, 0.1605)), ((0, 20), (0.0, 0.1611)),
            ((1, 29), (0.0061, 0.1718))]


@pytest.mark.parametrize(("xn", "expected"), NEWCOMBE)
def test_wilson_matches_the_published_table(xn, expected):
    low, high = wilson(*xn)
    assert low == pytest.approx(expected[0], abs=5e-5)
    assert high == pytest.approx(expected[1], abs=5e-5)


def _score_bound(x, n, upper):
    """The end of the score interval found by bisection: where |x/n − p| = z·sqrt(p(1 − p)/n)."""
    lo, hi = (x / n, 1.0) if upper else (0.0, x / n)
    for _ in range(200):
        mid = (lo + hi) / 2
        rejected = abs(x / n - mid) > Z95 * math.sqrt(mid * (1 - mid) / n)
        if upper:
            lo, hi = (lo, mid) if rejected else (mid, hi)
        else:
            lo, hi = (mid, hi) if rejected else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize(("x", "n"), [(0, 1), (1, 1), (3, 7), (19, 20), (20, 20), (50, 100), (997, 1000)])
def test_wilson_is_the_inverted_score_test(x, n):
    low, high = wilson(x, n)
    assert low == pytest.approx(_score_bound(x, n, upper=False), abs=1e-9)
    assert high == pytest.approx(_score_bound(x, n, upper=True), abs=1e-9)
    assert 0.0 <= low <= x / n <= high <= 1.0


def test_wilson_of_nothing_and_of_nonsense():
    assert wilson(0, 0) is None
    with pytest.raises(ValueError):
        wilson(5, 4)


DATA = [0.43, 0.48, 0.5, 0.54, 0.57, 0.63, 0.71, 0.99]


def _exact_bootstrap(values, q):
    """Every resample of len(values) draws, weighted by its multinomial probability: (figure, probability)."""
    n = len(values)
    dist = Counter()
    for combo in itertools.combinations_with_replacement(range(n), n):
        counts = Counter(combo)
        ways = math.factorial(n)
        for c in counts.values():
            ways //= math.factorial(c)
        dist[percentile(sorted(values[i] for i in combo), q)] += ways / n ** n
    return sorted(dist.items())


def _quantile_atom(dist, p):
    """The figure where the exact CDF crosses p, and how far p is from that atom's edges (in probability)."""
    cdf = 0.0
    for value, prob in dist:
        if cdf + prob > p:
            return value, min(p - cdf, cdf + prob - p)
        cdf += prob
    raise AssertionError("p beyond the distribution")


@pytest.mark.parametrize("q", [50, 90])
def test_bootstrap_lands_on_the_exact_bootstrap_quantiles(q):
    exact = _exact_bootstrap(DATA, q)
    assert sum(p for _, p in exact) == pytest.approx(1.0)
    (low, low_margin), (high, high_margin) = _quantile_atom(exact, 0.025), _quantile_atom(exact, 0.975)
    # 40 000 resamples put the Monte Carlo CDF within ±0.0008 (one standard error) of the exact one: the atoms
    # chosen by the exact distribution must be far enough from their edges (five standard errors) to mean it.
    assert min(low_margin, high_margin) > 0.004
    got = bootstrap(DATA, [q], seed=11, resamples=40_000)[q]
    assert got == pytest.approx((low, high), abs=1e-12)


def test_bootstrap_is_seeded_and_respects_the_sample_size_guards():
    values = [0.1 * (i % 17) + 0.01 * i for i in range(60)]
    a = bootstrap(values, [50, 90, 99], seed=3)
    assert a == bootstrap(values, [50, 90, 99], seed=3)
    assert set(a) == {50, 90}  # p99 needs n ≥ 100, like the point figure
    lo, hi = a[90]
    assert lo <= percentile(sorted(values), 90) <= hi
    assert set(bootstrap([*values, *values], [99], seed=3)) == {99}
    assert bootstrap([], [50], seed=1) == {}
