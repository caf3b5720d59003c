"""Property tests: every backend returns a feasible K-set with honest certificates."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from direct_opt import SelectionProblem, available_backends, solve

from .helpers import brute_force, instance

FAST = ["sca-exact", "frank-wolfe", "fw-block", "greedy", "random", "pga-dykstra"]
KINDS = ["gauss", "ties", "zero-cols", "dup-cols", "a-zero"]


def check_result(prob, res):
    assert res.status != "infeasible", res.message
    assert res.feasible
    idx = res.indices
    assert idx.dtype == np.int64
    assert len(idx) == prob.k == len(np.unique(idx))
    assert np.all(np.diff(idx) > 0), "indices must be sorted"
    x = np.zeros(prob.n)
    x[idx] = 1
    assert prob.is_feasible(x)
    if prob.tau is not None:
        assert prob.a[idx].sum() <= prob.tau * (1 + 1e-9) + 1e-12
    recomputed = float(np.sum(prob.G[:, idx].sum(axis=1) ** 2))
    if prob.c is not None:
        recomputed = prob.q * recomputed + float(prob.c[idx].sum())
    assert res.objective == pytest.approx(recomputed, rel=1e-9, abs=1e-9)
    if res.upper_bound is not None:
        assert res.objective <= res.upper_bound * (1 + 1e-9) + 1e-9
    if res.certified_ratio is not None:
        assert 0 <= res.certified_ratio <= 1


@settings(max_examples=20)
@given(
    n=st.integers(8, 60),
    r=st.integers(1, 8),
    kfrac=st.floats(0.05, 0.9),
    tau_rel=st.floats(0.05, 2.0),
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(KINDS),
    backend=st.sampled_from(FAST),
)
def test_every_fast_backend_returns_feasible_k_set(n, r, kfrac, tau_rel, seed, kind, backend):
    G, a, _, _ = instance(n, r, 1, seed=seed, kind=kind)
    k = max(1, int(round(kfrac * n)))
    prob = SelectionProblem(G, a, k=k, tau=tau_rel * a.mean() * k if a.mean() > 0 else 0.0)
    res = solve(prob, backend=backend, seed=seed, max_iter=5 if backend == "pga-dykstra" else 20)
    if prob.min_budget() > prob.tau:
        assert res.status == "infeasible" and len(res.indices) == 0 and "smallest feasible" in res.message
    else:
        check_result(prob, res)


@settings(max_examples=6)
@given(n=st.integers(8, 30), seed=st.integers(0, 1000), kind=st.sampled_from(KINDS))
def test_sca_osqp_feasible(n, seed, kind):
    G, a, k, tau = instance(n, 4, max(1, n // 4), seed=seed, kind=kind)
    prob = SelectionProblem(G, a, k=k, tau=tau)
    check_result(prob, solve(prob, backend="sca-osqp", max_iter=5))


@settings(max_examples=15)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(KINDS), prox=st.sampled_from([0.0, 0.5]))
def test_sca_history_nondecreasing_and_stops(seed, kind, prox):
    G, a, k, tau = instance(80, 6, 10, seed=seed, kind=kind)
    prob = SelectionProblem(G, a, k=k, tau=tau)
    res = solve(prob, backend="sca-exact", seed=seed, prox=prox)
    objs = [h["objective"] for h in res.history]
    assert all(b >= a_ - 1e-9 * max(1, abs(a_)) for a_, b in zip(objs, objs[1:]))
    assert res.iterations <= 20
    steps = [h["step"] for h in res.history]
    if res.converged:
        assert steps[-1] < 1e-4
        assert all(s >= 1e-4 for s in steps[:-1])
    else:
        assert res.iterations == 20


def test_tau_exactly_at_feasibility_edge():
    G, a, k, _ = instance(30, 5, 6, seed=3)
    tau = float(np.sort(a)[:k].sum())
    prob = SelectionProblem(G, a, k=k, tau=tau)
    for b in FAST:
        res = solve(prob, backend=b, max_iter=3)
        check_result(prob, res)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("backend", FAST + ["sca-osqp"])
def test_tiny_instances_against_brute_force(seed, backend):
    G, a, k, tau = instance(12, 3, 4, tau_rel=0.6, seed=seed)
    prob = SelectionProblem(G, a, k=k, tau=tau)
    best, _ = brute_force(prob)
    res = solve(prob, backend=backend, seed=seed, max_iter=5 if backend in ("pga-dykstra", "sca-osqp") else 20)
    check_result(prob, res)
    assert res.objective <= best + 1e-9
    assert res.upper_bound >= best - 1e-9  # the bound is valid for the integer optimum


def test_sca_exact_close_to_optimum_on_tiny_instances():
    """Not a guarantee (NP-hard), but SCA + local search should be near-optimal on tiny pools."""
    ratios = []
    for seed in range(10):
        G, a, k, tau = instance(14, 4, 4, tau_rel=0.8, seed=seed)
        prob = SelectionProblem(G, a, k=k, tau=tau)
        best, _ = brute_force(prob)
        ratios.append(solve(prob, backend="sca-exact").objective / best)
    assert np.mean(ratios) > 0.95


def test_infeasible_budget_reports_smallest_tau():
    G, a, k, _ = instance(20, 3, 5, seed=1)
    a = a + 0.1
    smallest = float(np.sort(a)[:k].sum())
    prob = SelectionProblem(G, a, k=k, tau=0.5 * smallest)
    for b in available_backends():
        res = solve(prob, backend=b)
        assert res.status == "infeasible" and not res.feasible
        assert len(res.indices) == 0
        assert "budget" in res.message and f"{smallest:.6g}" in res.message


def test_deterministic_given_seed():
    G, a, k, tau = instance(200, 8, 20, seed=5)
    prob = SelectionProblem(G, a, k=k, tau=tau)
    for b in FAST:
        r1, r2 = solve(prob, backend=b, seed=7, max_iter=3), solve(prob, backend=b, seed=7, max_iter=3)
        assert np.array_equal(r1.indices, r2.indices)


def test_random_backend_depends_on_seed():
    G, a, k, _ = instance(200, 8, 20, seed=5)
    prob = SelectionProblem(G, a, k=k, tau=None)
    assert not np.array_equal(solve(prob, backend="random", seed=1).indices, solve(prob, backend="random", seed=2).indices)


def test_sca_exact_beats_paper_baseline_on_average():
    wins = 0
    for seed in range(5):
        G, a, k, tau = instance(400, 16, 40, tau_rel=0.1, seed=seed)
        prob = SelectionProblem(G, a, k=k, tau=tau)
        wins += solve(prob, backend="sca-exact").objective >= solve(prob, backend="pga-dykstra", max_iter=3).objective
    assert wins >= 4


def test_torch_tensor_input_matches_numpy():
    torch = pytest.importorskip("torch")
    G, a, k, tau = instance(120, 6, 12, seed=2)
    prob_np = SelectionProblem(G, a, k=k, tau=tau)
    prob_t = SelectionProblem(torch.tensor(G), torch.tensor(a), k=k, tau=tau)
    r_np, r_t = solve(prob_np), solve(prob_t)
    assert np.array_equal(r_np.indices, r_t.indices)
    assert r_np.objective == pytest.approx(r_t.objective, rel=1e-9)


def test_memmap_float16_streamed_matches_in_memory(tmp_path):
    from direct_opt.linop import ColumnOperator

    G, a, k, tau = instance(500, 8, 50, seed=4)
    G16 = G.astype(np.float16)
    mm = np.lib.format.open_memmap(tmp_path / "G.npy", mode="w+", dtype=np.float16, shape=G16.shape)
    mm[:] = G16
    mm.flush()
    mm = np.load(tmp_path / "G.npy", mmap_mode="r")
    op_stream, op_mem = ColumnOperator(mm, block_cols=64), ColumnOperator(G16.astype(np.float32))
    w = np.random.default_rng(0).random(500)
    assert np.allclose(op_stream.matvec(w), op_mem.matvec(w), rtol=1e-5)
    assert np.allclose(op_stream.rmatvec(np.ones(8)), op_mem.rmatvec(np.ones(8)), rtol=1e-5)
    r1 = solve(SelectionProblem(mm, a, k=k, tau=tau))
    r2 = solve(SelectionProblem(G16.astype(np.float32), a, k=k, tau=tau))
    assert np.array_equal(r1.indices, r2.indices)


def test_inexact_subproblem_stops_with_status_stalled(monkeypatch):
    """An SCA subproblem that lowers f stops the loop: the result says 'stalled', not 'max_iter',
    keeps the last good iterate and is still a feasible, certified selection."""
    from direct_opt.oracle import make_oracle
    from direct_opt.solvers import base, sca

    class WorseStep(base.Backend):
        name = "test-worse-step"

        def relax(self, problem, ctx):
            oracle = make_oracle(problem)
            calls = []

            def sub(w, grad, v):  # one real LP step, then a step back to the (worse) centre
                calls.append(1)
                return v if len(calls) == 1 else oracle.project(np.full(problem.n, problem.k / problem.n))

            return sca.sca_loop(problem, ctx, oracle, sub)

    base.register_backend(WorseStep)
    G, a, k, tau = instance(n=60, r=5, k=6, seed=3)
    try:
        res = solve(SelectionProblem(G, a, k, tau), WorseStep.name, max_iter=20)
    finally:
        base.BACKENDS.remove(WorseStep.name)
    assert res.status == "stalled" and not res.converged and res.iterations == 1
    assert "inexact subproblem lowered f" in res.message
    assert res.feasible and len(res.indices) == k and res.objective <= res.upper_bound
