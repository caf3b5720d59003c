"""The RLT (Reformulation–Linearisation) model of the selection program, for small N.

For 0/1 x the objective is linear in the products y_ij = x_i x_j (i < j), with Q = G^T G:

    f(x) = q (sum_i Q_ii x_i + 2 sum_{i<j} Q_ij y_ij) + c^T x.

The model keeps f's value on every 0/1 point exactly, with the rows

    y_ij <= x_i,  y_ij <= x_j,  y_ij >= x_i + x_j - 1,  0 <= y <= 1      (McCormick)
    sum_{j != i} y_ij = (K - 1) x_i                                        (cardinality x x_i)
    sum_{j != i} a_j y_ij <= (tau - a_i) x_i                               (budget x x_i)
    tau - a^T x - tau x_i + a_i x_i + sum_{j != i} a_j y_ij >= 0           (budget x (1 - x_i))
    1^T x = K,  a^T x <= tau,  lo <= A x <= hi (extra linear rows),  lb <= x <= ub.

* :func:`rlt_bound`: its LP relaxation, solved by HiGHS; the returned bound is recomputed
  from the LP's dual (weak duality with the variable box), so it is valid whatever the
  solver's tolerances — an upper bound on the integer optimum.
* :func:`rlt_milp`: the same model with x integral (HiGHS branch and bound): the ``exact``
  backend.  Its value equals f on the returned 0/1 point, and HiGHS's dual bound bounds the
  optimum when it stops early.

Size: N + N(N-1)/2 variables, about 1.5 N^2 rows — a few hundred samples at most.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..problem import SelectionProblem

#: Above this many samples the RLT model is not built unless asked (N^2/2 variables).
RLT_MAX_N = 150


@dataclass
class RltModel:
    """max obj^T z s.t. lo <= A z <= hi, zl <= z <= zu; z = [x (N), y (N(N-1)/2)]; obj scaled by 1/scale."""

    obj: np.ndarray
    A: object  # scipy.sparse CSR
    lo: np.ndarray
    hi: np.ndarray
    zl: np.ndarray
    zu: np.ndarray
    scale: float
    n: int


def build_model(problem: SelectionProblem) -> RltModel:
    """The RLT model of ``problem`` (convex or concave form, bounds and linear rows)."""
    import scipy.sparse as sp

    P = problem
    n, k = P.n, P.k
    cols = P.op.columns(np.arange(n))
    Q = cols.T @ cols
    iu, ju = np.triu_indices(n, 1)
    m = iu.size
    obj = np.concatenate([P.q * np.diag(Q), 2.0 * P.q * Q[iu, ju]])
    if P.c is not None:
        obj[:n] += P.c
    scale = float(np.abs(obj).max(initial=0.0)) or 1.0
    obj = obj / scale
    e = np.arange(m)
    one, ones2 = np.ones(m), np.ones(2 * m)
    blocks, lo, hi = [], [], []

    def add(rows, cols_, vals, nrows, l, h):
        blocks.append(sp.csr_matrix((vals, (rows, cols_)), shape=(nrows, n + m)))
        lo.append(np.broadcast_to(np.asarray(l, float), (nrows,)))
        hi.append(np.broadcast_to(np.asarray(h, float), (nrows,)))

    add(np.r_[e, e], np.r_[n + e, iu], np.r_[one, -one], m, -np.inf, 0.0)  # y <= x_i
    add(np.r_[e, e], np.r_[n + e, ju], np.r_[one, -one], m, -np.inf, 0.0)  # y <= x_j
    add(np.r_[e, e, e], np.r_[n + e, iu, ju], np.r_[one, -one, -one], m, -1.0, np.inf)  # y >= x_i + x_j - 1
    pair_row, pair_col = np.r_[iu, ju], np.r_[n + e, n + e]  # row i gets y_ij for every partner j
    diag = np.arange(n)
    add(np.r_[pair_row, diag], np.r_[pair_col, diag], np.r_[ones2, -(k - 1) * np.ones(n)], n, 0.0, 0.0)
    add(np.zeros(n, int), diag, np.ones(n), 1, k, k)
    if P.tau is not None:
        s = 1.0 / max(float(P.tau), float(P.a.max(initial=0.0)), 1e-300)  # rows of order one
        a, tau = P.a * s, float(P.tau) * s
        partner_a = np.r_[a[ju], a[iu]]
        add(np.r_[pair_row, diag], np.r_[pair_col, diag], np.r_[partner_a, a - tau], n, -np.inf, 0.0)
        # tau - a^T x - tau x_i + a_i x_i + sum_j a_j y_ij >= 0, one row per i
        rr = np.r_[pair_row, np.repeat(diag, n), diag]
        cc = np.r_[pair_col, np.tile(diag, n), diag]
        vv = np.r_[partner_a, -np.tile(a, n), a - tau]
        add(rr, cc, vv, n, -tau, np.inf)
        add(np.zeros(n, int), diag, a, 1, -np.inf, tau)
    if P.rows is not None:
        R = P.rows.A.tocoo()
        add(R.row, R.col, R.data, R.shape[0], P.rows.lo, P.rows.hi)
    A = sp.vstack(blocks, format="csr")
    zl = np.r_[P.lb, np.zeros(m)]
    zu = np.r_[P.ub, np.ones(m)]
    return RltModel(obj, A, np.concatenate(lo), np.concatenate(hi), zl, zu, scale, n)


def _dual_bound(M: RltModel, y: np.ndarray) -> float:
    """max obj^T z over the model for any row multipliers y (weak duality with the box):
    obj^T z <= sum_i (y_i hi_i if y_i > 0 else y_i lo_i) + sum_j max over [zl_j, zu_j] of r_j z_j,
    r = obj - A^T y; a multiplier whose side is infinite is set to 0 (still valid)."""
    y = np.where((y > 0) & ~np.isfinite(M.hi), 0.0, y)
    y = np.where((y < 0) & ~np.isfinite(M.lo), 0.0, y)
    const = float(np.where(y > 0, y * np.where(np.isfinite(M.hi), M.hi, 0.0),
                           y * np.where(np.isfinite(M.lo), M.lo, 0.0)).sum())
    r = M.obj - M.A.T @ y
    return const + float(np.maximum(r * M.zl, r * M.zu).sum())


def rlt_bound(problem: SelectionProblem, time_limit: float | None = None) -> float:
    """Upper bound on the integer optimum from the RLT LP (inf if HiGHS gave no dual)."""
    from scipy.optimize import linprog

    M = build_model(problem)
    eq = M.lo == M.hi
    up = ~eq & np.isfinite(M.hi)
    dn = ~eq & np.isfinite(M.lo)
    import scipy.sparse as sp

    A_ub = sp.vstack([M.A[np.flatnonzero(up)], -M.A[np.flatnonzero(dn)]], format="csr")
    b_ub = np.r_[M.hi[up], -M.lo[dn]]
    opts = {} if time_limit is None else {"time_limit": float(time_limit)}
    res = linprog(-M.obj, A_ub=A_ub, b_ub=b_ub, A_eq=M.A[np.flatnonzero(eq)], b_eq=M.lo[eq],
                  bounds=np.column_stack([M.zl, M.zu]), method="highs", options=opts)
    if res.status != 0 or res.ineqlin is None:
        return np.inf
    # scipy's marginals are d(min objective)/d(b): <= 0 for A_ub rows; back to multipliers of max
    y = np.zeros(M.A.shape[0])
    n_up = int(up.sum())
    y[np.flatnonzero(up)] += -res.ineqlin.marginals[:n_up]
    y[np.flatnonzero(dn)] -= -res.ineqlin.marginals[n_up:]
    y[np.flatnonzero(eq)] = -res.eqlin.marginals
    return _dual_bound(M, y) * M.scale * (1 + 1e-9)


@dataclass
class MilpOutcome:
    """Best 0/1 point found (indices or None), HiGHS's upper bound, and whether it is proven optimal."""

    indices: np.ndarray | None
    bound: float
    optimal: bool
    nodes: int
    message: str


