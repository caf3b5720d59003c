"""The per-step selection program of online selectors and its memoryless block-coordinate FW.

At one training step the B candidates carry a linear score c (B,) and features Φ (B, d).
The selection weights w live in the step polytope

    P = {0 <= w <= 1,  1ᵀw = b,  lo_g <= Σ_{i in g} w_i <= hi_g  (per-source quotas)},

and the penalised objective is the concave quadratic

    J(w) = cᵀw − ½‖Gw‖²,   G = Φᵀ scaled by the caller  (d, B).

:class:`StepPolytope` is the linear oracle of P: the toolkit's shared
:class:`~direct_opt.oracle.DirectPolytope` without quotas, its
:class:`~direct_opt.oracle.GeneralPolytope` (HiGHS) with them — so quotas work online with
the same oracle as the static backends. :func:`block_frank_wolfe` maximises J by randomized
block-coordinate Frank–Wolfe steps from a fresh start (memoryless); :meth:`StepPolytope.vertex`
turns any weights into b distinct indices (the integral LMO vertex: the rows are a cardinality
row plus disjoint group rows, a totally unimodular system, so LP vertices are 0/1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from ..constraints import LinearRows
from ..errors import InfeasibleProblemError, InvalidParameterError, SolverError
from ..oracle import DirectPolytope, GeneralPolytope
from ..solvers.frank_wolfe import line_search


@dataclass
class _RowSet:
    """The minimal problem view :class:`GeneralPolytope` reads (n, bounds, all rows)."""

    n: int
    lb: np.ndarray
    ub: np.ndarray
    rows: LinearRows

    def all_linear_rows(self) -> LinearRows:
        return self.rows


def quota_rows(groups: Sequence[Any] | None, b: int, min_fraction: Mapping[str, float] | None,
               max_fraction: Mapping[str, float] | None) -> LinearRows | None:
    """Per-source quota rows for one super-batch: ceil(min·b) <= #chosen of group g <= floor(max·b).

    A group absent from this super-batch has no row; a minimum larger than the group's count in
    the super-batch is lowered to that count (the quota cannot be met by this draw).
    """
    if not min_fraction and not max_fraction:
        return None
    if groups is None:
        raise InvalidParameterError("quotas (min_fraction / max_fraction) need the group label of every candidate: "
                                    "pass groups= to select() (or to OnlineBatches).")
    labels = np.asarray([str(g) for g in groups])
    A, lo, hi, names = [], [], [], []
    for g in sorted(set(min_fraction or {}) | set(max_fraction or {})):
        mask = labels == g
        if not mask.any():
            continue
        mn = (min_fraction or {}).get(g)
        mx = (max_fraction or {}).get(g)
        lo.append(-np.inf if mn is None else float(min(int(np.ceil(mn * b - 1e-9)), int(mask.sum()))))
        hi.append(np.inf if mx is None else float(np.floor(mx * b + 1e-9)))
        A.append(mask.astype(np.float64))
        names.append(f"quota[{g}]")
    if not A:
        return None
    return LinearRows(sp.csr_matrix(np.vstack(A)), np.array(lo), np.array(hi), names)


class StepPolytope:
    """{0 <= w <= 1, 1ᵀw = b, quota rows} over n candidates, with exact linear oracles.

    Args:
        n: super-batch size B; b: how many to choose (1 <= b <= B);
        quotas: optional :class:`~direct_opt.constraints.LinearRows` (from :func:`quota_rows`).
    """

    def __init__(self, n: int, b: int, quotas: LinearRows | None = None) -> None:
        self.n, self.b, self.quotas = int(n), int(b), quotas
        if quotas is None:
            self._full = DirectPolytope(np.zeros(self.n), self.b, None)
        else:
            self._full = GeneralPolytope(self._row_set(np.arange(self.n), float(self.b), np.zeros(quotas.A.shape[0])))
            self._check_feasible()

    def _row_set(self, block: np.ndarray, k: float, outside: np.ndarray) -> _RowSet:
        """Rows of the block polytope: its cardinality k and the quotas minus what lies outside it."""
        m = block.size
        card = LinearRows(sp.csr_matrix(np.ones((1, m))), np.array([k]), np.array([k]), ["cardinality"])
        q = self.quotas
        rows = LinearRows.stack([card, LinearRows(q.A[:, block], q.lo - outside, q.hi - outside, q.names)])
        return _RowSet(m, np.zeros(m), np.ones(m), rows)

    def _check_feasible(self) -> None:
        q = self.quotas
        counts = np.asarray(q.A.sum(axis=1)).ravel()
        ungrouped = self.n - int(q.A.max(axis=0).sum())
        most = ungrouped + float(np.minimum(q.hi, counts).sum())
        least = float(np.maximum(q.lo, 0).sum())
        if most < self.b or least > self.b:
            raise InfeasibleProblemError(
                f"the quotas {dict(zip(q.names, zip(q.lo.tolist(), q.hi.tolist())))} cannot be met with b={self.b} "
                f"of these {self.n} candidates (at most {most:.0f}, at least {least:.0f} can be chosen); "
                "loosen min_fraction / max_fraction or draw larger super-batches.")

    def lmo(self, c: np.ndarray) -> np.ndarray:
        """A maximiser of cᵀw over the polytope (a 0/1 vertex)."""
        return self._full.lmo(np.asarray(c, np.float64))

    def block_lmo(self, c_block: np.ndarray, block: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Maximiser of c_blockᵀv over the block polytope (coordinates outside ``block`` frozen at w)."""
        k = float(w[block].sum())
        if self.quotas is None:
            return DirectPolytope(np.zeros(block.size), k, None).lmo(c_block)
        outside = self.quotas.A @ w - self.quotas.A[:, block] @ w[block]
        return GeneralPolytope(self._row_set(block, k, outside)).lmo(c_block)

    def vertex(self, scores: np.ndarray) -> np.ndarray:
        """(b,) sorted distinct indices of the integral vertex maximising scoresᵀw."""
        s = np.asarray(scores, np.float64)
        # a vanishing index term makes ties deterministic (lower index first)
        tie = np.abs(s).max(initial=1.0) * 1e-12 * (1.0 - np.arange(self.n) / max(self.n, 1))
        v = self.lmo(s + tie)
        idx = np.flatnonzero(v > 0.5)
        if idx.size != self.b or np.abs(v - np.round(v)).max(initial=0.0) > 1e-6:
            raise SolverError(f"the step oracle returned a fractional vertex ({idx.size} of b={self.b} set).")
        return idx.astype(np.int64)


