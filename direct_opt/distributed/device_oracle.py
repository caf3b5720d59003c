"""The structured linear oracle on a torch device (CUDA), for solves whose G lives there.

:class:`TorchPolytope` is :class:`~direct_opt.oracle.DirectPolytope` with ``lmo`` ported to
torch: the same Lagrangian bisection on the budget multiplier mu (top-K of c - mu a per
step, ``torch.topk`` instead of ``np.argpartition``), the same candidate shrinking and the
same weak-duality stop.  On a GPU an N = 10^6 oracle call costs milliseconds instead of
about a second of host time, which otherwise dominates a CUDA solve.  Projection (prox > 0),
fractional K (fw-block blocks) and the feasibility checks are inherited unchanged.
:func:`structured_polytope` picks it when the problem's G is a CUDA tensor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..linop import to_host
from ..oracle import _BISECT_MAX, _SHRINK_MIN, DirectPolytope, multiplier_bracket

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
        import torch

        self._t = torch
        self.device = torch.device(device)
        self._a = torch.as_tensor(self.a_free, dtype=torch.float64, device=self.device)
        self._integral = abs(self.k_free - round(self.k_free)) <= 1e-9

    def _top(self, s, k: int):
        """0/1 float64 tensor of the top-k entries of s."""
        x = self._t.zeros_like(s)
        if k >= s.numel():
            x.fill_(1.0)
        elif k > 0:
            x[self._t.topk(s, k, sorted=False).indices] = 1.0
        return x

    def lmo(self, c: np.ndarray) -> np.ndarray:
        """Exact maximiser of c^T w (see DirectPolytope.lmo), computed on the device."""
        if not self._integral:
            return super().lmo(c)
        t = self._t
        cf = t.as_tensor(self._free_part(c), dtype=t.float64, device=self.device)
        af, k = self._a, int(round(self.k_free))
        tau = self.tau_free
        if self.tau is not None and getattr(self, "_hint_width", _HINT_WIDTH_MAX) >= _HINT_WIDTH_MAX:
            self._sample_hint(cf, af, k)  # no (reliable) previous multiplier: estimate one
        narrow = self._narrow_start(cf, af, k) if self.tau is not None else None
        if narrow is not None:  # started from the hint: a slack budget, or a bracket (few candidates)
            return self._assemble(to_host(narrow[0])) if len(narrow) == 1 else self._search(cf, k, *narrow)
        x0 = self._top(cf, k)
        if self.tau is None or float(af @ x0) <= self.tau_free:
            return self._assemble(to_host(x0))
        bracket = self._hinted_bracket(cf, af, k, tau)
        if bracket is None:
            pos = af[af > 0]
            amin = float(pos.min()) if pos.numel() else 1.0
            lo, hi = 0.0, multiplier_bracket(float(cf.abs().max()), amin)
            x_lo, x_hi = x0, self._top(cf - hi * af, k)
            for _ in range(_BISECT_MAX):
                if float(af @ x_hi) <= tau:
                    break
                lo, x_lo, hi = hi, x_hi, hi * 4.0
                x_hi = self._top(cf - hi * af, k)
        else:
            lo, x_lo, hi, x_hi = bracket
        f_lo, f_hi = (v - tau for v in t.stack([af @ x_lo, af @ x_hi]).tolist())
        return self._search(cf, k, t.arange(cf.numel(), device=self.device), cf, af, k, 0.0, 0.0, [],
                            lo, hi, x_lo, x_hi, f_lo, f_hi)

    def _search(self, cf, k: int, act, c_act, a_act, k_act: int, c_in: float, a_in: float, fixed_in: list,
                lo: float, hi: float, x_lo, x_hi, f_lo: float, f_hi: float, width: float = float("inf")) -> np.ndarray:
        """Illinois search for the budget multiplier inside the bracket [lo, hi] (budget excess
        f_lo > 0 >= f_hi) on the candidates ``act`` (the rest fixed: ``fixed_in`` at 1, with
        c / a sums c_in / a_in and k - k_act of them), shrinking the candidates whenever the
        bracket has narrowed 4x since the last shrink and lo >= hi / 4 (``width``: the bracket width at the last
        shrink).  Returns the free-coordinate vertex."""
        t, tau = self._t, self.tau_free
        n_in = k - k_act
        side = 0  # +1 / -1: lo / hi was moved last (Illinois: halve the other side's value when repeated)
        for it in range(_BISECT_MAX):
            if act.numel() > _SHRINK_MIN and hi - lo < min(0.25 * width, 0.75 * hi) and 0 < k_act < act.numel():
                width = hi - lo
                sh = self._shrink_t(c_act, a_act, k_act, lo, hi)
                if sh is not None:
                    keep, sure_in, dn, dc, da = sh
                    fixed_in.append(act[sure_in])
                    n_in, c_in, a_in = n_in + dn, c_in + dc, a_in + da
                    k_act = k - n_in
                    act, c_act, a_act, x_lo, x_hi = (v[keep] for v in (act, c_act, a_act, x_lo, x_hi))
            if int((x_lo != x_hi).sum()) <= 2 or hi - lo <= 1e-15 * hi:
                w, certified = self._mix_active(c_act, a_act, k_act, c_in, a_in, x_lo, x_hi, lo, hi, cf)
                if certified or hi - lo <= 1e-15 * hi:
                    self._set_hint(0.5 * (lo + hi))
                    return self._assemble(self._expand_t(cf.numel(), act, w, fixed_in))
            mid = self._next_mu(lo, hi, f_lo, f_hi, it)
            x_mid = self._top(c_act - mid * a_act, k_act)
            f_mid = a_in + float(a_act @ x_mid) - tau
            if f_mid > 0:
                lo, x_lo, f_lo = mid, x_mid, f_mid
                f_hi, side = (0.5 * f_hi if side == 1 else f_hi), 1
            else:
                hi, x_hi, f_hi = mid, x_mid, f_mid
                f_lo, side = (0.5 * f_lo if side == -1 else f_lo), -1
        w = self._mix_active(c_act, a_act, k_act, c_in, a_in, x_lo, x_hi, lo, hi, cf)[0]
        self._set_hint(0.5 * (lo + hi))
        return self._assemble(self._expand_t(cf.numel(), act, w, fixed_in))

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

    def _shrink_t(self, c, a, k_act: int, lo: float, hi: float):
        """Candidates whose top-k_act membership is the same for every mu in [lo, hi] (the
        device twin of :func:`direct_opt.oracle._shrink`, integral k): returns None when none
        can be fixed, else (keep indices, sure-in indices, their count, c sum, a sum).  Two
        selections and one host sync."""
        t, n = self._t, c.numel()
        if not 0 < k_act < n:
            return None
        s_lo, s_hi = c - lo * a, c - hi * a
        lower, upper = t.minimum(s_lo, s_hi), t.maximum(s_lo, s_hi)
        sure_in = lower > _kth_largest(t, upper, k_act)
        keep = ~(sure_in | (upper < _kth_largest(t, lower, k_act)))
        zero = t.zeros((), dtype=c.dtype, device=c.device)
        n_keep, n_in, c_in, a_in = t.stack([keep.sum().to(c.dtype), sure_in.sum().to(c.dtype),
                                            t.where(sure_in, c, zero).sum(), t.where(sure_in, a, zero).sum()]).tolist()
        if n_keep >= n:
            return None
        return t.nonzero(keep).squeeze(1), t.nonzero(sure_in).squeeze(1), int(n_in), c_in, a_in

    def _sample_hint(self, cf, af, k: int) -> None:
        """Estimate the budget multiplier on an evenly strided sample of ``_SAMPLE`` candidates
        (k and tau scaled to it) and store it as the hint, with half-width ``_SAMPLE_WIDTH``.
        Two batched top-k's over a grid of 64 multipliers (geometric over 2^-60..1 times the
        bound max|c| / min a, then linear inside the crossing cell): two small device passes and
        two host syncs instead of a cold full-size search.  Only a hint: exactness comes from
        the bracket checks of :meth:`_narrow_start`.  Skipped for n < 2 * _SAMPLE."""
        t, n = self._t, cf.numel()
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
        arguments of :meth:`_search` after (cf, k) (width included), or None (no hint; the caller then runs the
        full-size search).  When the crossing lies outside the bracket, the bracket is walked
        outwards on the full set from the nearer end (up to 30 steps up, else None; 3 down, then
        mu = 0: a 1-tuple (top-K,) when the budget does not bind).  A valid
        bracket with lo > 0 also proves that the budget binds (the top-K budget does not
        increase with mu), so the unconstrained top-K is not needed."""
        t, mu = self._t, getattr(self, "_mu_hint", None)
        if mu is None or not mu > 0 or not 0 < k < cf.numel():
            return None
        h = getattr(self, "_hint_width", _HINT_WIDTH_MAX)
        lo, hi = mu * (1.0 - h), mu * (1.0 + h)
        act, c_act, a_act, k_act, c_in, a_in, fixed_in = t.arange(cf.numel(), device=self.device), cf, af, k, 0.0, 0.0, []
        sh = self._shrink_t(cf, af, k, lo, hi)
        if sh is not None:
            keep, sure_in, n_in, c_in, a_in = sh
            fixed_in, k_act = [act[sure_in]], k - n_in
            act, c_act, a_act = act[keep], cf[keep], af[keep]
        x_lo, x_hi = self._top(c_act - lo * a_act, k_act), self._top(c_act - hi * a_act, k_act)
        b_lo, b_hi = t.stack([a_act @ x_lo, a_act @ x_hi]).tolist()
        f_lo, f_hi = a_in + b_lo - self.tau_free, a_in + b_hi - self.tau_free
        if f_lo > 0 >= f_hi:
            return act, c_act, a_act, k_act, c_in, a_in, fixed_in, lo, hi, x_lo, x_hi, f_lo, f_hi, hi - lo
        # missed: walk outwards from the side the crossing lies on, the step growing 4x, on the
        # full set (the fixings only hold inside [lo, hi]); the known end is kept as a bracket end
        n, step, tau = cf.numel(), 2.0 * h, self.tau_free
        if f_hi > 0:  # crossing above hi
            lo, x_lo, f_lo = hi, self._scatter(n, act, x_hi, fixed_in), f_hi
            for _ in range(30):
                hi = mu * (1.0 + step)
                x_hi = self._top(cf - hi * af, k)
                f_hi = float(af @ x_hi) - tau
                if f_hi <= 0:
                    break
                lo, x_lo, f_lo, step = hi, x_hi, f_hi, 4.0 * step
            else:
                return None
        else:  # crossing below lo: 3 steps down, then mu = 0 (where a slack budget shows)
            hi, x_hi, f_hi = lo, self._scatter(n, act, x_lo, fixed_in), f_lo
            for i in range(4):
                lo = mu / (1.0 + step) if i < 3 else 0.0
                x_lo = self._top(cf - lo * af, k)
                f_lo = float(af @ x_lo) - tau
                if f_lo > 0:
                    break
                hi, x_hi, f_hi, step = lo, x_lo, f_lo, 4.0 * step
            else:
                return (x_lo,)  # the top-K fits the budget: it is the answer
        return t.arange(n, device=self.device), cf, af, k, 0.0, 0.0, [], lo, hi, x_lo, x_hi, f_lo, f_hi, float("inf")

    def _hinted_bracket(self, cf, af, k: int, tau: float):
        """(lo, x_lo, hi, x_hi) with budget(lo) > tau >= budget(hi), searched outwards from the
        previous call's multiplier (factor 1.5, then 4 per step), or None without a hint.
        Successive SCA / Frank-Wolfe directions change little, so the bracket is narrow and
        most full-size top-K steps of the bisection are saved."""
        mu = getattr(self, "_mu_hint", None)
        if mu is None or not mu > 0:
            return None
        lo, hi = mu / 1.5, mu * 1.5
        x_lo, x_hi = self._top(cf - lo * af, k), self._top(cf - hi * af, k)
        for _ in range(_BISECT_MAX):
            if float(af @ x_lo) > tau:
                break
            hi, x_hi, lo = lo, x_lo, lo / 4.0  # lo is feasible: it becomes the upper end
            if lo < 1e-300:
                return None
            x_lo = self._top(cf - lo * af, k)
        else:
            return None
        for _ in range(_BISECT_MAX):
            if float(af @ x_hi) <= tau:
                return lo, x_lo, hi, x_hi
            lo, x_lo, hi = hi, x_hi, hi * 4.0
            x_hi = self._top(cf - hi * af, k)
        return None

    @staticmethod
    def _next_mu(lo: float, hi: float, f_lo: float, f_hi: float, it: int) -> float:
        """Next multiplier inside (lo, hi) by the Illinois variant of regula falsi on
        f(mu) = budget(mu) - tau (f_lo > 0 >= f_hi; the caller halves the value of a side
        that was kept twice), bisection after 48 steps.  Each step is a device top-K (about a
        millisecond at N = 10^6) and f is nearly linear inside the bracket, so this needs
        far fewer of them than plain bisection.  Only the trial point changes: the bracket
        invariant and the exact stop are the same."""
        if it < 48 and f_lo > f_hi:
            theta = f_lo / (f_lo - f_hi)
            mid = lo + theta * (hi - lo)
            if lo < mid < hi:
                return mid
        return 0.5 * (lo + hi)

    def _scatter(self, n: int, act, w_act, fixed_in: list):
        """The full (n,) device vector: 1 on the fixed coordinates, w_act on the candidates."""
        x = self._t.zeros(n, dtype=self._t.float64, device=self.device)
        for f in fixed_in:
            x[f] = 1.0
        x[act] = w_act
        return x

    def _expand_t(self, n: int, act, w_act, fixed_in: list) -> np.ndarray:
        return to_host(self._scatter(n, act, w_act, fixed_in))

    def _top_vertex(self, d, k: float):  # numpy inputs come from the fractional-K fallback
        return self._top(d, int(round(k))) if isinstance(d, self._t.Tensor) else super()._top_vertex(d, k)

    def _a_vec(self, like):
        return self._a if isinstance(like, self._t.Tensor) else self.a_free


def _kth_largest(t, x, m: int):
    """The m-th largest entry of the 1-D tensor x (0 < m <= x.numel()) as a 0-d tensor: the same
    value as ``kthvalue(x, n - m + 1)``, by a top-k of the smaller side (on CUDA ``topk`` is a
    multi-block radix select, ``kthvalue`` runs one block per row)."""
    n = x.numel()
    if m <= n - m + 1:
        return t.topk(x, m, sorted=False).values.min()
    return t.topk(x, n - m + 1, largest=False, sorted=False).values.max()


def structured_polytope(problem: Any) -> DirectPolytope:
    """DirectPolytope of ``problem``'s standard set (+ fixings); on CUDA when its G is there."""
    op = problem.op
    dev = getattr(op, "device", "cpu")
    if getattr(op, "is_torch", False) and getattr(dev, "type", str(dev)) == "cuda":
        return TorchPolytope(problem.a, problem.k, problem.tau, problem.lb, problem.ub, device=dev)
    return DirectPolytope(problem.a, problem.k, problem.tau, problem.lb, problem.ub)
