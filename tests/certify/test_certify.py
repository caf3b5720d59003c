"""Certificates, the exact backend, the portfolio, the fair paper baseline, sca-osqp's honesty
and the shared feasibility pre-check (issue 18)."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from direct_opt import LinearConstraint, SelectionProblem, available_backends, solve
from direct_opt.certificates import CERTIFY_METHODS, certify
from direct_opt.errors import InvalidParameterError
from direct_opt.instances import FAMILIES, family_instance, family_problem
from tests.core.helpers import brute_force as enumerate_opt


def feasible_family(family, n, k, tau_rel, r, seed):
    P = family_problem(family, n, k, tau_rel, r=r, seed=seed)
    if P.min_budget() > P.tau:
        P.tau = P.min_budget() * 1.05
    return P


@settings(max_examples=12)
@given(family=st.sampled_from(FAMILIES), tau_rel=st.sampled_from([0.1, 0.3, 1.0]), seed=st.integers(0, 10_000),
       n=st.integers(6, 10), k=st.integers(2, 4))
def test_every_bound_is_at_least_the_enumerated_optimum(family, tau_rel, seed, n, k):
    P = feasible_family(family, n, min(k, n - 1), tau_rel, 4, seed)
    opt, _ = enumerate_opt(P)
    for method in ("cheap", "subspace", "rlt", "sdp"):
        ub, info = certify(P, method)
        assert ub >= opt * (1 - 1e-9), (method, ub, opt, info)


def test_bounds_valid_with_fixings_and_rows():
    G, a = family_instance("clustered", 10, 4, seed=3)
    from direct_opt.constraints import MustInclude

    P = SelectionProblem(G, a, 4, 0.5 * a.mean() * 4 + a[0]).add_constraint(MustInclude([0]))
    P.add_constraint(LinearConstraint(np.r_[np.ones(5), np.zeros(5)][None, :], [2], "<="))
    opt, _ = enumerate_opt(P)
    for method in ("cheap", "subspace", "rlt", "sdp"):
        assert certify(P, method)[0] >= opt * (1 - 1e-9), method


@pytest.mark.parametrize("scale", [1e-30, 1e20])
def test_tight_bounds_are_scale_invariant(scale):
    P = feasible_family("heavy", 12, 3, 0.3, 4, 1)
    Q = SelectionProblem(P.G * scale, P.a, P.k, P.tau)
    for method in ("subspace", "rlt"):
        r1 = solve(P, "sca-exact", certify=method).certified_ratio
        r2 = solve(Q, "sca-exact", certify=method).certified_ratio
        assert r2 == pytest.approx(r1, rel=1e-6), method


def test_rlt_and_sdp_certify_small_instances_nearly_exactly():
    ratios = []
    for fam, seed in itertools.product(FAMILIES, range(2)):
        P = feasible_family(fam, 12, 3, 0.3, 4, seed)
        opt, _ = enumerate_opt(P)
        rlt, sdp = opt / certify(P, "rlt")[0], opt / certify(P, "sdp")[0]
        ratios.append(rlt)
        assert sdp >= rlt - 1e-3  # Shor + RLT is at least as tight as RLT (up to solver accuracy)
    assert np.median(ratios) >= 0.95


@pytest.mark.parametrize("family", FAMILIES)
def test_exact_equals_enumeration(family):
    for n, k, seed in ((12, 4, 0), (40, 3, 1)):
        P = feasible_family(family, n, k, 0.3, 5, seed)
        opt, _ = enumerate_opt(P)
        res = solve(P, "exact")
        assert res.status == "converged" and res.success
        assert res.objective == pytest.approx(opt, rel=1e-9)
        assert res.upper_bound >= opt * (1 - 1e-9)
        assert res.certified_ratio == pytest.approx(1.0, abs=1e-6)


def test_exact_concave_form_and_time_limit():
    G, a = family_instance("gaussian", 10, 4, seed=2)
    c = np.abs(G).sum(0)
    P = SelectionProblem(G, a, 3, 2 * a.mean() * 3, c=c, form="concave")
    opt, _ = enumerate_opt(P)
    assert solve(P, "exact").objective == pytest.approx(opt, rel=1e-9)
    big = family_problem("clustered", 120, 24, 0.3, r=8, seed=0)
    t = time.monotonic()
    res = solve(big, "exact", time_limit=1.0)
    assert time.monotonic() - t < 30 and res.success
    assert res.status in ("converged", "time_limit") and "gap_rel" in res.info


def test_exact_above_max_n_returns_the_incumbent_and_says_it_is_not_proven():
    P = family_problem("gaussian", 500, 50, 1.0)
    res = solve(P, "exact")
    assert res.success and res.status == "stalled" and res.info["proven"] is False
    assert "NOT proven" in res.message
    assert res.objective >= solve(P, "sca-exact").objective


@pytest.mark.parametrize("seed", range(3))
def test_portfolio_never_loses_to_its_members(seed):
    for fam in FAMILIES:
        P = feasible_family(fam, 30, 6, 0.3, 6, seed)
        auto = solve(P, "auto")
        for member, opts in (("sca-exact", {}), ("sca-exact", {"init": "center"}), ("greedy", {}), ("exact", {})):
            assert auto.objective >= solve(P, member, **opts).objective * (1 - 1e-12)
        assert {m["member"] for m in auto.info["members"]} == {"sca-exact", "greedy", "exact"}


def test_pga_dykstra_returns_the_papers_top_k_when_feasible_and_records_repairs():
    seen = set()
    for fam, tau_rel, seed in itertools.product(FAMILIES, (0.1, 1.0), range(2)):
        P = feasible_family(fam, 60, 12, tau_rel, 6, seed)
        res = solve(P, "pga-dykstra", max_iter=3)
        top = np.sort(np.argsort(-res.w, kind="stable")[: P.k])
        info = res.info
        assert info["paper_topk_objective"] == pytest.approx(P.selection_objective(top))
        if info["paper_topk_feasible"]:
            np.testing.assert_array_equal(res.indices, top)  # the paper's own answer, not re-rounded
            assert not info["repaired"] and "own top-K" in res.message
        else:
            assert info["repaired"] and "repaired" in res.message and res.success
            assert info["topk_budget_violation"] > 0
        seen.add(info["paper_topk_feasible"])
    assert seen == {True, False}


def test_sca_osqp_inaccurate_status_is_not_infeasibility(monkeypatch):
    import osqp

    real = osqp.OSQP.solve

    def flaky(self, *args, **kw):
        res = real(self, *args, **kw)
        res.info.status = "primal infeasible inaccurate"
        return res

    monkeypatch.setattr(osqp.OSQP, "solve", flaky)
    P = feasible_family("heavy", 80, 10, 1.0, 6, 0)
    res = solve(P, "sca-osqp", max_iter=3)
    assert res.success and res.feasible
    assert "re-solved by Clarabel" in res.message


def test_infeasibility_message_names_the_constraints():
    P = feasible_family("gaussian", 20, 4, 1.0, 4, 0)
    P.add_constraint(LinearConstraint(np.r_[1.0, 1.0, np.zeros(18)][None, :], [2], ">=", name="first-two"))
    P.add_constraint(LinearConstraint(np.r_[1.0, 1.0, np.zeros(18)][None, :], [1], "<=", name="at-most-one"))
    res = solve(P, "sca-osqp")
    assert res.status == "infeasible"
    assert "[]" not in res.message and "first-two" in res.message and "at-most-one" in res.message


@pytest.mark.parametrize("backend", [b for b in available_backends() if not b.startswith("test-")])
def test_every_backend_is_fast_on_infeasible_input(backend):
    G, a = family_instance("heavy", 3000, 8, seed=0)
    P = SelectionProblem(G, a, 300, 0.0)
    P.tau = 0.99 * P.min_budget()
    t = time.process_time()
    res = solve(P, backend)
    assert res.status == "infeasible" and "smallest feasible" in res.message
    assert time.process_time() - t < 0.5


def test_certify_option_is_checked_before_work_and_recorded():
    P = feasible_family("gaussian", 20, 4, 1.0, 4, 0)
    with pytest.raises(InvalidParameterError, match="certify"):
        solve(P, "greedy", certify="nope")
    for method in CERTIFY_METHODS:
        res = solve(P, "sca-exact", certify=method)
        assert res.info["certificate"]["method"] in CERTIFY_METHODS and res.upper_bound >= res.objective


def test_greedy_lazy_gains_match_exhaustive_scoring(monkeypatch):
    from direct_opt import rounding

    class Exhaustive(rounding._LazyGains):
        def best(self, cand):  # score every candidate exactly, no pruning
            vals = self._exact(cand)
            return int(cand[vals == vals.max()].min())

    for fam in FAMILIES:
        P = feasible_family(fam, 400, 40, 0.3, 8, 0)
        lazy = solve(P, "greedy", local_search=False, certify="cheap")
        monkeypatch.setattr(rounding, "_LazyGains", Exhaustive)
        full = solve(P, "greedy", local_search=False, certify="cheap")
        monkeypatch.undo()
        np.testing.assert_array_equal(lazy.indices, full.indices)