def objective(c: np.ndarray, G: np.ndarray, w: np.ndarray) -> float:
    """J(w) = cᵀw − ½‖Gw‖²."""
    p = G @ w
    return float(c @ w - 0.5 * p @ p)


@dataclass
class FWTrace:
    """What :func:`block_frank_wolfe` did: weights, objective after each step, final FW gap."""

    w: np.ndarray
    values: list[float]
    gap: float
    steps: int


def block_frank_wolfe(poly: StepPolytope, c: np.ndarray, G: np.ndarray, *, steps: int, block_size: int,
                      rng: np.random.Generator) -> FWTrace:
    """Maximise J(w) = cᵀw − ½‖Gw‖² over ``poly`` by memoryless randomized block-coordinate FW.

    Start (fresh every call): w_0 = LMO(c), the optimum when G = 0. Each step draws a random
    block of ``block_size`` coordinates, freezes the others, takes the block LMO vertex v of
    ∇J restricted to the block and moves to w + γ(v − w) with the exact line search of the
    concave quadratic. J never decreases. The FW gap max_v ∇J(w)ᵀ(v − w) >= J* − J(w) of the
    final point is returned (a certificate of how far from the continuous optimum it is).

    Args:
        c: (B,) linear term; G: (d, B); steps: FW steps; block_size: coordinates per block.
    """
    n = poly.n
    w = poly.lmo(c)
    p = G @ w
    values = [float(c @ w - 0.5 * p @ p)]
    bs = int(min(max(2, block_size), n))
    for _ in range(int(steps)):
        block = np.sort(rng.choice(n, size=bs, replace=False))
        grad = c[block] - G[:, block].T @ p
        d = poly.block_lmo(grad, block, w) - w[block]
        slope = float(grad @ d)
        if slope > 1e-15 * max(1.0, abs(values[-1])):
            Gd = G[:, block] @ d
            gamma = line_search(-0.5, slope, float(Gd @ Gd), 1.0)
            w[block] = np.clip(w[block] + gamma * d, 0.0, 1.0)
            p = p + gamma * Gd
        values.append(float(c @ w - 0.5 * p @ p))
    grad = c - G.T @ p
    gap = max(0.0, float(grad @ (poly.lmo(grad) - w)))
    return FWTrace(w=w, values=values, gap=gap, steps=int(steps))
