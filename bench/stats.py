"""Percentiles and summaries for the benchmark's samples, in plain Python (no numpy needed
by the load generator)."""

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks, as
    numpy's default method; NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    return _interpolated(ordered, q)


def _interpolated(ordered: Sequence[float], q: float) -> float:
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, mean, min, p50, p90, p99, max of the samples (NaN figures for none)."""
    if not values:
        nan = math.nan
        return {"n": 0, "mean": nan, "min": nan, "p50": nan, "p90": nan, "p99": nan, "max": nan}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "mean": math.fsum(ordered) / len(ordered),
        "min": ordered[0],
        "p50": _interpolated(ordered, 50),
        "p90": _interpolated(ordered, 90),
        "p99": _interpolated(ordered, 99),
        "max": ordered[-1],
    }


def quantiles(values: Sequence[float], points: int = 201) -> list[float]:
    """`points` evenly spaced percentiles from 0 to 100: a sample's CDF in a fixed size,
    for plots of runs with millions of gaps."""
    if points < 2:
        raise ValueError("at least two points are needed")
    if not values:
        return []
    ordered = sorted(values)
    return [_interpolated(ordered, 100 * i / (points - 1)) for i in range(points)]


def quantile_percentile(qs: Sequence[float], q: float) -> float:
    """A percentile read back from `quantiles()` output (exact on its grid points)."""
    if not qs:
        return math.nan
    return _interpolated(qs, q)
