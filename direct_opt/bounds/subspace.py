"""A scalable upper bound in the r-dimensional space of z = G x (any N).

Let G G^T = U diag(sigma^2) U^T.  Split the eigen-directions into consecutive blocks
B_1, B_2, ... (of at most ``block_dim`` directions each) and a tail T; then for every
0/1 feasible x, since the blocks are orthogonal,

    ||G x||^2 = sum_b ||U_b^T G x||^2 + ||P_T G x||^2
             <= sum_b R_b^2 + min(sigma_T,max^2 K,  (max_w sum_i w_i ||P_T g_i||)^2)

(||x||^2 = K for a 0/1 x with K ones).  Each R_b = max_{w in F} ||U_b^T G w|| is the
radius of the image of the (relaxed) feasible set F in the block's few coordinates.  It
is bounded by a branch and bound over the directions of the block's unit sphere: a
region of directions within angle theta of a centre d contains only points z with

    ||z|| cos(theta) <= d^T z <= h(d) = max_{w in F} d^T U_b^T G w,

one call of the structured LMO; regions (faces of the cube, halved) are refined where
the bound is largest until it is within ``rel_tol`` of the best point found or the LMO
budget is spent.  The bound is valid whenever it stops.  ``m`` blocks are kept where
the sum is smallest (the tail taking over the rest), like the spectral bound it refines.
"""

from __future__ import annotations

import heapq
import itertools
import time

import numpy as np

from ..problem import SelectionProblem


def _corner_cos(d: np.ndarray, corners: np.ndarray) -> float:
    """Smallest cosine between unit d and the (unnormalised) corner directions."""
    c = corners @ d / np.linalg.norm(corners, axis=1)
    return float(c.min())


class _Region:
    """Directions s e_axis + sum_{j != axis} t_j e_j, t in the box [lo, hi] (a cube-face patch)."""

    __slots__ = ("axis", "sign", "lo", "hi")

    def __init__(self, axis: int, sign: float, lo: np.ndarray, hi: np.ndarray) -> None:
        self.axis, self.sign, self.lo, self.hi = axis, sign, lo, hi

    def _embed(self, t: np.ndarray) -> np.ndarray:
        m = t.shape[-1] + 1
        out = np.empty(t.shape[:-1] + (m,))
        others = [j for j in range(m) if j != self.axis]
        out[..., others] = t
        out[..., self.axis] = self.sign
        return out

    def centre_and_cos(self) -> tuple[np.ndarray, float]:
        d = self._embed(0.5 * (self.lo + self.hi))
        d = d / np.linalg.norm(d)
        if self.lo.size == 0:
            return d, 1.0
        corners = self._embed(np.array(list(itertools.product(*zip(self.lo, self.hi)))))
        return d, _corner_cos(d, corners)

    def split(self) -> list["_Region"]:
        mid = 0.5 * (self.lo + self.hi)
        out = []
        for choice in itertools.product((0, 1), repeat=self.lo.size):
            c = np.array(choice, dtype=bool)
            out.append(_Region(self.axis, self.sign, np.where(c, mid, self.lo), np.where(c, self.hi, mid)))
        return out


def block_radius(Y: np.ndarray, lmo, rel_tol: float = 0.01, max_lmo: int = 200,
                 deadline: float | None = None) -> tuple[float, int]:
    """(upper bound on max_{w in F} ||Y w||^2, LMO calls used) for a (m, N) Y with m small.

    ``lmo(c)`` maximises c^T w over F.  m = 1 is exact (two calls)."""
    m = Y.shape[0]
    calls = 0
    best_lower = 0.0

    def h(d: np.ndarray) -> float:
        nonlocal calls, best_lower
        w = lmo(Y.T @ d)
        calls += 1
        z = Y @ w
        best_lower = max(best_lower, float(z @ z))
        return float(d @ z)

    if m == 1:
        r = max(h(np.ones(1)), h(-np.ones(1)), 0.0)
        return r * r, calls
    heap: list[tuple[float, int, _Region]] = []
    tie = itertools.count()

    def push(reg: _Region) -> None:
        d, cos = reg.centre_and_cos()
        if cos <= 0.05:  # too wide to bound: split first
            for child in reg.split():
                push(child)
            return
        val = max(h(d), 0.0) / cos
        heapq.heappush(heap, (-(val * val), next(tie), reg))

    for axis in range(m):
        for sign in (1.0, -1.0):
            push(_Region(axis, sign, -np.ones(m - 1), np.ones(m - 1)))
    while heap:
        top = -heap[0][0]
        if top <= (1 + rel_tol) * best_lower or calls >= max_lmo or (deadline is not None and time.monotonic() > deadline):
            break
        _, _, reg = heapq.heappop(heap)
        for child in reg.split():
            push(child)
    return (-heap[0][0] if heap else best_lower), calls


def subspace_bound(problem: SelectionProblem, outer, head_dim: int = 3, max_dirs: int = 24,
                   rel_tol: float = 0.01, head_lmo: int = 48, time_limit: float | None = None) -> tuple[float, dict]:
    """(upper bound on max ||G x||^2 over 0/1 feasible x, details) — see the module docstring.

    The first ``head_dim`` directions form one block (branch and bound with at most
    ``head_lmo`` LMO calls); the next ones, up to ``max_dirs``, are blocks of one direction
    (two LMO calls each, exact).  ``outer`` is the structured polytope containing the
    feasible set (its ``lmo``)."""
    P = problem
    deadline = None if time_limit is None else time.monotonic() + float(time_limit)
    ev, U = np.linalg.eigh(P.op.gram())
    ev, U = np.maximum(ev[::-1], 0.0), U[:, ::-1]
    ev = ev + 1e-10 * ev[0] + 1e-300  # eigh is backward stable: pad so the bound stays valid
    r = ev.size
    m_max = min(max_dirs, r)
    Y = np.stack([P.op.rmatvec(U[:, j]) for j in range(m_max)]) if m_max else np.zeros((0, P.n))
    sq = P.op.col_sq_norms()
    starts = [0] + list(range(min(head_dim, m_max), m_max)) if m_max else []
    ends = starts[1:] + [m_max]
    radii, spent = [], 0
    for s, e in zip(starts, ends):
        if deadline is not None and time.monotonic() > deadline and radii:
            break
        rad, used = block_radius(Y[s:e], outer.lmo, rel_tol, head_lmo if s == 0 else 2, deadline)
        radii.append(rad * (1 + 1e-9))
        spent += used
    # tail after the first m directions: spectral, or the norm bound on the projected columns
    head_sq = np.zeros(P.n)
    best, best_m, acc, done = np.inf, 0, 0.0, 0
    for b, e in enumerate([0] + ends[: len(radii)]):
        while done < e:
            head_sq += Y[done] ** 2
            done += 1
        if b:
            acc += radii[b - 1]
        spectral = ev[e] * P.k if e < r else 0.0
        tail = spectral
        if b == 0 or b == len(radii) or b % 3 == 0:  # the projected-norm tail costs one LMO: sample it
            norms = np.sqrt(np.maximum(sq - head_sq, 0.0) + 1e-12 * sq)
            tail = min(spectral, float(norms @ outer.lmo(norms)) ** 2 * (1 + 1e-9))
            spent += 1
        if acc + tail < best:
            best, best_m = acc + tail, e
    return float(best), {"directions": best_m, "lmo_calls": spent, "head_dim": head_dim}
