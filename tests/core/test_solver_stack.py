"""The solver stack's contracts: an injected oracle, the reduction, the operator kinds, the
general polytope's error paths, the registries of projectors and curvature."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from direct_opt import SelectionProblem, solve
from direct_opt.constraints import GroupQuota, LinearRowsConstraint, WeightBudget
from direct_opt.errors import InfeasibleProblemError, InvalidParameterError, SolverError
from direct_opt.linop import (ColumnOperator, HostOperator, HostToDeviceOperator, ReducedOperator, StreamedOperator,
                              TorchOperator, make_operator)
from direct_opt.oracle import DirectPolytope, GeneralPolytope, Oracle, make_oracle
from direct_opt.reduction import LOCAL, Reduction, top_k_mask

from .helpers import instance


class CountingOracle:
    """An oracle of the caller's own: the structured one, counting its LMO calls."""

    kind, message = "counting", "a counting oracle"
    capabilities = frozenset({"lmo", "project"})

    def __init__(self, problem):
        self.inner, self.calls = DirectPolytope(problem.a, problem.k, problem.tau), 0

    def lmo(self, c):
        self.calls += 1
        return self.inner.lmo(c)

    def project(self, y):
        return self.inner.project(y)


def test_an_injected_oracle_is_used_and_gives_the_same_selection():
    G, a, k, tau = instance(n=300, r=8, k=30, tau_rel=0.2)
    prob = SelectionProblem(G, a, k, tau)
    ref = solve(prob, "sca-exact")
    mine = CountingOracle(prob)
    assert isinstance(mine, Oracle)
    res = solve(prob, "sca-exact", oracle=mine)
    assert mine.calls == res.iterations + 2  # the start vertex, one per iteration, the last gap
    np.testing.assert_array_equal(res.indices, ref.indices)
    assert res.upper_bound == ref.upper_bound  # the certificate builds the structured polytope itself
    assert "a counting oracle" in res.message


def test_a_structured_oracle_is_built_once_and_shared_with_the_certificate(monkeypatch):
    import direct_opt.oracle.device as device

    G, a, k, tau = instance(n=200, r=6, k=20)
    built = []
    orig = device.structured_polytope
    monkeypatch.setattr(device, "structured_polytope", lambda p: built.append(1) or orig(p))
    for backend in ("sca-exact", "frank-wolfe", "fw-block"):
        built.clear()
        solve(SelectionProblem(G, a, k, tau), backend)
        assert len(built) == 1, backend


def test_a_bad_oracle_is_a_clear_error():
    G, a, k, tau = instance()
    with pytest.raises(InvalidParameterError, match="not a direct_opt.oracle.Oracle.*lmo"):
        solve(SelectionProblem(G, a, k, tau), "sca-exact", oracle=object())


def test_fw_block_needs_an_oracle_that_restricts_to_blocks():
    G, a, k, tau = instance(n=100)
    prob = SelectionProblem(G, a, k, tau)
    with pytest.raises(InvalidParameterError, match="restrict"):
        solve(prob, "fw-block", oracle=CountingOracle(prob))


def test_local_reduction_is_the_identity_and_top_k_breaks_ties_by_index():
    x = np.arange(4.0)
    assert LOCAL.sum(x) is not x and np.array_equal(LOCAL.sum(x), x) and LOCAL.norm(x) == np.linalg.norm(x)
    s = np.round(np.random.default_rng(0).standard_normal(5000), 1)
    want = np.zeros(s.size, bool)
    want[np.lexsort((np.arange(s.size), -s))[:300]] = True
    np.testing.assert_array_equal(top_k_mask(s, 300), want)


def test_polytope_over_a_one_process_reduction_matches_the_plain_one():
    rng = np.random.default_rng(1)
    a = rng.lognormal(0.0, 1.0, 6000) ** 2
    tau = 0.1 * a.mean() * 600
    plain, reduced = DirectPolytope(a, 600, tau), DirectPolytope(a, 600, tau, reduction=Reduction())
    assert reduced.host.name == "reduced" and "project" in plain.capabilities
    for _ in range(3):
        c = rng.standard_normal(a.size)
        np.testing.assert_allclose(reduced.lmo(c), plain.lmo(c), atol=1e-9)


