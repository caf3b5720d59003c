"""Shor's SDP relaxation with RLT rows, for small N (cvxpy + SCS or Clarabel).

Lift x x^T to W and bound the program over

    X = [[1, w^T], [w, W]] PSD,  diag(W) = w,  0 <= W_ij <= w_i,  W_ij >= w_i + w_j - 1,
    W 1 = K w,  W a <= tau w,  tau - a^T w - tau w_i + (W a)_i >= 0,
    1^T w = K,  a^T w <= tau,  lb <= w <= ub,  lo <= A w <= hi,

maximising q <Q, W> + c^T w (Q = G^T G).  The solver's answer is not trusted as a bound:
the bound returned is recomputed from its dual multipliers (inequality multipliers
clipped to the valid sign) by weak duality,

    f(x) <= sum_k y_k b_k + (N + 1) max(0, lambda_max(C - sum_k y_k A_k)),

which holds for any multipliers because every feasible X is PSD with diagonal <= 1.
"""

from __future__ import annotations

import numpy as np

from ..problem import SelectionProblem

#: Above this many samples the SDP is not built unless asked ((N+1)^2 variables).
SDP_MAX_N = 150


def _wsym(n: int, coef: np.ndarray) -> np.ndarray:
    """(N+1, N+1) matrix M with <M, X> = coef^T w for symmetric X (w = X[0, 1:])."""
    M = np.zeros((n + 1, n + 1))
    M[0, 1:] = M[1:, 0] = 0.5 * coef
    return M


def _block(n: int, B: np.ndarray) -> np.ndarray:
    M = np.zeros((n + 1, n + 1))
    M[1:, 1:] = 0.5 * (B + B.T)
    return M


def sdp_bound(problem: SelectionProblem, solver: str | None = None, time_limit: float | None = None) -> float:
    """Valid upper bound on the integer optimum from the Shor + RLT SDP (inf when no dual came back)."""
    import cvxpy as cp

    P = problem
    n, k = P.n, float(P.k)
    cols = P.op.columns(np.arange(n))
    Q = cols.T @ cols
    scale = float(np.abs(Q).max(initial=0.0)) or 1.0
    C = _block(n, P.q * Q / scale)
    if P.c is not None:
        C += _wsym(n, P.c / scale)
    X = cp.Variable((n + 1, n + 1), PSD=True)
    w, W = X[0, 1:], X[1:, 1:]
    one = np.ones(n)
    # (constraint, adjoint(y) -> matrix, b(y) -> constant, kind) with g(X) = <A, X> - b
    cons: list = []

    def ineq(expr, adj, b):  # expr <= 0
        cons.append((expr <= 0, adj, b, "ineq"))

    def eq(expr, adj, b):  # expr == 0
        cons.append((expr == 0, adj, b, "eq"))

    eq(X[0, 0] - 1, lambda y: np.pad(np.array([[float(y)]]), ((0, n), (0, n))), lambda y: float(y))
    eq(cp.diag(W) - w, lambda y: _block(n, np.diag(y)) - _wsym(n, y), lambda y: 0.0)
    ineq(-W, lambda y: _block(n, -y), lambda y: 0.0)
    ineq(W - cp.reshape(w, (n, 1), order="F") @ one[None, :], lambda y: _block(n, y) - _wsym(n, y.sum(1)), lambda y: 0.0)
    ineq(cp.reshape(w, (n, 1), order="F") @ one[None, :] + one[:, None] @ cp.reshape(w, (1, n), order="F") - W - 1,
         lambda y: _block(n, -y) + _wsym(n, y.sum(1) + y.sum(0)), lambda y: float(y.sum()))
    eq(W @ one - k * w, lambda y: _block(n, np.outer(y, one)) - _wsym(n, k * y), lambda y: 0.0)
    eq(cp.sum(w) - k, lambda y: _wsym(n, float(y) * one), lambda y: float(y) * k)
    if P.tau is not None:
        s = 1.0 / max(float(P.tau), float(P.a.max(initial=0.0)), 1e-300)
        a, tau = P.a * s, float(P.tau) * s
        ineq(W @ a - tau * w, lambda y: _block(n, np.outer(y, a)) - _wsym(n, tau * y), lambda y: 0.0)
        ineq(a @ w + tau * w - W @ a - tau,
             lambda y: _wsym(n, y.sum() * a + tau * y) - _block(n, np.outer(y, a)), lambda y: float(y.sum()) * tau)
        ineq(a @ w - tau, lambda y: _wsym(n, float(y) * a), lambda y: float(y) * tau)
    fixed = P.lb > 0
    if fixed.any() or (P.ub < 1).any():
        ineq(w - P.ub, lambda y: _wsym(n, y), lambda y: float(y @ P.ub))
        ineq(P.lb - w, lambda y: _wsym(n, -y), lambda y: float(-y @ P.lb))
    if P.rows is not None:
        A = P.rows.A.toarray()
        fin_hi, fin_lo = np.isfinite(P.rows.hi), np.isfinite(P.rows.lo)
        if fin_hi.any():
            Ah, bh = A[fin_hi], P.rows.hi[fin_hi]
            ineq(Ah @ w - bh, lambda y, Ah=Ah, bh=bh: _wsym(n, Ah.T @ y), lambda y, bh=bh: float(y @ bh))
        if fin_lo.any():
            Al, bl = A[fin_lo], P.rows.lo[fin_lo]
            ineq(bl - Al @ w, lambda y, Al=Al, bl=bl: _wsym(n, -Al.T @ y), lambda y, bl=bl: float(-y @ bl))
    prob = cp.Problem(cp.Maximize(cp.trace(C @ X)), [c for c, *_ in cons])
    name = solver or ("CLARABEL" if n <= 60 else "SCS")
    kw = {"eps": 1e-7, "max_iters": 20000} if name == "SCS" else {}
    if time_limit is not None and name == "SCS":
        kw["time_limit_secs"] = float(time_limit)
    elif time_limit is not None and name == "CLARABEL":
        kw["time_limit"] = float(time_limit)
    import warnings

    try:
        with warnings.catch_warnings():  # an inexact solve is fine: the bound is rebuilt from its dual below
            warnings.simplefilter("ignore", UserWarning)
            prob.solve(solver=name, **kw)
    except cp.error.SolverError:
        return np.inf
    M, const = C.copy(), 0.0
    for con, adj, b, kind in cons:
        y = con.dual_value
        if y is None:
            return np.inf
        y = np.asarray(y, dtype=np.float64)
        if kind == "ineq":
            y = np.maximum(y, 0.0)
        y = y if y.ndim else float(y)
        M -= adj(y)
        const += b(y)
    lam = float(np.linalg.eigvalsh(0.5 * (M + M.T))[-1])
    bound = const + (n + 1) * max(0.0, lam)
    return float(bound * scale * (1 + 1e-9))
