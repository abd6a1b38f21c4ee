"""Order statistics of samples (milliseconds unless named otherwise)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1) by linear interpolation between closest ranks."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction} must be within 0..1")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(samples: Sequence[float]) -> float:
    if not samples:
        raise ValueError("median of no samples")
    return float(statistics.median(samples))


def summary(samples: Sequence[float], digits: int = 2) -> dict[str, float | int]:
    """``n``, ``p50``, ``p99``, ``min``, ``max`` and ``mean`` of the samples, rounded."""
    if not samples:
        return {"n": 0}
    return {
        "n": len(samples),
        "p50": round(percentile(samples, 0.50), digits),
        "p99": round(percentile(samples, 0.99), digits),
        "min": round(min(samples), digits),
        "max": round(max(samples), digits),
        "mean": round(statistics.fmean(samples), digits),
    }


def ratio(numerator: float, denominator: float, significant: int = 3) -> float:
    """``numerator / denominator`` to ``significant`` digits (0.000852 stays nonzero); a zero
    denominator is an error, not infinity."""
    if denominator <= 0:
        raise ValueError(f"ratio with a non-positive denominator ({denominator})")
    return float(f"{numerator / denominator:.{significant}g}")
