"""The structured oracle on a torch device (CUDA), for solves whose G lives there.

:class:`TorchPolytope` is :class:`~direct_opt.oracle.DirectPolytope` whose LMO vectors live
on ``device`` (:class:`~direct_opt.oracle.namespace.TorchOps`: ``torch.topk`` instead of
``np.argpartition``) with a search strategy for costly full-size selections: each call
starts from a narrow bracket around the previous call's multiplier (or an estimate on a
strided sample), and trial multipliers come from the Illinois variant of regula falsi.
The bisection itself, the candidate shrinking and the weak-duality stop are the shared
ones.  On a GPU an N = 10^6 oracle call costs milliseconds instead of about a second of
host time.  Projection, fractional K (fw-block blocks) and the feasibility checks run on
the host.  :func:`structured_polytope` picks it when the problem's G is a CUDA tensor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .namespace import TorchOps, _kth_largest  # noqa: F401  (_kth_largest: tests)
from .structured import _BISECT_MAX, _SHRINK_MIN, DirectPolytope

# Relative half-width of the first bracket around the previous call's multiplier (adapted per call).
_HINT_WIDTH_MIN, _HINT_WIDTH_MAX = 1e-4, 0.5
# Without a reliable previous multiplier, estimate one on a strided sample of this many candidates
# (relative half-width of the first bracket then: _SAMPLE_WIDTH).
_SAMPLE, _SAMPLE_WIDTH = 1 << 15, 0.15


class TorchPolytope(DirectPolytope):
    """DirectPolytope whose LMO runs on ``device`` (inputs/outputs stay float64 numpy)."""

    def __init__(self, a: np.ndarray, k: float, tau: float | None, lb: np.ndarray | None = None,
                 ub: np.ndarray | None = None, device: Any = "cuda") -> None:
        super().__init__(a, k, tau, lb, ub)
        self.device_ops = TorchOps(device)
        self.device = self.device_ops.device
        self._a = self.device_ops.asarray(self.a_free)
        self._integral = abs(self.k_free - round(self.k_free)) <= 1e-9

    def _lmo_space(self):
        if not self._integral:  # fractional K: the host search
            return super()._lmo_space()
        return self.device_ops, self._a, int(round(self.k_free))

    def _on_device(self, ops) -> bool:
        return ops is self.device_ops

    # ------------------------------------------------------------ strategy
    def _warm_start(self, ops, cf, af, k):
        if not self._on_device(ops):
            return None
        if getattr(self, "_hint_width", _HINT_WIDTH_MAX) >= _HINT_WIDTH_MAX:
            self._sample_hint(cf, af, k)  # no (reliable) previous multiplier: estimate one
        return self._narrow_start(cf, af, k)

    def _warm_bracket(self, ops, cf, af, k, tau):
        return self._hinted_bracket(cf, af, k, tau) if self._on_device(ops) else None

    def _shrink_due(self, ops, it, act, k_act, lo, hi, width) -> bool:
        if not self._on_device(ops):
            return super()._shrink_due(ops, it, act, k_act, lo, hi, width)
        n = act.numel()
        return n > _SHRINK_MIN and hi - lo < min(0.25 * width, 0.75 * hi) and 0 < k_act < n

    def _solved(self, mu: float) -> None:
        if self._integral:
            self._set_hint(mu)

    def _next_mu(self, lo: float, hi: float, f_lo: float, f_hi: float, it: int) -> float:
        """Next multiplier inside (lo, hi) by the Illinois variant of regula falsi on
        f(mu) = budget(mu) - tau (f_lo > 0 >= f_hi; the search halves the value of a side
        that was kept twice), bisection after 48 steps.  Each step is a device top-K (about a
        millisecond at N = 10^6) and f is nearly linear inside the bracket, so this needs
        far fewer of them than plain bisection.  Only the trial point changes: the bracket
        invariant and the exact stop are the same."""
        if self._integral and it < 48 and f_lo > f_hi:
            theta = f_lo / (f_lo - f_hi)
            mid = lo + theta * (hi - lo)
            if lo < mid < hi:
                return mid
        return 0.5 * (lo + hi)

    def _set_hint(self, mu: float) -> None:
        """Remember the multiplier for the next call, and size the next narrow start to 3x the
        largest relative change of it over the last 4 calls (within [_HINT_WIDTH_MIN,
        _HINT_WIDTH_MAX]; changes are between solved multipliers, never sampled estimates)."""
        old = getattr(self, "_last_mu", None)  # the previous call's solved multiplier
        if old is not None and old > 0:
            self._changes = (getattr(self, "_changes", []) + [abs(mu - old) / old])[-4:]
            self._hint_width = min(_HINT_WIDTH_MAX, max(_HINT_WIDTH_MIN, 3.0 * max(self._changes)))
        else:  # no history yet: the next call estimates again (or starts from a wide bracket)
            self._hint_width = _HINT_WIDTH_MAX
        self._mu_hint = self._last_mu = mu

    def _sample_hint(self, cf, af, k: int) -> None:
        """Estimate the budget multiplier on an evenly strided sample of ``_SAMPLE`` candidates
        (k and tau scaled to it) and store it as the hint, with half-width ``_SAMPLE_WIDTH``.
        Two batched top-k's over a grid of 64 multipliers (geometric over 2^-60..1 times the
        bound max|c| / min a, then linear inside the crossing cell): two small device passes and
        two host syncs instead of a cold full-size search.  Only a hint: exactness comes from
        the bracket checks of :meth:`_narrow_start`.  Skipped for n < 2 * _SAMPLE."""
        t, n = self.device_ops.t, cf.numel()
        if n < 2 * _SAMPLE:
            return
        stride = n // _SAMPLE
        cs, a_s = cf[::stride][:_SAMPLE], af[::stride][:_SAMPLE]
        ks = int(round(k * _SAMPLE / n))
        if not 0 < ks < _SAMPLE:
            return
        tau_s = self.tau_free * _SAMPLE / n
        pos = a_s[a_s > 0]
        if not pos.numel():
            return
        top = float(cs.abs().max() / pos.min()) * 4.0
        if not 0 < top < float("inf"):
            return
        grid = top * t.pow(2.0, t.linspace(-60.0, 0.0, 64, dtype=t.float64, device=self.device))
        for _ in range(2):
            scores = cs[None, :] - grid[:, None] * a_s[None, :]
            idx = t.topk(scores, ks, dim=1, sorted=False).indices
            over = (a_s[idx].sum(1) > tau_s).tolist()  # budget excess > 0, decreasing along the grid
            j = sum(over) - 1
            if j < 0 or j >= grid.numel() - 1:
                return
            g0, g1 = grid[j : j + 2].tolist()
            grid = t.linspace(g0, g1, 64, dtype=t.float64, device=self.device)
        self._mu_hint, self._hint_width = 0.5 * (g0 + g1), _SAMPLE_WIDTH

    def _narrow_start(self, cf, af, k: int):
        """The search state on few candidates, from a bracket of relative half-width
        ``_hint_width`` around the previous call's multiplier, shrunk before any top-K: the
        arguments of :meth:`_search` after (ops, cf, af, k) (width included), or None (no hint;
        the caller then runs the full-size search).  When the crossing lies outside the bracket,
        the bracket is walked outwards on the full set from the nearer end (up to 30 steps up,
        else None; 3 down, then mu = 0: a 1-tuple (top-K,) when the budget does not bind).  A
        valid bracket with lo > 0 also proves that the budget binds (the top-K budget does not
        increase with mu), so the unconstrained top-K is not needed."""
        ops, mu = self.device_ops, getattr(self, "_mu_hint", None)
        if mu is None or not mu > 0 or not 0 < k < cf.numel():
            return None
        h = getattr(self, "_hint_width", _HINT_WIDTH_MAX)
        lo, hi = mu * (1.0 - h), mu * (1.0 + h)
        act, c_act, a_act, k_act, c_in, a_in, fixed_in = ops.arange(cf.numel()), cf, af, k, 0.0, 0.0, []
        sh = ops.shrink(cf, af, k, lo, hi)
        if sh is not None:
            keep, sure_in, n_in, c_in, a_in = sh
            fixed_in, k_act = [act[sure_in]], k - n_in
            act, c_act, a_act = act[keep], cf[keep], af[keep]
        x_lo, x_hi = ops.top(c_act - lo * a_act, k_act), ops.top(c_act - hi * a_act, k_act)
        b_lo, b_hi = ops.dots([(a_act, x_lo), (a_act, x_hi)])
        f_lo, f_hi = a_in + b_lo - self.tau_free, a_in + b_hi - self.tau_free
        if f_lo > 0 >= f_hi:
            return act, c_act, a_act, k_act, c_in, a_in, fixed_in, lo, hi, x_lo, x_hi, f_lo, f_hi, hi - lo
        # missed: walk outwards from the side the crossing lies on, the step growing 4x, on the
        # full set (the fixings only hold inside [lo, hi]); the known end is kept as a bracket end
        n, step, tau = cf.numel(), 2.0 * h, self.tau_free
        if f_hi > 0:  # crossing above hi
            lo, x_lo, f_lo = hi, ops.scatter(n, act, x_hi, fixed_in), f_hi
            for _ in range(30):
                hi = mu * (1.0 + step)
                x_hi = ops.top(cf - hi * af, k)
                f_hi = ops.dot(af, x_hi) - tau
                if f_hi <= 0:
                    break
                lo, x_lo, f_lo, step = hi, x_hi, f_hi, 4.0 * step
            else:
                return None
        else:  # crossing below lo: 3 steps down, then mu = 0 (where a slack budget shows)
            hi, x_hi, f_hi = lo, ops.scatter(n, act, x_lo, fixed_in), f_lo
            for i in range(4):
                lo = mu / (1.0 + step) if i < 3 else 0.0
                x_lo = ops.top(cf - lo * af, k)
                f_lo = ops.dot(af, x_lo) - tau
                if f_lo > 0:
                    break
                hi, x_hi, f_hi, step = lo, x_lo, f_lo, 4.0 * step
            else:
                return (x_lo,)  # the top-K fits the budget: it is the answer
        return ops.arange(n), cf, af, k, 0.0, 0.0, [], lo, hi, x_lo, x_hi, f_lo, f_hi, float("inf")

    def _hinted_bracket(self, cf, af, k: int, tau: float):
        """(lo, x_lo, hi, x_hi) with budget(lo) > tau >= budget(hi), searched outwards from the
        previous call's multiplier (factor 1.5, then 4 per step), or None without a hint.
        Successive SCA / Frank-Wolfe directions change little, so the bracket is narrow and
        most full-size top-K steps of the bisection are saved."""
        ops, mu = self.device_ops, getattr(self, "_mu_hint", None)
        if mu is None or not mu > 0:
            return None
        lo, hi = mu / 1.5, mu * 1.5
        x_lo, x_hi = ops.top(cf - lo * af, k), ops.top(cf - hi * af, k)
        for _ in range(_BISECT_MAX):
            if ops.dot(af, x_lo) > tau:
                break
            hi, x_hi, lo = lo, x_lo, lo / 4.0  # lo is feasible: it becomes the upper end
            if lo < 1e-300:
                return None
            x_lo = ops.top(cf - lo * af, k)
        else:
            return None
        for _ in range(_BISECT_MAX):
            if ops.dot(af, x_hi) <= tau:
                return lo, x_lo, hi, x_hi
            lo, x_lo, hi = hi, x_hi, hi * 4.0
            x_hi = ops.top(cf - hi * af, k)
        return None


def structured_polytope(problem: Any) -> DirectPolytope:
    """DirectPolytope of ``problem``'s standard set (+ fixings); on CUDA when its G is there."""
    op = problem.op
    dev = getattr(op, "device", "cpu")
    if getattr(op, "is_torch", False) and getattr(dev, "type", str(dev)) == "cuda":
        return TorchPolytope(problem.a, problem.k, problem.tau, problem.lb, problem.ub, device=dev)
    return DirectPolytope(problem.a, problem.k, problem.tau, problem.lb, problem.ub)