def test_operator_factory_picks_one_kind_per_storage(tmp_path):
    import torch

    G = np.random.default_rng(2).standard_normal((4, 50))
    np.save(tmp_path / "G.npy", G.astype(np.float16), allow_pickle=False)
    Gm = np.load(tmp_path / "G.npy", mmap_mode="r")
    ops = {HostOperator: ColumnOperator(G), StreamedOperator: ColumnOperator(Gm, block_cols=16),
           TorchOperator: ColumnOperator(torch.from_numpy(G)), HostToDeviceOperator: make_operator(Gm, 16, "cpu")}
    w = np.zeros(50)
    w[::3] = 1.0
    for kind, op in ops.items():
        assert type(op) is kind
        ref = G.astype(np.float16).astype(np.float64) if op.G.dtype in (np.float16,) else G
        np.testing.assert_allclose(op.matvec(w), ref @ w, rtol=1e-5)
        np.testing.assert_allclose(op.rmatvec(np.ones(4)), ref.sum(0), rtol=1e-5)
        np.testing.assert_allclose(op.gram(), ref @ ref.T, rtol=1e-5)
    red = ReducedOperator(ops[HostOperator], LOCAL)
    np.testing.assert_array_equal(red.matvec(w), ops[HostOperator].matvec(w))


def test_general_polytope_reports_solver_trouble_as_solver_error(monkeypatch):
    import scipy.optimize
    from scipy.optimize import OptimizeResult

    G, a, k, tau = instance(n=60)
    prob = SelectionProblem(G, a, k, tau, constraints=[WeightBudget(np.ones(60), max_total=10)])
    oracle = make_oracle(prob)
    assert isinstance(oracle, GeneralPolytope)
    monkeypatch.setattr(scipy.optimize, "linprog",
                        lambda *a, **kw: OptimizeResult(status=1, message="Iteration limit reached", x=None))
    with pytest.raises(SolverError, match="Iteration limit"):
        oracle.lmo(np.ones(60))
    monkeypatch.setattr(scipy.optimize, "linprog",
                        lambda *a, **kw: OptimizeResult(status=2, message="infeasible", x=None))
    with pytest.raises(InfeasibleProblemError):
        oracle.lmo(np.ones(60))


def test_general_polytope_sets_up_osqp_once_without_warnings():
    G, a, k, tau = instance(n=80, k=8, tau_rel=0.5)
    labels = np.arange(80) % 3
    prob = SelectionProblem(G, a, k, tau, constraints=[GroupQuota(labels, max_count={0: 3})])
    oracle = make_oracle(prob)
    rng = np.random.default_rng(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ys = [rng.standard_normal(80) for _ in range(3)]
        got = [oracle.project(y) for y in ys]
        solver = oracle._osqp
        got.append(oracle.project(ys[0]))
    assert oracle._osqp is solver
    for y, w in zip(ys, got):
        fresh = GeneralPolytope(prob).project(y)
        np.testing.assert_allclose(w, fresh, atol=1e-6)
        assert abs(w.sum() - k) < 1e-6 and w[labels == 0].sum() <= 3 + 1e-6
    np.testing.assert_allclose(got[3], got[0], atol=1e-6)


def test_quota_and_weight_budget_have_the_linear_fields():
    q = GroupQuota(np.array(["a", "b", "a"]), min_count={"a": 1}, max_count={"b": 1})
    wb = WeightBudget([1.0, 2.0, 3.0], max_total=4.0)
    for con in (q, wb):
        assert isinstance(con, LinearRowsConstraint) and con.kind == "linear"
        rows = con.linear_rows(3)
        assert rows.A.shape == (len(con.row_names), 3) and rows.lo.shape == rows.hi.shape == (rows.A.shape[0],)


def test_sharded_solve_on_one_rank_runs_the_single_process_stack():
    from direct_opt.distributed import Comm, ShardedProblem, solve_sharded

    G, a, k, tau = instance(n=400, r=8, k=40, tau_rel=0.2)
    ref = solve(SelectionProblem(G, a, k, tau), "sca-exact")
    res = solve_sharded(ShardedProblem.from_arrays(G, a, k, tau, Comm()))
    np.testing.assert_array_equal(res.indices, ref.indices)
    assert res.iterations == ref.iterations and res.gap == pytest.approx(ref.gap, rel=1e-12, abs=1e-12)
    assert res.objective == pytest.approx(ref.objective, rel=1e-12)
    assert res.upper_bound == pytest.approx(ref.upper_bound, rel=1e-12)
    assert [h["objective"] for h in res.history] == pytest.approx([h["objective"] for h in ref.history], rel=1e-12)
