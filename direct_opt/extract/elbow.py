"""Elbow rules: choose the number k* of stiff directions from descending eigenvalues."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from ..errors import UnknownNameError


def energy_elbow(eigvals: np.ndarray, threshold: float = 0.945) -> int:
    """Smallest k* whose cumulative energy sum_{j<=k*} λ_j / sum_j λ_j reaches ``threshold``.

    Negative eigenvalues (Hessian curvature) count as zero energy; all-zero spectra give 0.
    """
    lam = np.clip(np.asarray(eigvals, dtype=np.float64), 0.0, None)
    total = lam.sum()
    if lam.size == 0 or total <= 0:
        return 0
    cum = np.cumsum(lam) / total
    return int(min(lam.size, np.searchsorted(cum, threshold - 1e-12) + 1))


def log_gap_elbow(eigvals: np.ndarray, threshold: float = 0.945, rel_floor: float = 1e-10) -> int:
    """k* = position of the largest gap log λ_j - log λ_{j+1} among eigenvalues above
    ``rel_floor * λ_1`` (``threshold`` unused). Fewer than two such eigenvalues: their count."""
    lam = np.asarray(eigvals, dtype=np.float64)
    if lam.size == 0 or lam[0] <= 0:
        return 0
    pos = lam[lam > rel_floor * lam[0]]
    if pos.size < 2:
        return int(pos.size)
    gaps = np.log(pos[:-1]) - np.log(pos[1:])
    return int(np.argmax(gaps) + 1)


#: elbow name -> rule(eigvals (k,) descending, threshold) -> k*
ELBOWS: Mapping[str, Callable[..., int]] = {"energy": energy_elbow, "log-gap": log_gap_elbow}


def choose_k_star(name: str, eigvals: np.ndarray, threshold: float = 0.945) -> int:
    """Apply the elbow rule called ``name`` (see :data:`ELBOWS`)."""
    if name not in ELBOWS:
        raise UnknownNameError(f"unknown elbow {name!r}; known elbows: {', '.join(sorted(ELBOWS))}.")
    return ELBOWS[name](eigvals, threshold)
