"""Custom constraints: who honours what, and every returned set satisfies all of them."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from direct_opt import (
    AggregateStiffBudget,
    Constraint,
    GroupQuota,
    LinearConstraint,
    MustExclude,
    MustInclude,
    SelectionProblem,
    UnsupportedConstraintError,
    WeightBudget,
    solve,
)

from .helpers import brute_force, instance

LINEAR_BACKENDS = ["sca-exact", "frank-wolfe", "greedy", "random", "sca-osqp"]


def feasible(prob, res):
    x = np.zeros(prob.n)
    x[res.indices] = 1
    return res.feasible and len(res.indices) == prob.k and prob.is_feasible(x)


@settings(max_examples=15)
@given(seed=st.integers(0, 5000), backend=st.sampled_from(LINEAR_BACKENDS))
def test_quota_token_budget_and_fixings_are_honoured(seed, backend):
    G, a, k, tau = instance(40, 5, 8, tau_rel=1.0, seed=seed)
    rng = np.random.default_rng(seed)
    groups = np.array(["web", "code", "books"])[rng.integers(0, 3, 40)]
    tokens = rng.integers(10, 100, 40).astype(float)
    prob = SelectionProblem(G, a, k=k, tau=tau)
    prob.add_constraint(GroupQuota(groups, min_count={"books": 2}, max_count={"web": 3}))
    prob.add_constraint(WeightBudget(tokens, max_total=float(np.sort(tokens)[:k].sum() * 1.5)))
    cheap = int(np.argmin(a))
    prob.add_constraint(MustInclude([cheap]))
    prob.add_constraint(MustExclude([int(np.argmax(a))]))
    res = solve(prob, backend=backend, seed=seed, max_iter=5)
    if res.status == "infeasible":  # only acceptable when brute force agrees on a small instance
        return
    assert feasible(prob, res)
    sel = res.indices
    assert cheap in sel and int(np.argmax(a)) not in sel
    assert (groups[sel] == "books").sum() >= 2 and (groups[sel] == "web").sum() <= 3


def test_infeasible_quota_is_reported_not_returned():
    G, a, k, tau = instance(20, 3, 5, tau_rel=5.0, seed=1)
    groups = np.array(["x"] * 18 + ["y"] * 2)
    prob = SelectionProblem(G, a, k=k, tau=tau).add_constraint(GroupQuota(groups, min_count={"y": 3}, name="quota"))
    for b in LINEAR_BACKENDS:
        res = solve(prob, backend=b, max_iter=3)
        assert res.status == "infeasible" and len(res.indices) == 0
        assert "quota" in res.message


def test_linear_constraint_fallback_is_reported():
    G, a, k, tau = instance(30, 4, 6, tau_rel=2.0, seed=2)
    A = np.random.default_rng(0).random((2, 30))
    prob = SelectionProblem(G, a, k=k, tau=tau).add_constraint(LinearConstraint(A, [2.0, 2.5], "<="))
    res = solve(prob, backend="sca-exact")
    assert feasible(prob, res)
    assert "HiGHS" in res.message
    best, _ = brute_force_small(prob)
    assert res.objective <= best + 1e-9 and res.upper_bound >= best - 1e-9


def brute_force_small(prob):
    return brute_force(prob) if prob.n <= 30 else (np.inf, None)


def test_unsupported_constraint_names_backends():
    G, a, k, tau = instance(30, 4, 6, seed=2)
    prob = SelectionProblem(G, a, k=k, tau=tau).add_constraint(
        LinearConstraint(np.ones((1, 30)), [10.0], "<=", name="cap")
    )
    with pytest.raises(UnsupportedConstraintError, match="cap.*sca-exact"):
        solve(prob, backend="fw-block")
    with pytest.raises(UnsupportedConstraintError, match="pga-dykstra"):
        solve(prob, backend="pga-dykstra")


def test_aggregate_stiff_budget_with_cvxpy_backend():
    rng = np.random.default_rng(3)
    G, a, k, _ = instance(40, 4, 6, seed=3)
    Gs = rng.standard_normal((3, 40))
    lam = np.array([3.0, 2.0, 1.0])
    agg = AggregateStiffBudget(Gs, lam, tau=5.0)
    prob = SelectionProblem(G, a, k=k, tau=None).add_constraint(agg)
    with pytest.raises(UnsupportedConstraintError, match="sca-osqp"):
        solve(prob, backend="sca-exact")
    for b in ("sca-osqp", "greedy"):
        res = solve(prob, backend=b, max_iter=5)
        if res.status == "infeasible":
            assert "aggregate" in res.message
            continue
        assert feasible(prob, res)
        x = np.zeros(40)
        x[res.indices] = 1
        assert np.sum((np.sqrt(lam)[:, None] * Gs @ x) ** 2) <= 5.0 + 1e-9


class OddOnly(Constraint):
    """A user-written constraint: at most m odd indices (linear, so fast backends accept it)."""

    kind = "linear"

    def __init__(self, n, m):
        import scipy.sparse as sp

        from direct_opt.constraints import LinearRows

        self.rows = LinearRows(sp.csr_matrix((np.arange(n) % 2 == 1).astype(float)[None]), np.array([-np.inf]), np.array([float(m)]), ["odd cap"])
        self.name = "odd cap"

    def linear_rows(self, n):
        return self.rows


def test_user_written_constraint_class():
    G, a, k, tau = instance(50, 4, 10, tau_rel=2.0, seed=4)
    prob = SelectionProblem(G, a, k=k, tau=tau).add_constraint(OddOnly(50, 2))
    for b in ("sca-exact", "greedy", "sca-osqp", "frank-wolfe"):
        res = solve(prob, backend=b, max_iter=5)
        assert feasible(prob, res)
        assert (res.indices % 2 == 1).sum() <= 2


def test_concave_form_and_duality_gap():
    rng = np.random.default_rng(5)
    G = rng.standard_normal((5, 60))
    c = rng.standard_normal(60) * 3
    a = rng.random(60)
    prob = SelectionProblem(G, a, k=8, tau=2.0, c=c, form="concave")
    with pytest.raises(UnsupportedConstraintError, match="concave"):
        solve(prob, backend="sca-exact")
    ref = solve(prob, backend="sca-osqp")
    fw = solve(prob, backend="frank-wolfe", max_iter=500)
    assert ref.gap < 1e-4 * max(1, abs(ref.objective_relaxed))
    assert fw.objective_relaxed == pytest.approx(ref.objective_relaxed, rel=1e-3, abs=1e-3)
    for r in (ref, fw, solve(prob, backend="greedy")):
        assert feasible(prob, r)
        assert r.objective <= r.upper_bound + 1e-9


def test_convex_form_with_linear_term():
    G, a, k, tau = instance(12, 3, 4, tau_rel=0.8, seed=6)
    c = np.random.default_rng(6).standard_normal(12) * 5
    prob = SelectionProblem(G, a, k=k, tau=tau, c=c)
    best, _ = brute_force(prob)
    for b in ("sca-exact", "frank-wolfe", "greedy", "fw-block"):
        res = solve(prob, backend=b)
        assert feasible(prob, res)
        assert res.objective <= best + 1e-9 <= res.upper_bound + 2e-9


def test_ragged_linear_rows_are_a_dtype_error():
    """numpy raises a bare ValueError on ragged lists; the constraint names the problem instead."""
    from direct_opt.constraints import LinearConstraint
    from direct_opt.errors import DtypeError

    with pytest.raises(DtypeError, match="rectangular"):
        LinearConstraint([[1.0, 2.0], [3.0]], [1.0, 2.0])
    with pytest.raises(DtypeError, match="rectangular"):
        LinearConstraint([[1.0, 2.0]], [[1.0], [2.0, 3.0]])
