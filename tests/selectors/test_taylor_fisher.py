"""``taylor-fisher``: GREATS-style Taylor selection with the Adam step and the sketched Fisher."""

from __future__ import annotations

import numpy as np
import pytest

from direct_opt.errors import InvalidInputError, InvalidParameterError
from direct_opt.selectors import select, taylor_gain

from .selectors_testlib import random_stats


def _adam_sketches(n: int, seed: int) -> np.ndarray:
    """The z_adam (N, 10) that random_stats(n, seed=seed) drew."""
    rng = np.random.default_rng(seed)
    rng.standard_normal((n, 10)), rng.standard_normal((6, 10)), rng.random(n), rng.random(n)
    return rng.standard_normal((n, 10))


def test_sgd_step_is_exactly_taylor():
    st, _, _ = random_stats(n=50, seed=0)
    a = select("taylor-fisher", k=6, stats=st, step="sgd", eta=0.2)
    b = select("taylor", k=6, stats=st, eta=0.2)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    assert a.diagnostics["predicted_decrease"] == pytest.approx(b.diagnostics["predicted_decrease"])


@pytest.mark.parametrize("seed", [1, 2])
def test_adam_step_gain_matches_the_formula_on_the_sketches(seed):
    st, _, z_val = random_stats(n=30, seed=seed)
    z_adam = _adam_sketches(30, seed)
    eta, k = 0.3, 5
    F, g = z_val.T @ z_val / z_val.shape[0], z_val.mean(0)
    got = select("taylor-fisher", k=k, stats=st, eta=eta)
    # the predicted decrease of the chosen set, recomputed in sketch space (V is a rotation)
    want = taylor_gain(z_adam[got.indices].T, g, F, eta, normalize="mean")
    assert got.diagnostics["predicted_decrease"] == pytest.approx(want, rel=1e-9)
    # greedy: the first pick is the best single sample, each next pick the best marginal gain
    order = got.diagnostics["pick_order_head"]
    chosen: list[int] = []
    for j in order:
        cand = [i for i in range(30) if i not in chosen]
        marg = [taylor_gain(z_adam[chosen + [i]].T, g, F, eta * (len(chosen) + 1) / k, "mean") for i in cand]
        assert cand[int(np.argmax(marg))] == j
        chosen.append(j)


def test_missing_adam_state_names_the_switches():
    st, _, _ = random_stats(n=20, seed=0)
    st.adam_coords = None
    with pytest.raises(InvalidInputError, match="step='sgd'") as exc:
        select("taylor-fisher", k=3, stats=st)
    assert "optimizer_state" in str(exc.value)
    with pytest.raises(InvalidParameterError, match="step='momentum'"):
        select("taylor-fisher", k=3, stats=random_stats(n=20)[0], step="momentum")


def test_with_constraints_it_is_the_concave_program_and_honours_them():
    from direct_opt.constraints import MustExclude

    st, _, z_val = random_stats(n=40, seed=3)
    z_adam = _adam_sketches(40, 3)
    eta, k = 0.3, 6
    F, g = z_val.T @ z_val / z_val.shape[0], z_val.mean(0)
    free = select("taylor-fisher", k=k, stats=st, eta=eta)
    banned = [int(i) for i in free.indices[:2]]
    got = select("taylor-fisher", k=k, stats=st, eta=eta, constraints=[MustExclude(banned)])
    assert len(set(got.indices.tolist())) == k and not set(banned) & set(got.indices.tolist())
    # the program's objective is the Taylor decrease of the chosen set
    assert got.diagnostics["objective"] == pytest.approx(taylor_gain(z_adam[got.indices].T, g, F, eta, "mean"))
    assert got.diagnostics["predicted_decrease"] == got.diagnostics["objective"]
    # same objective without constraints: greedy + 1-swap local search is never worse than GREATS's greedy
    prog = select("taylor-fisher", k=k, stats=st, eta=eta, backend="greedy")
    assert prog.diagnostics["objective"] >= free.diagnostics["predicted_decrease"] - 1e-12
    with pytest.raises(InvalidParameterError, match="normalize='unit'"):
        select("taylor-fisher", k=k, stats=st, normalize="unit", backend="greedy")
