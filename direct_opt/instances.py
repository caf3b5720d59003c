"""Synthetic selection instances in three families, for benchmarks, tests and docs.

* ``"gaussian"`` — independent Gaussian flat coordinates with decaying scales
  (row j has standard deviation j^-0.75): no shared direction, a decaying spectrum;
* ``"clustered"`` — samples around a few cluster centres (cluster mean + noise);
* ``"heavy"`` — heavy-tailed per-sample scales (Pareto), a weak shared direction;
  the stiff costs grow with the same scales, so large-gradient samples are expensive.

Stiff costs are a_i = sum_l lambda_l h_il^2 over two stiff directions (lambda = 1, 1/2), as
the statistics define them.  Everything is generated from ``seed``; nothing is tuned to
favour a solver.
"""

from __future__ import annotations

import numpy as np

from .errors import InvalidParameterError
from .problem import SelectionProblem

FAMILIES = ("gaussian", "clustered", "heavy")


def family_instance(family: str, n: int, r: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(G (r, N) float64, a (N,)) of one family."""
    if family not in FAMILIES:
        raise InvalidParameterError(f"family must be one of {FAMILIES}, got {family!r}.")
    rng = np.random.default_rng(seed)
    scale = np.ones(n)
    if family == "gaussian":
        G = rng.standard_normal((r, n)) / np.arange(1, r + 1)[:, None] ** 0.75
    elif family == "clustered":
        c = int(np.clip(n // 25, 2, 8))
        centres = rng.standard_normal((r, c))
        G = centres[:, rng.integers(0, c, n)] + 0.6 * rng.standard_normal((r, n))
    else:
        scale = rng.pareto(2.5, n) + 0.3
        shared = rng.standard_normal(r) / np.sqrt(r)
        G = (rng.standard_normal((r, n)) / np.sqrt(r) + np.outer(shared, rng.normal(0.3, 0.5, n))) * scale
    H = rng.standard_normal((2, n)) * scale
    a = H[0] ** 2 + 0.5 * H[1] ** 2
    return G, a


def family_problem(family: str, n: int, k: int, tau_rel: float, r: int = 16, seed: int = 0) -> SelectionProblem:
    """The problem of :func:`family_instance` with tau = tau_rel * mean(a) * K."""
    G, a = family_instance(family, n, r, seed)
    return SelectionProblem(G, a, k, tau_rel * float(a.mean()) * k)
