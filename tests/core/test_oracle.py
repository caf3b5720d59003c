"""The structured oracle against general-purpose solvers."""

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from direct_opt.errors import InfeasibleProblemError
from direct_opt.oracle import DirectPolytope


@st.composite
def polytopes(draw):
    n = draw(st.integers(2, 50))
    k = draw(st.integers(1, n))
    seed = draw(st.integers(0, 100_000))
    rng = np.random.default_rng(seed)
    a = rng.random(n) ** 2
    if draw(st.booleans()):
        a = np.round(a * 3) / 3  # ties
    c = rng.standard_normal(n)
    if draw(st.booleans()):
        c = np.round(c)  # ties
    slack = draw(st.sampled_from([0.0, 0.01, 0.3, 2.0]))
    tau = float(np.sort(a)[:k].sum() + slack * a.sum())
    fixings = draw(st.booleans())
    lb, ub = np.zeros(n), np.ones(n)
    if fixings and n > 3:
        ub[rng.choice(n, 1)] = 0.0
        i = int(np.argmin(a + (ub == 0) * 10))
        lb[i] = 1.0
        tau += a[i]
    return a, k, tau, c, lb, ub


def _linprog(c, a, k, tau, lb, ub):
    n = len(c)
    return linprog(-c, A_ub=a[None], b_ub=[tau], A_eq=np.ones((1, n)), b_eq=[k], bounds=np.column_stack([lb, ub]), method="highs")


@settings(max_examples=80)
@given(polytopes())
def test_lmo_matches_highs(data):
    a, k, tau, c, lb, ub = data
    try:
        P = DirectPolytope(a, k, tau, lb, ub)
    except InfeasibleProblemError:
        assert _linprog(c, a, k, tau, lb, ub).status == 2
        return
    w = P.lmo(c)
    ref = _linprog(c, a, k, tau, lb, ub)
    assert ref.status == 0
    assert c @ w == pytest.approx(-ref.fun, rel=1e-9, abs=1e-9)
    assert a @ w <= tau * (1 + 1e-12) + 1e-12
    assert w.sum() == pytest.approx(k, abs=1e-9)
    assert np.all(w >= lb - 1e-12) and np.all(w <= ub + 1e-12)
    assert np.count_nonzero((w > 1e-9) & (w < 1 - 1e-9)) <= max(2, np.count_nonzero(np.diff(np.sort(c)) == 0) + 2)


@settings(max_examples=40)
@given(polytopes(), st.floats(0.1, 5.0))
def test_projection_matches_cvxpy_osqp(data, scale):
    a, k, tau, c, lb, ub = data
    try:
        P = DirectPolytope(a, k, tau, lb, ub)
    except InfeasibleProblemError:
        return
    y = scale * c
    w = P.project(y)
    x = cp.Variable(len(y))
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x - y)), [x >= lb, x <= ub, cp.sum(x) == k, a @ x <= tau])
    prob.solve(solver=cp.OSQP, eps_abs=1e-10, eps_rel=1e-10, max_iter=400000, polishing=True)
    if prob.status != cp.OPTIMAL:  # OSQP can give up when the set is a single point (tau at the edge)
        prob.solve(solver=cp.CLARABEL)
    assert np.sum((w - y) ** 2) <= prob.value + 1e-6 * max(1.0, prob.value)
    assert np.allclose(w, x.value, atol=2e-4)
    assert a @ w <= tau * (1 + 1e-10) + 1e-10
    assert w.sum() == pytest.approx(k, abs=1e-8)


def test_fractional_k_lmo():
    a = np.array([0.1, 0.2, 0.3, 0.4])
    P = DirectPolytope(a, 2.5, None)
    w = P.lmo(np.array([4.0, 3.0, 2.0, 1.0]))
    assert np.allclose(w, [1, 1, 0.5, 0])


def test_dual_bound_is_valid():
    rng = np.random.default_rng(0)
    a, c = rng.random(30), rng.standard_normal(30)
    P = DirectPolytope(a, 5, 1.0)
    v = c @ P.lmo(c)
    for mu in [0.0, 0.5, 3.0, 100.0]:
        assert P.dual_bound(c, mu) >= v - 1e-9
