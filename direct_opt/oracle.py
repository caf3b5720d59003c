"""The feasible set as one object with two verbs, shared by every backend.

* ``lmo(c)``   — linear maximisation oracle: a maximiser of c^T w over the set
  (FrankWolfe.jl's ``compute_extreme_point``); also the SCA subproblem without prox.
* ``project(y)`` — Euclidean projection onto the set; the SCA subproblem with prox.

:class:`DirectPolytope` solves both exactly for {lb <= w <= ub, 1^T w = K, a^T w <= tau}
by exploiting its structure (Lagrangian bisection on the budget multiplier; sorting
for the sum multiplier).  :class:`GeneralPolytope` handles extra linear rows with a
general LP (scipy HiGHS) / QP (OSQP).  :func:`make_oracle` picks one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .tolerance import fits
from .errors import InfeasibleProblemError

_BISECT_MAX = 200
_SHRINK_MIN = 4096  # shrink the LMO's candidate set only when more candidates than this remain


def _shrink(c: np.ndarray, a: np.ndarray, k: float, lo: float, hi: float
            ) -> tuple[np.ndarray | None, np.ndarray]:
    """Coordinates whose top-K membership is the same for every mu in [lo, hi].

    With m = ceil(k) nonzeros, s_i(mu) = c_i - mu a_i lies between l_i = min(s_i(lo), s_i(hi))
    and u_i = max(...); the m-th largest score t(mu) lies between the m-th largest l and the
    m-th largest u.  So l_i > (m-th largest u) puts i strictly in the top m-1 (value 1) and
    u_i < (m-th largest l) puts i strictly below the top m (value 0), whatever the tie-breaking.
    Returns (keep mask or None when nothing can be fixed, sure-in mask).
    """
    n = c.size
    kf = int(np.floor(k + 1e-9))
    m = kf + (1 if k - kf > 1e-9 else 0)
    if m <= 0 or m >= n:
        return None, np.zeros(n, dtype=bool)
    s_lo, s_hi = c - lo * a, c - hi * a
    l, u = np.minimum(s_lo, s_hi), np.maximum(s_lo, s_hi)
    u_m = np.partition(u, n - m)[n - m]
    l_m = np.partition(l, n - m)[n - m]
    sure_in = l > u_m
    sure_out = u < l_m
    keep = ~(sure_in | sure_out)
    if keep.all():
        return None, sure_in
    return keep, sure_in


def multiplier_bracket(c_max: float, a_min: float) -> float:
    """A first upper end for the bisection on the budget multiplier mu: max|c| / min a > 0, the
    multiplier's own scale (no absolute floor such as 1, which rescaled costs would make far off)."""
    hi = c_max / max(a_min, 1e-300)
    return hi if np.isfinite(hi) and hi > 0 else 1.0


def top_k_fractional(score: np.ndarray, k: float) -> np.ndarray:
    """argmax score^T x over {0<=x<=1, 1^T x = k}: ones on the top floor(k), frac on the next."""
    n = score.shape[0]
    x = np.zeros(n)
    kf = int(np.floor(k + 1e-9))
    frac = k - kf if k - kf > 1e-9 else 0.0
    if kf >= n:
        x[:] = 1.0
        return x
    if kf == 0 and frac == 0.0:
        return x
    part = np.argpartition(-score, kf)
    x[part[:kf]] = 1.0
    if frac:
        x[part[kf]] = frac
    return x


