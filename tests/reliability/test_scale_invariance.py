"""Class 1 of issue 17: tolerances relative to the problem, never absolute.

A problem and its copy with G multiplied by s_G > 0, and a and tau multiplied together by
s_a > 0, are the same selection problem: every backend must pick the same samples, report
the same feasibility and the same certified ratio.  And a violated constraint is never
called satisfied, however small its coefficients.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from direct_opt import LinearConstraint, SelectionProblem, available_backends, solve
from direct_opt.tolerance import RTOL, excess, fits

N, R, K = 24, 4, 5
# f = ||G x||^2 scales with s_G^2 and a_i w_i with s_a: the scales keep both normal float64 numbers
# (powers of two: the rescaled copy is exact, so the answer must be identical bit for bit)
_g_scales = st.sampled_from([2.0**e for e in (-330, -100, -40, -27, -10, -1, 0, 3, 13, 40, 100, 330)])
_a_scales = st.sampled_from([2.0**e for e in (-600, -100, -40, -27, -1, 0, 13, 100, 600)])


def _problem(seed: int, s_g: float, s_a: float, tau_rel: float) -> SelectionProblem:
    rng = np.random.default_rng(seed)
    G, a = rng.standard_normal((R, N)), rng.random(N) + 0.05
    tau = tau_rel * float(np.sort(a)[:K].sum())  # tau_rel >= 1: feasible, near 1: the budget binds
    return SelectionProblem(G * s_g, a * s_a, K, tau=tau * s_a)


@pytest.mark.parametrize("backend", available_backends())
@settings(max_examples=6)
@given(seed=st.integers(0, 10**6), s_g=_g_scales, s_a=_a_scales, tau_rel=st.sampled_from([1.0, 1.02, 1.3, 3.0]))
def test_rescaled_problem_gives_the_same_selection_and_certificate(backend, seed, s_g, s_a, tau_rel):
    base = solve(_problem(seed, 1.0, 1.0, tau_rel), backend=backend)
    scaled = solve(_problem(seed, s_g, s_a, tau_rel), backend=backend)
    assert scaled.status == base.status and scaled.feasible == base.feasible
    assert list(scaled.indices) == list(base.indices)
    if base.certified_ratio is None:
        assert scaled.certified_ratio is None
    else:
        assert scaled.certified_ratio == pytest.approx(base.certified_ratio, rel=1e-6)


@settings(max_examples=25)
@given(seed=st.integers(0, 10**6), s_a=st.sampled_from([1e-8, 1e-9, 1e-12, 1e-20, 1e-300]),
       over=st.sampled_from([1 + 1e-6, 1.01, 2.0, 14.8]))
def test_tiny_costs_never_make_a_violated_budget_feasible(seed, s_a, over):
    rng = np.random.default_rng(seed)
    a = (rng.random(N) + 0.05) * s_a
    x = np.zeros(N)
    x[rng.choice(N, K, replace=False)] = 1.0
    P = SelectionProblem(rng.standard_normal((R, N)), a, K, tau=float(a @ x) / over)
    assert not P.is_feasible(x)
    assert P.relative_violations(x)["budget"] > RTOL
    # the same through a user linear row with tiny coefficients
    P2 = SelectionProblem(rng.standard_normal((R, N)), np.ones(N), K)
    P2.add_constraint(LinearConstraint(a, float(a @ x) / over, "<="))
    assert not P2.is_feasible(x)
    for backend in ("sca-exact", "greedy"):  # every returned selection honours the budget
        res = solve(P, backend=backend)
        if res.feasible:
            assert float(a[res.indices].sum()) <= P.tau * (1 + RTOL)


def test_the_tolerance_is_relative_to_the_row():
    assert fits(1.0 + 1e-12, 1.0) and not fits(1.0 + 1e-6, 1.0)
    assert fits((1.0 + 1e-12) * 1e-30, 1e-30) and not fits((1.0 + 1e-6) * 1e-30, 1e-30)
    assert not fits(1e-12, 0.0) and fits(0.0, 0.0)  # a positive sum never meets a zero bound
    assert fits(-5.0 + 1e-12, -5.0, scale=10.0) and fits(np.inf * -1, 3.0) and fits(2.0, np.inf)
    assert excess(2.0, 1.0) == pytest.approx(0.5) and excess(1.0, 2.0) == 0.0


def test_r_zero_is_a_clean_result_for_every_backend():
    a = np.linspace(0.1, 1.0, N)
    for backend in available_backends():
        res = solve(SelectionProblem(np.zeros((0, N)), a, K, tau=float(a.sum())), backend=backend)
        assert res.feasible and len(res.indices) == K and res.objective == 0.0
