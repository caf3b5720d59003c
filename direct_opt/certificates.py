"""Certificates: valid upper bounds on the integer optimum and stationarity gaps.

For f(x) = ||G x||^2 + c^T x (convex form) over K-subsets x in the feasible set F, with
G = sum_j sigma_j u_j v_j^T (thin SVD from the (r, r) Gram matrix):

* norm bound:     ||G x|| <= sum_i x_i ||g_i||, so ||G x||^2 <= (max_{w in F} sum_i w_i ||g_i||)^2;
* spectral bound: ||G x||^2 = sum_j sigma_j^2 (v_j^T x)^2
                  <= sum_{j<=m} sigma_j^2 M_j^2 + sigma_{m+1}^2 K,   M_j = max_{w in F} |v_j^T w|
  (two LMOs per direction; m = 0 gives sigma_max^2 K); the smallest over m is kept;
* linear term:    c^T x <= max_{w in F} c^T w.

Every maximum is over the structured polytope (a superset of F when extra constraints
are present), so the bounds stay valid for every constraint set.  For the concave form
the Frank–Wolfe gap bounds the relaxed optimum: f* <= f(w) + max_v grad^T (v - w).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .oracle import DirectPolytope, structured_polytope
from .problem import SelectionProblem

SPECTRAL_DIRECTIONS = 3


def spectral_bound(problem: SelectionProblem, outer: DirectPolytope, m_max: int = SPECTRAL_DIRECTIONS) -> float:
    """min over m <= m_max of sum_{j<=m} sigma_j^2 M_j^2 + sigma_{m+1}^2 K (valid for every m)."""
    P = problem
    gram = P.op.gram()
    if gram.shape[0] == 0:  # r = 0, no flat directions: G x = 0 for every x
        return 0.0
    dev = getattr(P.op, "device", "cpu")
    if getattr(P.op, "is_torch", False) and getattr(dev, "type", "") == "cuda":  # r x r eigh on the GPU
        import torch

        ev_t, U_t = torch.linalg.eigh(torch.as_tensor(gram, device=dev))
        ev, U = ev_t.cpu().numpy(), U_t.cpu().numpy()
    else:
        ev, U = np.linalg.eigh(gram)
    ev, U = np.maximum(ev[::-1], 0.0), U[:, ::-1]
    ev = ev + 1e-10 * ev[0] + 1e-300  # eigh is backward stable: pad so the bound stays valid
    best = ev[0] * P.k
    acc = 0.0
    m_max = min(m_max, len(ev) - 1)
    for j in range(m_max):
        sigma = np.sqrt(ev[j])
        v = P.op.rmatvec(U[:, j]) / sigma
        m_j = max(outer.dot(v, outer.lmo(v)), outer.dot(-v, outer.lmo(-v)))
        acc += ev[j] * m_j**2 * (1 + 1e-9)
        best = min(best, acc + ev[j + 1] * P.k)
    return float(best)


def upper_bound(problem: SelectionProblem, w: np.ndarray | None = None, gap: float | None = None,
                oracle: Any = None, spectral: bool = True) -> float:
    """A valid upper bound on max f(x) over integer-feasible x.

    ``oracle``: the solve's oracle; reused when it is the structured polytope (its LMO then also
    runs on the device or over the ranks it runs on), else the structured polytope is built.
    ``spectral=False``: the norm bound only (one LMO, no Gram matrix), used past the time limit."""
    P = problem
    if P.form == "concave":
        if w is None or gap is None:
            return np.inf
        return P.objective(w) + max(0.0, gap)
    outer = oracle if isinstance(oracle, DirectPolytope) else structured_polytope(P)
    norms = P.op.col_norms()
    bound = outer.dot(norms, outer.lmo(norms)) ** 2
    if spectral:
        bound = min(bound, spectral_bound(P, outer))
    if P.c is not None:
        bound += outer.dot(P.c, outer.lmo(P.c))
    return bound * (1 + 1e-9)  # relative padding only: the bound scales with G


def certified_ratio(objective: float, bound: float) -> float | None:
    """objective / bound when both are positive and finite, clipped to <= 1."""
    if not np.isfinite(bound) or bound <= 0 or objective < 0:
        return None
    return min(1.0, objective / bound)
