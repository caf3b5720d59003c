"""One feasibility tolerance for the whole library, relative to each constraint's own scale.

A constraint row  lhs = sum_i c_i x_i <= bound  is met by x when

    lhs - bound <= RTOL * max(|bound|, sum_i |c_i| x_i)

The right-hand side is the size of the numbers being compared, so

* the verdict is the same for a row and its copy multiplied by any positive number
  (stiff costs and budget rescaled together, token counts in thousands or in units);
* a row whose coefficients are all tiny (1e-12) is still checked to nine significant digits:
  no absolute slack (1e-9, or ``1e-9 * max(1, tau)``) can wave a violated budget through.

The box 0 <= x <= 1 and the cardinality 1^T x = K are checked with their own scales
(1 and K).  Every check of a selection — :meth:`SelectionProblem.is_feasible`, rounding,
repair, local search, the oracles' infeasibility verdicts — goes through this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: relative feasibility tolerance (float64 sums of N <= 1e6 terms err by far less)
RTOL = 1e-9


def fits(lhs: Any, bound: Any, scale: Any = 0.0) -> Any:
    """``lhs <= bound`` up to ``RTOL * max(|bound|, scale)``, elementwise for arrays.

    ``scale`` is sum_i |c_i| x_i, the magnitude of the terms summed into ``lhs`` (for
    non-negative coefficients, ``lhs`` itself, which is the default used when 0 is given).
    """
    lhs, bound = np.asarray(lhs, dtype=np.float64), np.asarray(bound, dtype=np.float64)
    size = np.maximum(np.maximum(np.abs(bound), np.abs(lhs)), np.asarray(scale, dtype=np.float64))
    with np.errstate(invalid="ignore"):  # inf bounds: always met
        out = (lhs <= bound) | (lhs - bound <= RTOL * size)
    return bool(out) if out.ndim == 0 else out


def excess(lhs: Any, bound: Any, scale: Any = 0.0) -> Any:
    """Relative violation max(0, lhs - bound) / max(|bound|, |lhs|, scale) (0 when met exactly)."""
    if isinstance(lhs, float) and isinstance(bound, float) and isinstance(scale, float):  # the common scalar case
        return (lhs - bound) / max(abs(bound), abs(lhs), scale) if lhs > bound else 0.0
    lhs, bound = np.asarray(lhs, dtype=np.float64), np.asarray(bound, dtype=np.float64)
    size = np.maximum(np.maximum(np.abs(bound), np.abs(lhs)), np.asarray(scale, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        over = np.where(lhs > bound, lhs - bound, 0.0)
        out = np.where(over > 0, over / np.where(size > 0, size, 1.0), 0.0)
    return float(out) if out.ndim == 0 else out


def row_excess(v: np.ndarray, absv: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Relative violation per row of lo <= v <= hi, v = A x and absv = |A| x >= |v| (m,)."""
    out = np.zeros(v.shape)
    for bound, over in ((hi, v - hi), (lo, lo - v)):
        bad = over > 0
        if bad.any():
            out[bad] = np.maximum(out[bad], over[bad] / np.maximum(np.abs(bound[bad]), absv[bad]))
    return out


def is_met(relative_violation: float) -> bool:
    """True when a relative violation (from :func:`excess`) is within the tolerance."""
    return relative_violation <= RTOL
