"""Sharded sca-exact: serial parity of the distributed oracle, and 2 gloo ranks == 1 process."""

from __future__ import annotations

import json

import numpy as np
import pytest

from direct_opt import SelectionProblem, solve
from direct_opt.distributed import Comm, ShardedProblem, dist_lmo, dist_top_k, shard_range, solve_sharded
from direct_opt.oracle import DirectPolytope

from .dist_testlib import instance, launch


def test_shard_range_covers_everything_once():
    for n, world in ((10, 3), (7, 7), (5, 8), (1000, 4)):
        parts = [shard_range(n, r, world) for r in range(world)]
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(parts[i][1] == parts[i + 1][0] for i in range(world - 1))
        assert max(e - s for s, e in parts) - min(e - s for s, e in parts) <= 1


def test_top_k_matches_sort_with_ties_to_lower_index():
    rng = np.random.default_rng(0)
    comm = Comm()
    for s in (np.round(rng.standard_normal(20000), 1), rng.standard_normal(9000), np.zeros(50)):
        for k in (1, 7, 600, s.size - 1):
            want = np.zeros(s.size, bool)
            want[np.lexsort((np.arange(s.size), -s))[:k]] = True
            np.testing.assert_array_equal(dist_top_k(s, k, comm), want)


def test_lmo_matches_structured_oracle():
    G, a, k, tau = instance()
    rng = np.random.default_rng(1)
    for _ in range(10):
        c = rng.standard_normal(a.size)
        np.testing.assert_allclose(dist_lmo(c, a, k, tau, Comm()), DirectPolytope(a, k, tau).lmo(c), atol=1e-9)


def test_serial_sharded_solve_equals_solve():
    G, a, k, tau = instance()
    ref = solve(SelectionProblem(G, a, k, tau), "sca-exact")
    res = solve_sharded(ShardedProblem.from_arrays(G, a, k, tau, Comm()))
    np.testing.assert_array_equal(res.indices, ref.indices)
    assert res.info["swaps"] == ref.info["swaps"] == 1
    assert res.objective == pytest.approx(ref.objective, rel=1e-9)
    assert res.upper_bound == pytest.approx(ref.upper_bound, rel=1e-6)


def test_sharded_rounding_is_round_selection_and_names_an_impossible_budget():
    from direct_opt.rounding import diagnose_infeasibility, round_selection

    G, a, k, tau = instance()
    w = np.random.default_rng(3).uniform(size=a.size)
    sharded, whole = ShardedProblem.from_arrays(G, a, k, tau, Comm()), SelectionProblem(G, a, k, tau)
    got, want = round_selection(sharded, w), round_selection(whole, w)
    np.testing.assert_array_equal(got.indices, want.indices)
    assert (got.message, got.swaps) == (want.message, want.swaps)
    tight = 0.5 * float(np.sort(a)[:k].sum())
    assert diagnose_infeasibility(ShardedProblem.from_arrays(G, a, k, tight, Comm())) == diagnose_infeasibility(
        SelectionProblem(G, a, k, tight))


def test_unsupported_backend_is_a_clear_error():
    G, a, k, tau = instance(200, 3)
    prob = ShardedProblem.from_arrays(G, a, k, tau, Comm())
    with pytest.raises(ValueError, match="no sharded implementation.*sca-exact"):
        solve_sharded(prob, "fw-block")
    with pytest.raises(ValueError, match="prox"):
        solve_sharded(prob, "sca-exact", prox=0.5)


def test_two_gloo_ranks_select_what_one_process_selects(tmp_path):
    G, a, k, tau = instance()
    ref = solve(SelectionProblem(G, a, k, tau), "sca-exact")
    launch(2, ["solve", str(tmp_path)])
    for rank in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f"solve_rank{rank}.npy"), ref.indices)
        info = json.loads((tmp_path / f"solve_rank{rank}.json").read_text())
        assert info["feasible"] and info["swaps"] == ref.info["swaps"]
        assert info["objective"] == pytest.approx(ref.objective, rel=1e-9)
        assert "no sharded implementation" in (tmp_path / f"unsupported_rank{rank}.txt").read_text()


def test_device_oracle_matches_structured_oracle_on_cpu_tensors():
    from direct_opt.oracle.device import TorchPolytope

    rng = np.random.default_rng(2)
    a = rng.lognormal(0.0, 0.5, 20000)
    lb, ub = np.zeros(a.size), np.ones(a.size)
    lb[:3], ub[10:20] = 1.0, 0.0
    for k in (2000, 2000.5):  # integral K on the device; fractional K falls back to numpy
        ref, dev = DirectPolytope(a, k, 0.6 * a.mean() * 2000, lb, ub), TorchPolytope(a, k, 0.6 * a.mean() * 2000, lb, ub, device="cpu")
        for _ in range(4):
            c = rng.standard_normal(a.size)
            np.testing.assert_allclose(dev.lmo(c), ref.lmo(c), atol=1e-9)


def test_solve_uses_the_device_oracle_and_selects_the_same(monkeypatch):
    """The CUDA path of make_oracle / upper_bound, exercised with CPU tensors."""
    import direct_opt.oracle.device as dev_oracle

    G, a, k, tau = instance()
    ref = solve(SelectionProblem(G, a, k, tau), "sca-exact")
    made = []

    def on_device(problem):
        made.append(dev_oracle.TorchPolytope(problem.a, problem.k, problem.tau, problem.lb, problem.ub, device="cpu"))
        return made[-1]

    monkeypatch.setattr(dev_oracle, "structured_polytope", on_device)
    res = solve(SelectionProblem(G, a, k, tau), "sca-exact", device="cpu")
    assert len(made) == 1  # built once per solve: the SCA oracle is also the certificate's outer polytope
    np.testing.assert_array_equal(res.indices, ref.indices)
    assert res.upper_bound == pytest.approx(ref.upper_bound, rel=1e-9)


def test_device_oracle_warm_started_bracket_stays_exact():
    """Successive calls start the multiplier search from the previous multiplier; whether that
    hint is close, far too small or far too large, the vertex equals the numpy oracle's."""
    from direct_opt.oracle.device import TorchPolytope

    rng = np.random.default_rng(5)
    n, k = 30000, 3000
    a = rng.lognormal(0.0, 1.0, n) ** 2
    tau = 0.1 * a.mean() * k
    ref, dev = DirectPolytope(a, k, tau), TorchPolytope(a, k, tau, device="cpu")
    c = rng.standard_normal(n) * np.sqrt(a)
    for step, scale in enumerate((1.0, 1.0001, 1.01, 30.0, 0.01, 1.0)):  # near, then far up / down
        cs = scale * c + 1e-3 * step * rng.standard_normal(n)
        np.testing.assert_allclose(dev.lmo(cs), ref.lmo(cs), atol=1e-9)
        assert dev._mu_hint > 0
