"""The structured DiReCT polytope {lb <= w <= ub, 1^T w = K, a^T w <= tau}, exactly.

* ``lmo(c)``: Lagrangian bisection on the budget multiplier mu (top-K of c - mu a per
  step), with candidate shrinking and a weak-duality stop: the exact maximiser, a vertex
  with at most two fractional entries in general position.
* ``project(y)``: exact Euclidean projection (bisection on the budget multiplier around
  an exact sort-based solve for the sum multiplier), O(N log N) per step.

The bisection is written once over an array namespace (:mod:`.namespace`): numpy on the
host, torch on a device (:class:`~direct_opt.oracle.device.TorchPolytope` adds warm-started
brackets as a search strategy), or blocks of the coordinates on P processes (pass a
``reduction``; the top-K and every sum are then global).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InfeasibleProblemError, UnsupportedConstraintError
from ..reduction import Reduction
from ..tolerance import fits
from .namespace import NumpyOps, ReducedOps, multiplier_bracket, top_k_fractional

_BISECT_MAX = 200
_SHRINK_MIN = 4096  # shrink the LMO's candidate set only when more candidates than this remain


class DirectPolytope:
    """{lb <= w <= ub, 1^T w = k, a^T w <= tau} with exact structured oracles.

    Args:
        a: (N,) costs >= 0; k: the (possibly fractional) sum; tau: budget or None;
        lb, ub: (N,) bounds (0/1 fixings; default 0 and 1).
        reduction: when this process holds only a block of the coordinates (a, lb, ub and
            every vector passed in are that block; k and tau are global), the reduction over
            the processes holding the others (e.g. a :class:`direct_opt.distributed.Comm`).
    """

    kind = "structured"
    message = ""

    def __init__(self, a: np.ndarray, k: float, tau: float | None, lb: np.ndarray | None = None,
                 ub: np.ndarray | None = None, *, reduction: Reduction | None = None) -> None:
        n = a.shape[0]
        self.host = NumpyOps() if reduction is None else ReducedOps(reduction)
        self.ops = self.host  # where the LMO's vectors live (a subclass may move them to a device)
        self.reduction = self.host.reduction
        self.a = np.asarray(a, dtype=np.float64)
        self.lb = np.zeros(n) if lb is None else np.asarray(lb, dtype=np.float64)
        self.ub = np.ones(n) if ub is None else np.asarray(ub, dtype=np.float64)
        self.free = np.flatnonzero(self.lb < self.ub)
        self.all_free = self.free.size == n
        self.base = self.lb.copy()  # fixed coordinates sit at lb == ub
        self.k = float(k)
        self.k_free = float(k) - self.host.total(self.base)
        self.tau = tau
        self.tau_free = None if tau is None else float(tau) - self.host.dot(self.a, self.base)
        self.a_free = self.a[self.free]
        self.lb_free, self.ub_free = self.lb[self.free], self.ub[self.free]
        if self.k_free < -1e-9 or self.k_free > self.host.total(self.ub_free - self.lb_free) + 1e-9:
            raise InfeasibleProblemError(
                f"cardinality: {k} samples cannot be chosen with {self.host.total(np.ones(self.free.size)):.0f} free and "
                f"{self.host.total(self.base):.0f} fixed samples."
            )
        if tau is not None:
            need = self.min_budget_free()
            if not fits(need + self.host.dot(self.a, self.base), float(tau)):
                raise InfeasibleProblemError(
                    f"budget: tau={tau:.6g} is below the smallest feasible budget "
                    f"{need + self.host.dot(self.a, self.base):.6g} (sum of the K smallest stiff costs); "
                    "raise tau / tau_rel or lower K."
                )

    @property
    def capabilities(self) -> frozenset[str]:
        """What this oracle offers: ``lmo``, ``project`` (one process), ``restrict`` (block sub-polytopes)."""
        one = self.reduction.world == 1
        return frozenset({"lmo", "dot"} | ({"project", "restrict", "dual_bound"} if one else set()))

    def dot(self, x: np.ndarray, y: np.ndarray) -> float:
        """x^T y over every coordinate (summed over the processes for a sharded polytope)."""
        return self.host.dot(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))

    def min_budget_free(self) -> float:
        return self.host.dot(self.a_free, self.host.top(-self.a_free, self.k_free))

    def restrict(self, idx: np.ndarray, k: float, tau: float | None) -> "DirectPolytope":
        """The polytope on the coordinates ``idx`` with sum ``k`` and budget ``tau`` (the others
        frozen): a block step of block-coordinate Frank-Wolfe.  Always a host polytope."""
        return DirectPolytope(self.a[idx], k, tau, self.lb[idx], self.ub[idx])

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
    def _lmo_space(self) -> tuple[Any, Any, float]:
        """(namespace, a on the free coordinates in it, K in it) for the next LMO call."""
        return self.ops, self.a_free, self.k_free

    def lmo(self, c: np.ndarray) -> np.ndarray:
        """Exact maximiser of c^T w over the polytope (a vertex, at most 2 fractional entries
        in general position).

        Lagrangian bisection on the budget multiplier mu (top-K of c - mu a per step).  Once
        the bracket [lo, hi] is known, coordinates whose score c_i - mu a_i is provably above
        (below) the K-th largest score for *every* mu in the bracket are fixed to 1 (0), and
        later steps work on the remaining candidates only; the iterates are exactly those of
        the full bisection, only cheaper (O(N) for the first steps, then shrinking).
        """
        ops, af, k = self._lmo_space()
        cf = ops.asarray(self._free_part(c))
        tau = self.tau_free
        if self.tau is not None:
            start = self._warm_start(ops, cf, af, k)  # a strategy may start from a known bracket
            if start is not None:
                if len(start) == 1:
                    return self._assemble(ops.to_host(start[0]))
                return self._search(ops, cf, af, k, *start)
        x0 = ops.top(cf, k)
        if self.tau is None or ops.dot(af, x0) <= tau:
            return self._assemble(ops.to_host(x0))
        bracket = self._warm_bracket(ops, cf, af, k, tau)
        if bracket is None:  # grow from [0, |c|max / a_min] until the budget holds at hi
            lo, hi = 0.0, multiplier_bracket(ops.abs_max(cf), ops.min_positive(af))
            x_lo, x_hi = x0, ops.top(cf - hi * af, k)
            for _ in range(_BISECT_MAX):
                if ops.dot(af, x_hi) <= tau:
                    break
                lo, x_lo, hi = hi, x_hi, hi * 4.0
                x_hi = ops.top(cf - hi * af, k)
        else:
            lo, x_lo, hi, x_hi = bracket
        f_lo, f_hi = (v - tau for v in ops.dots([(af, x_lo), (af, x_hi)]))
        return self._search(ops, cf, af, k, ops.arange(ops.local_size(cf)), cf, af, k, 0.0, 0.0, [],
                            lo, hi, x_lo, x_hi, f_lo, f_hi)

    def _search(self, ops, cf, af, k, act, c_act, a_act, k_act, c_in: float, a_in: float, fixed_in: list,
                lo: float, hi: float, x_lo, x_hi, f_lo: float, f_hi: float, width: float = float("inf")) -> np.ndarray:
        """Search for the budget multiplier inside the bracket [lo, hi] (budget excess
        f_lo > 0 >= f_hi) on the candidates ``act`` (the rest fixed: ``fixed_in`` at 1, with
        c / a sums c_in / a_in and k - k_act of them), shrinking the candidates when the
        strategy says so (``width``: the bracket width at the last shrink).  Stops when the two
        bracketing vertices differ in <= 2 coordinates and weak duality certifies their
        budget-tight mix.  Returns the vertex (host numpy, all coordinates)."""
        tau = self.tau_free
        n_in = k - k_act
        side = 0  # +1 / -1: lo / hi was moved last (for the Illinois trial point)
        for it in range(_BISECT_MAX):
            if self._shrink_due(ops, it, act, k_act, lo, hi, width):
                width = hi - lo
                sh = ops.shrink(c_act, a_act, k_act, lo, hi)
                if sh is not None:
                    keep, sure_in, dn, dc, da = sh
                    fixed_in.append(act[sure_in])
                    n_in, c_in, a_in = n_in + dn, c_in + dc, a_in + da
                    k_act = k - n_in
                    act, c_act, a_act, x_lo, x_hi = (v[keep] for v in (act, c_act, a_act, x_lo, x_hi))
            if ops.ndiff(x_lo, x_hi) <= 2 or hi - lo <= 1e-15 * hi:
                w, certified = self._mix_active(ops, cf, af, k, c_act, a_act, k_act, c_in, a_in, x_lo, x_hi, lo, hi)
                if certified or hi - lo <= 1e-15 * hi:
                    self._solved(0.5 * (lo + hi))
                    return self._assemble(ops.expand(ops.local_size(cf), act, w, fixed_in))
            mid = self._next_mu(lo, hi, f_lo, f_hi, it)
            x_mid = ops.top(c_act - mid * a_act, k_act)
            f_mid = a_in + ops.dot(a_act, x_mid) - tau
            if f_mid > 0:
                lo, x_lo, f_lo = mid, x_mid, f_mid
                f_hi, side = (0.5 * f_hi if side == 1 else f_hi), 1
            else:
                hi, x_hi, f_hi = mid, x_mid, f_mid
                f_lo, side = (0.5 * f_lo if side == -1 else f_lo), -1
        w = self._mix_active(ops, cf, af, k, c_act, a_act, k_act, c_in, a_in, x_lo, x_hi, lo, hi)[0]
        self._solved(0.5 * (lo + hi))
        return self._assemble(ops.expand(ops.local_size(cf), act, w, fixed_in))

    def _mix_active(self, ops, cf, af, k, c_act, a_act, k_act, c_in, a_in, x_lo, x_hi, lo, hi) -> tuple[Any, bool]:
        """Budget-tight mix of an over- and an under-budget top-K vertex (on the active set), and
        whether weak duality certifies it optimal (both are top-K at the multiplier where they tie)."""
        tau = self.tau_free
        ax_lo, ax_hi, cx_lo, cx_hi = ops.dots([(a_act, x_lo), (a_act, x_hi), (c_act, x_lo), (c_act, x_hi)])
        b_lo, b_hi = a_in + ax_lo, a_in + ax_hi
        if b_lo <= b_hi:
            return x_hi, False
        theta = min(1.0, max(0.0, (tau - b_hi) / (b_lo - b_hi)))
        w = theta * x_lo + (1.0 - theta) * x_hi
        mu = max(0.0, (cx_lo - cx_hi) / (b_lo - b_hi))
        if lo <= mu <= hi:  # the fixings hold at mu: the dual needs the active set only
            d = c_act - mu * a_act
            dual = c_in - mu * a_in + ops.dot(d, ops.top(d, k_act)) + mu * tau
        else:
            d = cf - mu * af
            dual = ops.dot(d, ops.top(d, k)) + mu * tau
        primal = c_in + ops.dot(c_act, w)
        return w, dual <= primal + 1e-12 * max(abs(primal), abs(dual))

    # ----------------------------------------------- search strategy (plain bisection)
    def _warm_start(self, ops, cf, af, k):
        """A search state from what earlier calls learnt (None: start cold)."""
        return None

    def _warm_bracket(self, ops, cf, af, k, tau: float):
        """(lo, x_lo, hi, x_hi) bracketing the multiplier, or None (grow from 0)."""
        return None

    def _shrink_due(self, ops, it: int, act, k_act, lo: float, hi: float, width: float) -> bool:
        return ops.shrinks and ops.local_size(act) > _SHRINK_MIN and it % 2 == 0

    @staticmethod
    def _next_mu(lo: float, hi: float, f_lo: float, f_hi: float, it: int) -> float:
        return 0.5 * (lo + hi)

    def _solved(self, mu: float) -> None:
        """Called with the final multiplier of a search (strategies remember it)."""

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
        if self.reduction.world > 1:
            raise UnsupportedConstraintError("the sharded polytope has no projection; use the LP subproblem (prox=0).")
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