def rlt_milp(problem: SelectionProblem, time_limit: float | None = None, rel_gap: float = 1e-9) -> MilpOutcome:
    """Solve the RLT model with x integral by HiGHS branch and bound."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    M = build_model(problem)
    integrality = np.r_[np.ones(M.n), np.zeros(M.obj.size - M.n)]
    opts = {"mip_rel_gap": float(rel_gap), "disp": False}
    if time_limit is not None:
        opts["time_limit"] = max(float(time_limit), 1e-3)
    res = milp(-M.obj, constraints=LinearConstraint(M.A, M.lo, M.hi), integrality=integrality,
               bounds=Bounds(M.zl, M.zu), options=opts)
    dual = getattr(res, "mip_dual_bound", None)
    bound = np.inf if dual is None or not np.isfinite(dual) else -float(dual) * M.scale
    # HiGHS works to a relative gap and feasibility tolerances: widen its bound by them
    bound = bound + abs(bound) * max(rel_gap, 1e-7) if np.isfinite(bound) else bound
    idx = None if res.x is None else np.flatnonzero(res.x[: M.n] > 0.5).astype(np.int64)
    nodes = int(getattr(res, "mip_node_count", 0) or 0)
    return MilpOutcome(idx, bound, res.status == 0, nodes, f"HiGHS MILP on the RLT model: {res.message}")
