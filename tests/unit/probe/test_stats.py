"""Percentiles against references computed independently of the probe's code, on fixed vectors."""

import dataclasses
import math
import statistics

import pytest

from console.probe.stats import MIN_N_P95, MIN_N_P99, Dist, percentile


def reference(values, q):
    """numpy's default ('linear'), written from its definition: rank (n-1)q between closest ranks."""
    xs = sorted(values)
    h = (len(xs) - 1) * q / 100
    return xs[int(h)] + (h - int(h)) * (xs[min(int(h) + 1, len(xs) - 1)] - xs[int(h)])


VECTORS = [
    [5.0],
    [1.0, 2.0],
    [3.0, 1.0, 2.0],
    [0.1, 0.1, 0.1, 0.5, 0.5, 9.0],  # ties and an outlier
    [float(i * i % 17) for i in range(23)],
    [0.2 + 0.001 * ((i * 7919) % 101) for i in range(150)],
]


@pytest.mark.parametrize("values", VECTORS)
@pytest.mark.parametrize("q", [0, 10, 50, 90, 95, 99, 100])
def test_percentile_matches_reference(values, q):
    assert percentile(sorted(values), q) == pytest.approx(reference(values, q), abs=1e-12)


@pytest.mark.parametrize("values", [v for v in VECTORS if len(v) >= 2])
def test_percentile_matches_statistics_inclusive(values):
    # statistics.quantiles(method="inclusive") is the same linear interpolation, cut into 100 parts.
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    for q in (10, 50, 90, 95, 99):
        assert percentile(sorted(values), q) == pytest.approx(cuts[q - 1], abs=1e-9)


def test_hand_worked_example():
    # n=5, p90: rank 0.9*4 = 3.6 → 40 + 0.6*(50-40) = 46
    assert percentile([10.0, 20.0, 30.0, 40.0, 50.0], 90) == pytest.approx(46.0)
    assert percentile([10.0, 20.0, 30.0, 40.0, 50.0], 50) == 30.0


def test_infinite_failures_do_not_become_nan():
    data = sorted([1.0, 2.0, math.inf, math.inf])
    assert percentile(data, 100) == math.inf
    assert percentile(data, 90) == math.inf
    assert percentile(data, 25) == pytest.approx(1.75)


def test_tail_percentiles_need_enough_samples():
    small = Dist.of(float(i) for i in range(MIN_N_P95 - 1))
    assert small is not None and small.p95 is None and small.p99 is None and small.p90 is not None
    mid = Dist.of(float(i) for i in range(MIN_N_P95))
    assert mid is not None and mid.p95 is not None and mid.p99 is None
    big = Dist.of(float(i) for i in range(MIN_N_P99))
    assert big is not None and big.p99 == pytest.approx(reference(range(MIN_N_P99), 99))


def test_empty_and_bad_input():
    assert Dist.of([]) is None
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_dist_round_trips_through_dict():
    d = Dist.of([0.3, 0.1, 0.2])
    assert Dist.from_dict(dataclasses.asdict(d)) == d
    assert Dist.from_dict(None) is None
