"""Random instances shared by the core tests."""

from __future__ import annotations

import itertools

import numpy as np

from direct_opt import SelectionProblem


def instance(n=40, r=6, k=5, tau_rel=0.3, seed=0, kind="gauss"):
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((r, n))
    if kind == "ties":
        G = np.round(G)
    elif kind == "zero-cols":
        G[:, rng.random(n) < 0.3] = 0.0
    elif kind == "dup-cols":
        G[:, 1::2] = G[:, 0:-1:2][:, : G[:, 1::2].shape[1]]
    a = rng.random(n) ** 2
    if kind == "a-zero":
        a[:] = 0.0
    if kind == "ties":
        a = np.round(a * 4) / 4
    tau = tau_rel * a.mean() * k
    return G, a, k, tau


def brute_force(prob: SelectionProblem):
    """(best objective, best index tuple) over all feasible K-subsets (tiny N only)."""
    best, arg = -np.inf, None
    for S in itertools.combinations(range(prob.n), prob.k):
        x = np.zeros(prob.n)
        x[list(S)] = 1.0
        if not prob.is_feasible(x):
            continue
        v = prob.objective(x)
        if v > best:
            best, arg = v, S
    return best, arg
