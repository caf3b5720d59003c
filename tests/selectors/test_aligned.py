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
