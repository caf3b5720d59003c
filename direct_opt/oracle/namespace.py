"""Array namespaces for the structured oracle: the few verbs its one bisection needs.

The Lagrangian bisection of :class:`~direct_opt.oracle.DirectPolytope` is written once
against these verbs; a namespace says where the (free-coordinate) vectors live:

* :class:`NumpyOps`   — host numpy arrays of one process (``np.argpartition`` top-K);
* :class:`TorchOps`   — torch tensors on a device (``torch.topk``; integral K);
* :class:`ReducedOps` — each process holds a block of the coordinates; sums, counts and
  the top-K are global over a :class:`~direct_opt.reduction.Reduction` (ties: lower
  global index).

Every verb returns host Python numbers for scalars, so the search logic never branches
on the array type.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..reduction import LOCAL, Reduction, top_k_mask


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


class NumpyOps:
    """Host numpy vectors of one process."""

    name = "numpy"
    shrinks = True  # candidate shrinking (needs the m-th largest entry)
    reduction: Reduction = LOCAL

    def asarray(self, v: Any) -> np.ndarray:
        return np.asarray(v, dtype=np.float64)

    def top(self, score: np.ndarray, k: float) -> np.ndarray:
        return top_k_fractional(score, k)

    def dot(self, x: Any, y: Any) -> float:
        return float(x @ y)

    def dots(self, pairs: list[tuple[Any, Any]]) -> list[float]:
        return [self.dot(x, y) for x, y in pairs]

    def total(self, x: np.ndarray) -> float:
        return float(x.sum())

    def ndiff(self, x: Any, y: Any) -> int:
        return int(np.count_nonzero(x != y))

    def local_size(self, x: Any) -> int:
        return int(x.shape[0])

    def arange(self, n: int) -> Any:
        return np.arange(n)

    def abs_max(self, x: np.ndarray) -> float:
        return float(np.abs(x).max())

    def min_positive(self, x: np.ndarray) -> float:
        """The smallest positive entry (inf when none is positive)."""
        return float(x[x > 0].min(initial=np.inf))

    def shrink(self, c: Any, a: Any, k: float, lo: float, hi: float):
        """None, or (keep, sure_in, count, c sum, a sum) of the candidates fixed over [lo, hi]."""
        keep, sure = _shrink(c, a, k, lo, hi)
        if keep is None:
            return None
        return keep, sure, int(sure.sum()), float(c[sure].sum()), float(a[sure].sum())

    def expand(self, n: int, act: Any, w_act: Any, fixed_in: list) -> np.ndarray:
        """The host (n,) vector: 1 on the fixed coordinates, w_act on the candidates ``act``."""
        x = np.zeros(n)
        for f in fixed_in:
            x[f] = 1.0
        x[act] = w_act
        return x

    def to_host(self, x: Any) -> np.ndarray:
        return x


class ReducedOps(NumpyOps):
    """Host numpy blocks of the coordinates spread over the processes of ``reduction``
    (block order = global index order): every sum, count and top-K is global."""

    name = "reduced"
    shrinks = False

    def __init__(self, reduction: Reduction) -> None:
        self.reduction = reduction

    def top(self, score: np.ndarray, k: float) -> np.ndarray:
        kf = int(round(k))
        if abs(k - kf) > 1e-9:
            from ..errors import InvalidParameterError

            raise InvalidParameterError(f"a sharded oracle needs an integral K, got {k}.")
        return top_k_mask(score, kf, self.reduction).astype(np.float64)

    def dot(self, x: Any, y: Any) -> float:
        return float(self.reduction.sum(x @ y))

    def dots(self, pairs: list[tuple[Any, Any]]) -> list[float]:
        return [float(v) for v in self.reduction.sum(np.array([x @ y for x, y in pairs]))]

    def total(self, x: np.ndarray) -> float:
        return float(self.reduction.sum(x.sum()))

    def ndiff(self, x: Any, y: Any) -> int:
        return int(self.reduction.sum(np.int64(np.count_nonzero(x != y))))

    def abs_max(self, x: np.ndarray) -> float:
        return float(self.reduction.max(np.abs(x).max(initial=0.0)))

    def min_positive(self, x: np.ndarray) -> float:
        return float(self.reduction.min(x[x > 0].min(initial=np.inf)))


class TorchOps:
    """float64 torch tensors on ``device`` (integral K: ``torch.topk``)."""

    name = "torch"
    shrinks = True
    reduction: Reduction = LOCAL

    def __init__(self, device: Any) -> None:
        import torch

        self.t = torch
        self.device = torch.device(device)

    def asarray(self, v: Any):
        return self.t.as_tensor(v, dtype=self.t.float64, device=self.device)

    def top(self, s, k: float):
        """0/1 float64 tensor of the top-k entries of s."""
        k = int(round(k))
        x = self.t.zeros_like(s)
        if k >= s.numel():
            x.fill_(1.0)
        elif k > 0:
            x[self.t.topk(s, k, sorted=False).indices] = 1.0
        return x

    def dot(self, x, y) -> float:
        return float(x @ y)

    def dots(self, pairs) -> list[float]:
        return self.t.stack([x @ y for x, y in pairs]).tolist()  # one host sync

    def total(self, x) -> float:
        return float(x.sum())

    def ndiff(self, x, y) -> int:
        return int((x != y).sum())

    def local_size(self, x) -> int:
        return int(x.numel())

    def arange(self, n: int):
        return self.t.arange(n, device=self.device)

    def abs_max(self, x) -> float:
        return float(x.abs().max())

    def min_positive(self, x) -> float:
        pos = x[x > 0]
        return float(pos.min()) if pos.numel() else float("inf")

    def shrink(self, c, a, k_act: float, lo: float, hi: float):
        """Candidates whose top-k_act membership is the same for every mu in [lo, hi] (the
        device twin of :meth:`NumpyOps.shrink`, integral k): None when none can be fixed, else
        (keep indices, sure-in indices, their count, c sum, a sum).  Two selections, one sync."""
        t, n, k_act = self.t, c.numel(), int(round(k_act))
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

    def scatter(self, n: int, act, w_act, fixed_in: list):
        """The full (n,) device vector: 1 on the fixed coordinates, w_act on the candidates."""
        x = self.t.zeros(n, dtype=self.t.float64, device=self.device)
        for f in fixed_in:
            x[f] = 1.0
        x[act] = w_act
        return x

    def expand(self, n: int, act, w_act, fixed_in: list) -> np.ndarray:
        return self.to_host(self.scatter(n, act, w_act, fixed_in))

    def to_host(self, x) -> np.ndarray:
        from ..linop import to_host

        return to_host(x)


def _kth_largest(t, x, m: int):
    """The m-th largest entry of the 1-D tensor x (see :meth:`TorchOps.kth_largest`)."""
    n = x.numel()
    if m <= n - m + 1:
        return t.topk(x, m, sorted=False).values.min()
    return t.topk(x, n - m + 1, largest=False, sorted=False).values.max()
