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

These are the ``"cheap"`` bounds.  :func:`certify` chooses among every method (``certify=``
in :func:`~direct_opt.solvers.solve`): ``"cheap"``, ``"subspace"``
(:mod:`direct_opt.bounds.subspace`), ``"rlt"`` (:mod:`direct_opt.bounds.rlt`), ``"sdp"``
(:mod:`direct_opt.bounds.sdp`) and ``"auto"`` (rlt for N <= 40, cheap above).  Every method returns a valid upper
bound; the smallest of the cheap bound and the chosen one is kept.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .errors import InvalidParameterError
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


AUTO_RLT_MAX_N = 40
#: certify= methods and what they cost (see docs/certificates.md).
CERTIFY_METHODS = {
    "cheap": f"norm and spectral bounds: a few LMO calls, any N (the default above {AUTO_RLT_MAX_N} samples)",
    "subspace": "block branch and bound over directions of z = G x plus a spectral tail: ~100 LMO calls, any N",
    "rlt": "LP relaxation over the products x_i x_j (HiGHS, dual-checked): N^2/2 variables, N <= a few hundred",
    "sdp": "Shor SDP + RLT rows (cvxpy SCS/Clarabel, dual-checked): (N+1)^2 variables, N <= ~150",
    "auto": f"rlt up to {AUTO_RLT_MAX_N} samples, cheap above (the default: costs less than the solve)",
}


#: Largest N for which the quadratic-size models are built when asked for explicitly.
CERTIFY_MAX_N = {"rlt": 400, "sdp": 150}


def check_certify(method: Any, n: int | None = None) -> str:
    """The method name, or an InvalidParameterError listing the valid ones (or saying that
    N is too large for the RLT / SDP model)."""
    if not isinstance(method, str) or method not in CERTIFY_METHODS:
        raise InvalidParameterError(f"certify={method!r} is not a bound method; use one of {sorted(CERTIFY_METHODS)}.")
    if n is not None and n > CERTIFY_MAX_N.get(method, np.inf):
        raise InvalidParameterError(
            f"certify={method!r} builds a model with ~N^2/2 variables; N={n} is above its limit "
            f"{CERTIFY_MAX_N[method]}. Use certify='subspace' or 'cheap' for large pools."
        )
    return method


def resolve_certify(method: str, n: int) -> str:
    """The concrete method ``"auto"`` stands for at N = ``n``."""
    if method != "auto":
        return method
    return "rlt" if n <= AUTO_RLT_MAX_N else "cheap"


def certify(problem: SelectionProblem, method: str = "auto", w: np.ndarray | None = None, gap: float | None = None,
            time_limit: float | None = None, oracle: Any = None) -> tuple[float, dict[str, Any]]:
    """(valid upper bound on the integer optimum, {"method", "time_s", ...}) with the chosen method.

    ``w``/``gap`` (a relaxed point and its Frank–Wolfe gap) feed the concave form's bound;
    ``oracle`` (the solve's) is reused when it is the structured polytope.
    The cheap bound is always computed and the smaller bound kept; a method that cannot
    run (e.g. no dual from the solver) leaves the cheap bound and says so in the details.
    ``time_limit`` <= 1e-3 s (a solve past its time limit): the norm bound only (one LMO, no
    Gram matrix), method ``"norm (time limit)"``."""
    method = resolve_certify(check_certify(method, problem.n), problem.n)
    t0 = time.process_time()
    if time_limit is not None and time_limit <= 1e-3:
        return upper_bound(problem, w, gap, oracle=oracle, spectral=False), {
            "method": "norm (time limit)", "time_s": time.process_time() - t0}
    bound = upper_bound(problem, w, gap, oracle=oracle)
    info: dict[str, Any] = {"method": method}
    extra = np.inf
    if method == "subspace" and problem.form == "convex":
        from .bounds.subspace import subspace_bound

        outer = oracle if isinstance(oracle, DirectPolytope) else structured_polytope(problem)
        extra, details = subspace_bound(problem, outer, time_limit=time_limit)
        if problem.c is not None:
            extra += outer.dot(problem.c, outer.lmo(problem.c))
        info.update(details)
    elif method in ("rlt", "sdp"):  # extra nonlinear constraints are relaxed away: still valid
        if method == "rlt":
            from .bounds.rlt import rlt_bound

            extra = rlt_bound(problem, time_limit=time_limit)
        else:
            from .bounds.sdp import sdp_bound

            extra = sdp_bound(problem, time_limit=time_limit)
    if method != "cheap" and not np.isfinite(extra):
        info["note"] = f"the {method} bound was not available for this problem; the cheap bound is reported"
    info["time_s"] = time.process_time() - t0
    return float(min(bound, extra * (1 + 1e-9))), info