class DirectPolytope:
    """{lb <= w <= ub, 1^T w = k, a^T w <= tau} with exact structured oracles.

    Args:
        a: (N,) costs >= 0; k: the (possibly fractional) sum; tau: budget or None;
        lb, ub: (N,) bounds (0/1 fixings; default 0 and 1).
    """

    kind = "structured"
    message = ""

    def __init__(self, a: np.ndarray, k: float, tau: float | None, lb: np.ndarray | None = None, ub: np.ndarray | None = None) -> None:
        n = a.shape[0]
        self.a = np.asarray(a, dtype=np.float64)
        self.lb = np.zeros(n) if lb is None else np.asarray(lb, dtype=np.float64)
        self.ub = np.ones(n) if ub is None else np.asarray(ub, dtype=np.float64)
        self.free = np.flatnonzero(self.lb < self.ub)
        self.all_free = self.free.size == n
        self.base = self.lb.copy()  # fixed coordinates sit at lb == ub
        self.k_free = float(k) - float(self.base.sum())
        self.tau = tau
        self.tau_free = None if tau is None else float(tau) - float(self.a @ self.base)
        self.a_free = self.a[self.free]
        self.lb_free, self.ub_free = self.lb[self.free], self.ub[self.free]
        if self.k_free < -1e-9 or self.k_free > float((self.ub_free - self.lb_free).sum()) + 1e-9:
            raise InfeasibleProblemError(
                f"cardinality: {k} samples cannot be chosen with {len(self.free)} free and "
                f"{self.base.sum():.0f} fixed samples."
            )
        if tau is not None:
            need = self.min_budget_free()
            if not fits(need + float(self.a @ self.base), float(tau)):
                raise InfeasibleProblemError(
                    f"budget: tau={tau:.6g} is below the smallest feasible budget "
                    f"{need + float(self.a @ self.base):.6g} (sum of the K smallest stiff costs); "
                    "raise tau / tau_rel or lower K."
                )

    def min_budget_free(self) -> float:
        return float(self.a_free @ top_k_fractional(-self.a_free, self.k_free))

    def _free_part(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        return v if self.all_free else v[self.free]

    def _assemble(self, x_free: np.ndarray) -> np.ndarray:
        if self.all_free:
            return x_free
        w = self.base.copy()
        w[self.free] = x_free
        return w

    # ------------------------------------------------------------------ LMO
    def lmo(self, c: np.ndarray) -> np.ndarray:
        """Exact maximiser of c^T w over the polytope (a vertex, at most 2 fractional entries
        in general position).

        Lagrangian bisection on the budget multiplier mu (top-K of c - mu a per step).  Once
        the bracket [lo, hi] is known, coordinates whose score c_i - mu a_i is provably above
        (below) the K-th largest score for *every* mu in the bracket are fixed to 1 (0), and
        later steps work on the remaining candidates only; the iterates are exactly those of
        the full bisection, only cheaper (O(N) for the first steps, then shrinking).
        """
        cf = np.asarray(c, dtype=np.float64)[self.free]
        af = self.a_free
        x0 = top_k_fractional(cf, self.k_free)
        if self.tau is None or af @ x0 <= self.tau_free:
            return self._assemble(x0)
        tau = self.tau_free
        lo, hi = 0.0, multiplier_bracket(float(np.abs(cf).max()), float(af[af > 0].min(initial=np.inf)))
        x_hi = top_k_fractional(cf - hi * af, self.k_free)
        x_lo = x0
        for _ in range(_BISECT_MAX):  # grow until the budget holds (x_lo stays the top-K at lo)
            if af @ x_hi <= tau:
                break
            lo, x_lo, hi = hi, x_hi, hi * 4.0
            x_hi = top_k_fractional(cf - hi * af, self.k_free)
        # active problem: candidates `act` (indices into the free coordinates); `n_in` fixed at 1
        act = np.arange(cf.size)
        c_act, a_act, k_act = cf, af, self.k_free
        n_in, c_in, a_in = 0, 0.0, 0.0
        fixed_in: list[np.ndarray] = []
        for it in range(_BISECT_MAX):
            if act.size > _SHRINK_MIN and it % 2 == 0:
                keep, sure = _shrink(c_act, a_act, k_act, lo, hi)
                if keep is not None:
                    fixed_in.append(act[sure])
                    n_in += int(sure.sum())
                    c_in += float(c_act[sure].sum())
                    a_in += float(a_act[sure].sum())
                    k_act = self.k_free - n_in
                    act, c_act, a_act = act[keep], c_act[keep], a_act[keep]
                    x_lo, x_hi = x_lo[keep], x_hi[keep]
            if np.count_nonzero(x_lo != x_hi) <= 2 or hi - lo <= 1e-15 * hi:
                w, certified = self._mix_active(c_act, a_act, k_act, c_in, a_in, x_lo, x_hi, lo, hi, cf)
                if certified or hi - lo <= 1e-15 * hi:
                    return self._assemble(self._expand(cf.size, act, w, fixed_in))
            mid = 0.5 * (lo + hi)
            x_mid = top_k_fractional(c_act - mid * a_act, k_act)
            if a_in + a_act @ x_mid > tau:
                lo, x_lo = mid, x_mid
            else:
                hi, x_hi = mid, x_mid
        w = self._mix_active(c_act, a_act, k_act, c_in, a_in, x_lo, x_hi, lo, hi, cf)[0]
        return self._assemble(self._expand(cf.size, act, w, fixed_in))

    @staticmethod
    def _expand(n: int, act: np.ndarray, w_act: np.ndarray, fixed_in: list[np.ndarray]) -> np.ndarray:
        x = np.zeros(n)
        for f in fixed_in:
            x[f] = 1.0
        x[act] = w_act
        return x

    def _top_vertex(self, d, k: float):
        """The top-k vertex of score d (fractional k allowed); the device oracle overrides it."""
        return top_k_fractional(d, k)

    def _a_vec(self, like):
        """a on the free coordinates, the same array type as ``like`` (numpy here; the device
        oracle returns its torch copy for a tensor)."""
        return self.a_free

    def _mix_active(self, c_act, a_act, k_act, c_in, a_in, x_lo, x_hi, lo, hi, cf) -> tuple[Any, bool]:
        """Budget-tight mix of an over- and an under-budget top-K vertex (on the active set), and
        whether weak duality certifies it optimal (both are top-K at the multiplier where they tie).
        Written once for numpy and torch arrays (the subclass supplies ``_top_vertex``/``_a_vec``)."""
        tau = self.tau_free
        b_lo, b_hi = a_in + float(a_act @ x_lo), a_in + float(a_act @ x_hi)
        if b_lo <= b_hi:
            return x_hi, False
        theta = min(1.0, max(0.0, (tau - b_hi) / (b_lo - b_hi)))
        w = theta * x_lo + (1.0 - theta) * x_hi
        mu = max(0.0, float(c_act @ x_lo - c_act @ x_hi) / (b_lo - b_hi))
        if lo <= mu <= hi:  # the fixings hold at mu: the dual needs the active set only
            d = c_act - mu * a_act
            dual = c_in - mu * a_in + float(d @ self._top_vertex(d, k_act)) + mu * tau
        else:
            d = cf - mu * self._a_vec(cf)
            dual = float(d @ self._top_vertex(d, self.k_free)) + mu * tau
        primal = c_in + float(c_act @ w)
        return w, dual <= primal + 1e-12 * max(abs(primal), abs(dual))

    def dual_bound(self, c: np.ndarray, mu: float) -> float:
        """Weak-duality upper bound on max c^T w for any multiplier mu >= 0."""
        cf = np.asarray(c, dtype=np.float64)[self.free]
        d = cf - mu * self.a_free
        fixed = float(c @ self.base)
        return fixed + float(d @ top_k_fractional(d, self.k_free)) + mu * (self.tau_free or 0.0)

    # ----------------------------------------------------------- projection
    def _sum_multiplier(self, z: np.ndarray) -> np.ndarray:
        """clip(z - nu, lb, ub) with nu chosen so the sum is k_free (exact, O(N log N))."""
        lb, ub, k = self.lb_free, self.ub_free, self.k_free
        bps = np.unique(np.concatenate([z - ub, z - lb]))

        def total(nu: float) -> float:
            return float(np.clip(z - nu, lb, ub).sum())

        i, j = 0, bps.size - 1  # total is nonincreasing in nu; total(bps[0]) = sum ub >= k
        while j - i > 1:
            m = (i + j) // 2
            if total(bps[m]) >= k:
                i = m
            else:
                j = m
        s_i, s_j = total(bps[i]), total(bps[j])
        if s_i == s_j:
            nu = bps[i]
        else:  # total is linear between consecutive breakpoints
            nu = bps[i] + (s_i - k) * (bps[j] - bps[i]) / (s_i - s_j)
        return np.clip(z - nu, lb, ub)

    def project(self, y: np.ndarray) -> np.ndarray:
        """Exact Euclidean projection of y (N,) onto the polytope."""
        yf = np.asarray(y, dtype=np.float64)[self.free]
        af = self.a_free
        x = self._sum_multiplier(yf)
        if self.tau is None or af @ x <= self.tau_free:
            return self._assemble(x)
        tau = self.tau_free
        lo, hi = 0.0, multiplier_bracket(float(np.abs(yf).max(initial=0.0)) + 1.0, float(af[af > 0].min(initial=np.inf)))
        x_hi = self._sum_multiplier(yf - hi * af)
        while af @ x_hi > tau and hi < 1e300:
            lo, hi = hi, hi * 4.0
            x_hi = self._sum_multiplier(yf - hi * af)
        for _ in range(_BISECT_MAX):
            if hi - lo <= 1e-14 * hi or abs(af @ x_hi - tau) <= 1e-13 * tau:
                break
            mid = 0.5 * (lo + hi)
            x_mid = self._sum_multiplier(yf - mid * af)
            if af @ x_mid > tau:
                lo = mid
            else:
                hi, x_hi = mid, x_mid
        return self._assemble(x_hi)


class GeneralPolytope:
    """The standard set plus extra linear rows lo <= A w <= hi: LP by HiGHS, QP by OSQP."""

    kind = "general"

    def __init__(self, problem) -> None:
        n = problem.n
        rows = problem.all_linear_rows()
        self.C = rows.A.tocsc()
        self.l, self.u = rows.lo, rows.hi
        self.lb, self.ub = problem.lb, problem.ub
        self.n = n
        self.message = "extra linear constraints present: subproblems solved by a general LP (scipy HiGHS) / QP (OSQP)"

    def lmo(self, c: np.ndarray) -> np.ndarray:
        """Maximiser of c^T w (HiGHS dual simplex gives a vertex)."""
        from scipy.optimize import linprog

        eq = self.l == self.u
        ub_rows = ~eq
        A_ub, b_ub = [], []
        Cu = self.C[np.flatnonzero(ub_rows & np.isfinite(self.u))]
        Cl = self.C[np.flatnonzero(ub_rows & np.isfinite(self.l))]
        import scipy.sparse as sp

        if Cu.shape[0] or Cl.shape[0]:
            A_ub = sp.vstack([Cu, -Cl], format="csr")
            b_ub = np.concatenate([self.u[ub_rows & np.isfinite(self.u)], -self.l[ub_rows & np.isfinite(self.l)]])
        res = linprog(
            -np.asarray(c, float),
            A_ub=A_ub if len(b_ub) else None,
            b_ub=b_ub if len(b_ub) else None,
            A_eq=self.C[np.flatnonzero(eq)],
            b_eq=self.l[eq],
            bounds=np.column_stack([self.lb, self.ub]),
            method="highs-ds",
        )
        if res.status == 2:
            raise InfeasibleProblemError("the relaxation with the extra linear constraints is infeasible.")
        if res.status != 0:
            raise InfeasibleProblemError(f"HiGHS could not solve the LP subproblem: {res.message}")
        return np.clip(res.x, self.lb, self.ub)

    def project(self, y: np.ndarray) -> np.ndarray:
        """Euclidean projection by OSQP (polished, tight tolerances)."""
        import osqp
        import scipy.sparse as sp

        n = self.n
        A = sp.vstack([self.C, sp.identity(n, format="csc")], format="csc")
        l = np.concatenate([self.l, self.lb])
        u = np.concatenate([self.u, self.ub])
        solver = osqp.OSQP()
        solver.setup(
            sp.identity(n, format="csc"), -np.asarray(y, float), A, l, u,
            verbose=False, eps_abs=1e-10, eps_rel=1e-10, polishing=True, max_iter=200000,
        )
        res = solver.solve()
        if res.x is None or not np.all(np.isfinite(res.x)):
            raise InfeasibleProblemError(f"OSQP could not project: {res.info.status}")
        return np.clip(res.x, self.lb, self.ub)


def make_oracle(problem):
    """The structured oracle when only standard constraints (+ fixings) are present, else the general one."""
    if problem.rows is None:  # on the GPU when G is there (same iterates, torch.topk)
        from .distributed.device_oracle import structured_polytope

        return structured_polytope(problem)
    return GeneralPolytope(problem)
