"""Reductions over the processes that each hold a block of the N coordinates.

Solver code that must work on one process and on P ranks alike (the structured oracle,
the SCA loop, the certificates) reduces through a :class:`Reduction`:

* :data:`LOCAL` — one process: every verb returns its input (no communication);
* :class:`direct_opt.distributed.Comm` — ``torch.distributed`` collectives (gloo / NCCL)
  over ranks holding contiguous column blocks of G, in rank order.

Verbs: ``sum`` / ``max`` / ``min`` (element-wise over processes), ``allgather`` (1-D
arrays of any length, rank order), ``allgather_fixed`` (equal shapes, stacked) and
``norm`` (Euclidean norm of the whole, distributed vector).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_GATHER_MAX = 4096  # finish a top-K selection by gathering once the bracket holds this few values
_PIVOTS = 15  # thresholds counted per reduction in top_k_mask (4 bits per round)
_BISECT_MAX = 200


class Reduction:
    """One process: reductions are the identity (``rank`` 0 of ``world`` 1)."""

    rank, world = 0, 1

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def sum(self, x: Any) -> Any:
        arr = np.asarray(x)
        return arr.copy() if arr.ndim else arr[()]

    def max(self, x: Any) -> Any:
        return self.sum(x)

    def min(self, x: Any) -> Any:
        return self.sum(x)

    def allgather(self, x: np.ndarray) -> list[np.ndarray]:
        """Every process's 1-D array (lengths may differ), in rank order."""
        return [np.asarray(x).ravel().copy()]

    def allgather_fixed(self, x: np.ndarray) -> np.ndarray:
        """(world, *x.shape) stack of an equally-shaped array from every process."""
        return np.asarray(x)[None].copy()

    def norm(self, x: np.ndarray) -> float:
        """||x|| of the vector whose blocks the processes hold (one process: ``np.linalg.norm``)."""
        if not self.distributed:
            return float(np.linalg.norm(x))
        return float(np.sqrt(self.sum(np.sum(np.asarray(x) ** 2))))


#: The single-process reduction.
LOCAL = Reduction()


def top_k_mask(score: np.ndarray, k: int, red: Reduction = LOCAL) -> np.ndarray:
    """Boolean mask (local) of the global top-k entries of ``score`` (ties: lower global index).

    Each process passes its own block (blocks in rank order = global index order): a
    multi-pivot bisection on the threshold with reduced counts, finished exactly by gathering
    the (few) values left in the bracket.
    """
    score = np.asarray(score, dtype=np.float64)
    n_tot = int(red.sum(np.int64(score.size)))
    if k <= 0:
        return np.zeros(score.size, dtype=bool)
    if k >= n_tot:
        return np.ones(score.size, dtype=bool)
    finite = np.isfinite(score)
    n_fin = int(red.sum(np.int64(finite.sum())))
    if k >= n_fin:  # every finite entry, then the non-finite ones by global index
        rest = np.flatnonzero(~finite)
        before = int(red.allgather_fixed(np.array([rest.size], dtype=np.int64)).ravel()[: red.rank].sum())
        mask = finite.copy()
        mask[rest[: int(np.clip(k - n_fin - before, 0, rest.size))]] = True
        return mask
    lo = float(red.min(score[finite].min() if finite.any() else np.inf))
    hi = float(np.nextafter(red.max(score.max() if score.size else -np.inf), np.inf))
    c_hi = 0  # count(score >= hi) < k <= count(score >= lo)
    for _ in range(_BISECT_MAX):
        inside = (score >= lo) & (score < hi)
        m = int(red.sum(np.int64(inside.sum())))
        piv = lo + (hi - lo) * np.arange(1, _PIVOTS + 1) / (_PIVOTS + 1)
        piv = np.unique(piv[(piv > lo) & (piv < hi)])
        if m <= _GATHER_MAX or piv.size == 0:
            break
        counts = red.sum(np.array([(score >= t).sum() for t in piv], dtype=np.int64))
        j = int(np.searchsorted(-counts, -k, side="right"))  # pivots with count >= k: piv[:j]
        if j > 0:
            lo = float(piv[j - 1])
        if j < piv.size:
            hi, c_hi = float(piv[j]), int(counts[j])
    mask = score >= hi
    need = k - c_hi
    inside = np.flatnonzero((score >= lo) & (score < hi))
    if m <= _GATHER_MAX:  # exact finish: order the bracket by (value desc, index asc)
        parts = red.allgather(score[inside])
        vals = np.concatenate(parts)
        owner = np.concatenate([np.full(len(v), r) for r, v in enumerate(parts)])
        pos = np.concatenate(red.allgather(inside.astype(np.int64)))
        order = np.lexsort((pos, owner, -vals))[:need]
        mine = pos[order][owner[order] == red.rank]
        mask[mine] = True
        return mask
    # the bracket holds many copies of one value (no float strictly between lo and hi): lower ranks first
    counts = red.allgather_fixed(np.array([inside.size], dtype=np.int64)).ravel()
    before = int(counts[: red.rank].sum())
    take = int(np.clip(need - before, 0, inside.size))
    mask[inside[:take]] = True
    return mask
