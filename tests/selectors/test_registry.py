"""The registry: every selector's contract, determinism, errors, user registration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from direct_opt.errors import InvalidInputError, InvalidParameterError, ShapeMismatchError, UnknownNameError
from direct_opt.selectors import (
    DEFAULT_SELECTOR, Pick, Selection, available_selectors, describe_selectors, register_selector, select,
    top_k, unregister_selector,
)

from .selectors_testlib import TinyReg, make_pairs, mse, random_stats

BUILTIN = {"random", "direct", "less", "grad-norm", "loss", "excess-loss", "taylor", "direct-aligned", "less-diverse",
           "taylor-fisher"}
K = 7


def _kwargs(name, stats):
    """Arguments that satisfy selector ``name`` on the 40-sample fixture pool."""
    if name == "excess-loss":
        return dict(model=TinyReg(0), loss_fn=mse, pool=make_pairs(stats.n, 3), reference=TinyReg(1))
    if name == "direct":
        return dict(stats=stats, tau_rel=1.0)
    return dict(stats=stats)


def test_builtins_registered_and_default():
    assert BUILTIN <= set(available_selectors())
    assert DEFAULT_SELECTOR in available_selectors()
    assert set(describe_selectors()["taylor"]["options"]) == {"eta", "normalize"}


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_contract_and_determinism(name, stats):
    a = select(name, k=K, **_kwargs(name, stats))
    b = select(name, k=K, **_kwargs(name, stats))
    assert isinstance(a, Selection) and a.name == name
    assert a.indices.dtype == np.int64 and a.indices.shape == (K,)
    assert np.all(np.diff(a.indices) > 0) and 0 <= a.indices[0] and a.indices[-1] < stats.n
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.time_s >= 0
    json.dumps(a.diagnostics)
    json.dumps(a.to_dict())
    if a.scores is not None:
        assert a.scores.shape == (stats.n,)


def test_random_depends_on_seed_and_matches_rng(stats):
    a, b = select("random", k=K, stats=stats, seed=0), select("random", k=K, stats=stats, seed=1)
    assert not np.array_equal(a.indices, b.indices)
    ref = np.sort(np.random.default_rng(0).choice(stats.n, K, replace=False))
    np.testing.assert_array_equal(a.indices, ref)
    np.testing.assert_array_equal(select("random", k=K, n=stats.n).indices, ref)
    np.testing.assert_array_equal(select("random", k=K, pool=torch.zeros(stats.n, 2)).indices, ref)


def test_k_equals_n_selects_everything(stats):
    for name in ("random", "less", "grad-norm", "loss", "taylor"):
        np.testing.assert_array_equal(select(name, k=stats.n, stats=stats).indices, np.arange(stats.n))


def test_top_k_ties_go_to_lower_index():
    np.testing.assert_array_equal(top_k(np.array([1.0, 2.0, 2.0, 2.0, 0.0]), 2), [1, 2])
    np.testing.assert_array_equal(top_k(np.zeros(6), 3), [0, 1, 2])


# ------------------------------------------------------------------------- errors


def test_unknown_name_lists_known():
    with pytest.raises(UnknownNameError, match="known selectors.*less"):
        select("nope", k=1, n=3)


@pytest.mark.parametrize("k", [0, -2, 41])
def test_k_out_of_range(stats, k):
    with pytest.raises(InvalidParameterError, match=f"k={k}"):
        select("less", k=k, stats=stats)
    assert issubclass(InvalidParameterError, ValueError)


def test_k_not_integer_and_bad_option(stats):
    with pytest.raises(InvalidParameterError, match="integer"):
        select("less", k=2.0, stats=stats)
    with pytest.raises(InvalidParameterError, match="no option"):
        select("less", k=2, stats=stats, eta=1.0)
    with pytest.raises(InvalidParameterError, match="no option"):
        select("direct", k=2, stats=stats, tau_rel=1.0, not_an_option=3)


def test_pool_size_mismatch(stats):
    with pytest.raises(ShapeMismatchError, match="disagree"):
        select("random", k=2, stats=stats, pool=torch.zeros(5, 1))


@pytest.mark.parametrize(
    "name, match",
    [
        ("random", "pool size"),
        ("direct", "needs stats"),
        ("less", "needs stats"),
        ("grad-norm", "needs stats with grad_norms"),
        ("loss", "needs stats with losses, or model, loss_fn and pool"),
        ("excess-loss", "needs model, loss_fn, pool and reference; got nothing"),
        ("taylor", "needs stats"),
    ],
)
def test_missing_inputs(name, match):
    with pytest.raises(InvalidInputError, match=match):
        select(name, k=2)


def test_missing_inputs_with_partial_inputs(stats):
    with pytest.raises(InvalidInputError, match="selector 'excess-loss' needs model, loss_fn, pool and reference; "
                                                "got stats only"):
        select("excess-loss", k=2, stats=stats)
    with pytest.raises(InvalidInputError, match="got model, loss_fn, pool only"):
        select("excess-loss", k=2, model=TinyReg(0), loss_fn=mse, pool=make_pairs(5, 0))
    bare, _, _ = random_stats(losses=None, grad_norms=None)
    bare.G_stiff = None
    for name, opts in (("less", {"variant": "mean-gradient"}), ("taylor", {})):
        with pytest.raises(InvalidInputError, match="store_stiff=True"):
            select(name, k=2, stats=bare, **opts)
    with pytest.raises(InvalidInputError, match="grad_norms"):
        select("grad-norm", k=2, stats=bare)
    with pytest.raises(InvalidInputError, match="losses"):
        select("loss", k=2, stats=bare)
    with pytest.raises(InvalidInputError, match="needs stats"):
        select("direct", k=2, pool=make_pairs(5, 0), model=TinyReg(0))


# ---------------------------------------------------------------- user selectors


def test_register_a_new_selector(stats):
    @register_selector("test-small-loss")
    def small_loss(inp, *, power: float = 1.0):
        """Top-K of -loss**power."""
        if inp.stats is None or inp.stats.losses is None:
            raise inp.missing_error("stats with losses")
        scores = -np.asarray(inp.stats.losses, float) ** power
        return Pick(top_k(scores, inp.k), {"power": power}, scores)

    try:
        assert "test-small-loss" in available_selectors()
        sel = select("test-small-loss", k=3, stats=stats, power=2.0)
        np.testing.assert_array_equal(sel.indices, np.sort(np.argsort(stats.losses)[:3]))
        assert sel.diagnostics["power"] == 2.0
        with pytest.raises(InvalidParameterError, match="already registered"):
            register_selector("test-small-loss", lambda inp: None)
        with pytest.raises(InvalidInputError, match="needs stats with losses; got nothing"):
            select("test-small-loss", k=1, n=4)
    finally:
        unregister_selector("test-small-loss")
    assert "test-small-loss" not in available_selectors()


def test_bad_selector_output_is_caught(stats):
    register_selector("test-bad", lambda inp: Pick(np.array([0, 0, 1])))
    try:
        with pytest.raises(InvalidInputError, match="distinct"):
            select("test-bad", k=3, stats=stats)
    finally:
        unregister_selector("test-bad")
