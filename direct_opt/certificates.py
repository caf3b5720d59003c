"""Certificates: valid upper bounds on the integer optimum and stationarity gaps.

For f(x) = ||G x||^2 + c^T x (convex form) over K-subsets x in the feasible set F:

* ||G x|| <= sum_i x_i ||g_i||, so ||G x||^2 <= (max_{w in F} sum_i w_i ||g_i||)^2 (one LMO);
* ||G x||^2 <= sigma_max(G)^2 ||x||^2 = sigma_max(G)^2 K;
* c^T x <= max_{w in F} c^T w (one LMO).

The bounds use the structured polytope (a superset when extra constraints are
present), so they stay valid for every constraint set.  For the concave form the
Frank-Wolfe gap of any point w bounds the relaxed optimum: f* <= f(w) + max_v grad^T (v - w).
"""

from __future__ import annotations

import numpy as np

from .oracle import DirectPolytope
from .problem import SelectionProblem


def upper_bound(problem: SelectionProblem, w: np.ndarray | None = None, gap: float | None = None) -> float:
    """A valid upper bound on max f(x) over integer-feasible x."""
    P = problem
    outer = DirectPolytope(P.a, P.k, P.tau, P.lb, P.ub)
    if P.form == "concave":
        if w is None or gap is None:
            return np.inf
        return P.objective(w) + max(0.0, gap)
    norms = P.op.col_norms()
    ub_norm = float(norms @ outer.lmo(norms)) ** 2
    ub_sigma = P.op.sigma_max_sq() * P.k
    bound = min(ub_norm, ub_sigma)
    if P.c is not None:
        bound += float(P.c @ outer.lmo(P.c))
    return bound * (1 + 1e-9) + 1e-12


def fw_gap(problem: SelectionProblem, oracle, w: np.ndarray, grad: np.ndarray | None = None) -> float:
    """Stationarity gap max_{v in F} grad f(w)^T (v - w) >= 0 (0 at a KKT point)."""
    if grad is None:
        grad = problem.gradient(w)
    v = oracle.lmo(grad)
    return max(0.0, float(grad @ (v - w)))


def certified_ratio(objective: float, bound: float) -> float | None:
    """objective / bound when both are positive and finite, clipped to <= 1."""
    if not np.isfinite(bound) or bound <= 0 or objective < 0:
        return None
    return min(1.0, objective / bound)
