"""``direct-aligned``: reductions to its parents (β = 0 → LESS under the budget, large β → direct)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from direct_opt.constraints import MustExclude
from direct_opt.errors import InvalidInputError, InvalidParameterError
from direct_opt.selectors import select

from .selectors_testlib import random_stats


def test_beta_zero_with_a_loose_budget_is_less_top_k():
    st, _, _ = random_stats(n=60, seed=1)
    got = select("direct-aligned", k=8, stats=st, beta=0.0, tau=1e9)
    np.testing.assert_array_equal(got.indices, select("less", k=8, stats=st).indices)
    np.testing.assert_array_equal(got.scores, select("less", k=8, stats=st).scores)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beta_zero_is_the_best_less_subset_under_the_budget(seed):
    st, _, _ = random_stats(n=12, k=6, k_star=2, seed=seed)
    c, a = select("less", k=3, stats=st).scores, np.asarray(st.a_stiff, np.float64)
    tau = float(np.sort(a)[:3].sum() * 1.3)  # binding: LESS's own top-3 is over budget
    feasible = [S for S in itertools.combinations(range(12), 3) if a[list(S)].sum() <= tau]
    best = max(feasible, key=lambda S: c[list(S)].sum())
    assert a[select("less", k=3, stats=st).indices].sum() > tau
    got = select("direct-aligned", k=3, stats=st, beta=0.0, tau=tau, backend="exact")
    np.testing.assert_array_equal(got.indices, best)
    assert got.diagnostics["budget_used"] <= tau


def test_large_beta_is_direct_and_options_are_honoured():
    st, _, _ = random_stats(n=60, seed=1)
    np.testing.assert_array_equal(select("direct-aligned", k=8, stats=st, beta=1e9, tau=1e9).indices,
                                  select("direct", k=8, stats=st, tau=1e9).indices)
    a = select("direct-aligned", k=8, stats=st, seed=3)
    b = select("direct-aligned", k=8, stats=st, seed=3)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.diagnostics["budget_used"] <= a.diagnostics["tau"] * (1 + 1e-9)
    banned = [int(i) for i in a.indices[:3]]
    c = select("direct-aligned", k=8, stats=st, constraints=[MustExclude(banned)])
    assert not set(banned) & set(c.indices.tolist())
    sgd = select("direct-aligned", k=8, stats=st, beta=0.0, tau=1e9, features="sgd")
    np.testing.assert_array_equal(sgd.indices, select("less", k=8, stats=st, features="sgd").indices)


def test_errors():
    st, _, _ = random_stats(n=20, seed=2)
    with pytest.raises(InvalidParameterError, match="beta=-1"):
        select("direct-aligned", k=3, stats=st, beta=-1.0)
    with pytest.raises(InvalidInputError, match="needs stats"):
        select("direct-aligned", k=3, n=20)
    st.adam_coords = None
    with pytest.raises(InvalidInputError, match="optimizer_state"):
        select("direct-aligned", k=3, stats=st)


# ------------------------------------------------------------------ alignment="taylor"
def test_taylor_alignment_is_the_one_sample_taylor_gain_computed_on_the_sketches():
    st, z_pool, z_val = random_stats(n=50, seed=4)
    rng = np.random.default_rng(4)  # random_stats drew z_adam after z_pool, z_val: rebuild it the same way
    rng.standard_normal((50, 10)), rng.standard_normal((6, 10)), rng.random(50), rng.random(50)
    z_adam = rng.standard_normal((50, 10))
    eta = 0.05
    g, F = z_val.mean(0), z_val.T @ z_val / z_val.shape[0]
    gains = eta * z_adam @ g - 0.5 * eta**2 * np.einsum("ij,jk,ik->i", z_adam, F, z_adam)
    got = select("direct-aligned", k=7, stats=st, beta=0.0, tau=1e9, alignment="taylor", eta=eta)
    np.testing.assert_allclose(got.scores, gains, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(got.indices, np.sort(np.argsort(-gains, kind="stable")[:7]))
    sgd = select("direct-aligned", k=7, stats=st, beta=0.0, tau=1e9, alignment="taylor", eta=eta, features="sgd")
    plain = eta * z_pool @ g - 0.5 * eta**2 * np.einsum("ij,jk,ik->i", z_pool, F, z_pool)
    np.testing.assert_allclose(sgd.scores, plain, rtol=1e-9, atol=1e-12)


def test_alignment_option_errors():
    st, _, _ = random_stats(n=20, seed=2)
    with pytest.raises(InvalidParameterError, match="alignment='bogus'"):
        select("direct-aligned", k=3, stats=st, alignment="bogus")
    with pytest.raises(InvalidParameterError, match="eta is an option of alignment='taylor'"):
        select("direct-aligned", k=3, stats=st, eta=0.1)
    with pytest.raises(InvalidParameterError, match="options of alignment='less'"):
        select("direct-aligned", k=3, stats=st, alignment="taylor", group_max=False)


# ------------------------------------------------------------------------ less-diverse
def test_less_diverse_with_lam_zero_is_less_top_k():
    st, _, _ = random_stats(n=60, seed=1)
    got = select("less-diverse", k=8, stats=st, lam=0.0)
    np.testing.assert_array_equal(got.indices, select("less", k=8, stats=st).indices)
    assert got.diagnostics["tau"] is None  # no stiff budget unless asked for


@pytest.mark.parametrize("seed", [0, 1])
def test_less_diverse_maximises_the_penalised_objective_and_certifies_it(seed):
    st, _, _ = random_stats(n=11, k=6, k_star=2, seed=seed)
    c = select("less", k=3, stats=st).scores
    g = np.asarray(st.G_flat, np.float64)
    m_g = float((g**2).sum(0).mean())
    lam = 2.0

    def f(S):
        w = np.zeros(11)
        w[list(S)] = 1.0
        return c @ w / np.abs(c).mean() - 0.5 * lam * np.sum((g @ w) ** 2) / m_g

    best = max(itertools.combinations(range(11), 3), key=f)
    exact = select("less-diverse", k=3, stats=st, lam=lam, backend="exact")
    np.testing.assert_array_equal(exact.indices, np.sort(best))
    default = select("less-diverse", k=3, stats=st, lam=lam)
    d = default.diagnostics
    assert d["objective"] == pytest.approx(f(default.indices))
    assert d["objective"] <= f(best) + 1e-9 <= d["upper_bound"] + 1e-6  # a valid duality-gap bound
    if d["objective"] > 0:  # a ratio is defined for a positive objective only
        assert d["certified_ratio"] == pytest.approx(min(1.0, d["objective"] / d["upper_bound"]))
    else:
        assert d["certified_ratio"] is None


def test_less_diverse_penalises_redundant_samples():
    st, z_pool, z_val = random_stats(n=40, seed=5)
    rng = np.random.default_rng(5)
    rng.standard_normal((40, 10)), rng.standard_normal((6, 10)), rng.random(40), rng.random(40)
    z_adam = rng.standard_normal((40, 10))
    top = int(np.argmax(select("less", k=1, stats=st).scores))
    dup = [i for i in range(40) if i != top][:5]  # five exact copies of LESS's favourite sample
    z_pool[dup], z_adam[dup] = z_pool[top], z_adam[top]
    from .selectors_testlib import stats_from_sketches

    st = stats_from_sketches(z_pool, z_val, 3, z_adam)
    copies = set(dup) | {top}
    assert copies <= set(select("less", k=8, stats=st).indices.tolist())  # LESS takes all six copies
    diverse = select("less-diverse", k=8, stats=st, lam=5.0)
    assert len(copies & set(diverse.indices.tolist())) < 6
    again = select("less-diverse", k=8, stats=st, lam=5.0)
    np.testing.assert_array_equal(diverse.indices, again.indices)


def test_less_diverse_honours_constraints_and_budget():
    st, _, _ = random_stats(n=60, seed=3)
    base = select("less-diverse", k=8, stats=st)
    banned = [int(i) for i in base.indices[:4]]
    got = select("less-diverse", k=8, stats=st, constraints=[MustExclude(banned)], budget_frac=0.3)
    assert len(set(got.indices.tolist())) == 8 and not set(banned) & set(got.indices.tolist())
    assert got.diagnostics["budget_used"] <= got.diagnostics["tau"] * (1 + 1e-9)
    with pytest.raises(InvalidParameterError, match="lam=-1"):
        select("less-diverse", k=3, stats=st, lam=-1.0)
    st.adam_coords = None
    with pytest.raises(InvalidInputError, match="optimizer_state"):
        select("less-diverse", k=3, stats=st)
