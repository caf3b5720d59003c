"""Seed statistics: mean ± std and paired differences with Student-t intervals.

A *paired* difference compares two methods seed by seed (same seed → same annealing
data order, same random draws), d_s = x_s − y_s, and reports

    mean(d) ± t_{(1+level)/2, n−1} · sd(d) / √n,

with sd the sample standard deviation (ddof = 1) over the n seeds both methods finished.
With n = 1 there is no interval (low = high = NaN).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

from ..errors import InvalidParameterError


@dataclass(frozen=True)
class Summary:
    """mean, sample std (ddof=1; 0 when n == 1) and n of a list of numbers."""

    mean: float
    std: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class PairedDifference:
    """Paired difference x − y over seeds with a two-sided t-interval.

    Attributes:
        mean: mean of d_s = x_s − y_s.
        std: sample standard deviation of d (ddof = 1; NaN when n = 1).
        n: number of paired seeds.
        low, high: the interval mean ∓ t_crit · std / √n (NaN when n < 2).
        t_crit: Student-t quantile t_{(1+level)/2, n−1} (NaN when n < 2).
        level: confidence level (e.g. 0.95).
        seeds: the seeds used, in order.
    """

    mean: float
    std: float
    n: int
    low: float
    high: float
    t_crit: float
    level: float
    seeds: tuple[int, ...] = ()

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0."""
        return bool(self.n >= 2 and (self.high < 0 or self.low > 0))

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        d["significant"] = self.significant
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def summarize(values: Sequence[float]) -> Summary:
    """Mean and sample standard deviation (ddof = 1, or 0 for a single value)."""
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        raise InvalidParameterError("summarize() needs at least one value.")
    return Summary(float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0, int(x.size))


def t_critical(n: int, level: float = 0.95) -> float:
    """Two-sided Student-t quantile t_{(1+level)/2, n−1}; NaN for n < 2."""
    if not 0.0 < level < 1.0:
        raise InvalidParameterError(f"level={level} must lie in (0, 1).")
    if n < 2:
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2.0, n - 1))


def paired_difference(
    x: Mapping[int, float] | Sequence[float],
    y: Mapping[int, float] | Sequence[float],
    level: float = 0.95,
) -> PairedDifference:
    """Paired difference x − y over the seeds both have.

    Args:
        x, y: per-seed values, either mappings seed -> value (only common seeds are
            paired) or equal-length sequences (position i is seed i).
        level: confidence level of the t-interval.
    Returns:
        :class:`PairedDifference`.
    """
    if isinstance(x, Mapping) != isinstance(y, Mapping):
        raise InvalidParameterError("paired_difference: pass two mappings or two sequences.")
    if isinstance(x, Mapping):
        seeds = tuple(sorted(set(x) & set(y)))
        xs = [x[s] for s in seeds]
        ys = [y[s] for s in seeds]
    else:
        if len(x) != len(y):
            raise InvalidParameterError(f"paired_difference: {len(x)} values vs {len(y)}; pass equal lengths.")
        seeds, xs, ys = tuple(range(len(x))), list(x), list(y)
    if not seeds:
        raise InvalidParameterError("paired_difference: no common seeds to pair.")
    d = np.asarray(xs, dtype=np.float64) - np.asarray(ys, dtype=np.float64)
    n = int(d.size)
    mean = float(d.mean())
    if n < 2:
        nan = float("nan")
        return PairedDifference(mean, nan, n, nan, nan, nan, level, tuple(int(s) for s in seeds))
    sd = float(d.std(ddof=1))
    tc = t_critical(n, level)
    half = tc * sd / math.sqrt(n)
    return PairedDifference(mean, sd, n, mean - half, mean + half, tc, level, tuple(int(s) for s in seeds))
