"""The per-step selection program: FW reaches the exact optimum in the linear case; certificates."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from direct_opt.errors import InfeasibleProblemError
from direct_opt.online import StepPolytope, block_frank_wolfe, quota_rows
from direct_opt.online.frank_wolfe import objective


def _best_subset(c, G, b, ok=lambda s: True):
    """Exact integer optimum of J over b-subsets (brute force)."""
    best, arg = -np.inf, None
    for s in itertools.combinations(range(c.size), b):
        if not ok(s):
            continue
        x = np.zeros(c.size)
        x[list(s)] = 1
        v = objective(c, G, x)
        if v > best:
            best, arg = v, s
    return best, np.array(arg)


@pytest.mark.parametrize("seed", range(5))
def test_linear_case_is_exact_top_b(seed):
    rng = np.random.default_rng(seed)
    n, b = 24, 6
    c = rng.normal(size=n)
    poly = StepPolytope(n, b)
    tr = block_frank_wolfe(poly, c, np.zeros((3, n)), steps=5, block_size=8, rng=rng)
    assert np.array_equal(poly.vertex(tr.w), np.sort(np.argsort(-c)[:b]))
    assert tr.gap <= 1e-12 and tr.values[-1] == pytest.approx(np.sort(c)[-b:].sum())


@pytest.mark.parametrize("seed", range(3))
def test_linear_case_with_quotas_is_the_lp_optimum(seed):
    rng = np.random.default_rng(seed)
    n, b = 12, 5
    c = rng.normal(size=n)
    groups = np.array(["a"] * 6 + ["b"] * 6)
    rows = quota_rows(groups, b, {"b": 0.4}, {"a": 0.4})  # >= 2 of b, <= 2 of a
    poly = StepPolytope(n, b, rows)
    tr = block_frank_wolfe(poly, c, np.zeros((1, n)), steps=3, block_size=6, rng=rng)
    ok = lambda s: sum(groups[list(s)] == "a") <= 2 and sum(groups[list(s)] == "b") >= 2  # noqa: E731
    best, arg = _best_subset(c, np.zeros((1, n)), b, ok)
    assert np.array_equal(poly.vertex(tr.w), arg)
    assert tr.values[-1] == pytest.approx(best)


def test_quadratic_case_monotone_and_certified():
    import cvxpy as cp

    rng = np.random.default_rng(0)
    n, b = 16, 4
    c, G = rng.normal(size=n) * 0.1, rng.normal(size=(5, n)) * 0.3
    poly = StepPolytope(n, b)
    tr = block_frank_wolfe(poly, c, G, steps=200, block_size=8, rng=rng)
    assert np.all(np.diff(tr.values) >= -1e-12), "J must never decrease"
    w = cp.Variable(n)
    prob = cp.Problem(cp.Maximize(c @ w - 0.5 * cp.sum_squares(G @ w)), [w >= 0, w <= 1, cp.sum(w) == b])
    prob.solve()
    j_star = prob.value
    assert tr.values[-1] <= j_star + 1e-6
    assert j_star <= tr.values[-1] + tr.gap + 1e-6  # the FW gap certifies the distance to the optimum
    assert tr.values[-1] >= j_star - 1e-3


def test_infeasible_quotas_are_a_clear_error():
    groups = np.array(["a"] * 10 + ["b"] * 2)
    with pytest.raises(InfeasibleProblemError, match="quotas"):
        StepPolytope(12, 6, quota_rows(groups, 6, None, {"a": 0.5}))
