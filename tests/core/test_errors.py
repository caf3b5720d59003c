"""Every bad-input path raises a clear, documented ValueError subclass."""

import numpy as np
import pytest

from direct_opt import GradientStats, SelectionProblem, solve
from direct_opt.errors import (
    DtypeError,
    InvalidParameterError,
    NegativeCostError,
    NonFiniteError,
    ShapeMismatchError,
    UnknownNameError,
)

rng = np.random.default_rng(0)
G = rng.standard_normal((4, 10))
a = rng.random(10)


def test_shape_mismatch_between_G_and_a():
    with pytest.raises(ShapeMismatchError, match="N=10"):
        SelectionProblem(G, a[:9], k=2, tau=1.0)
    with pytest.raises(ShapeMismatchError):
        GradientStats(G_flat=G, a_stiff=a[:9])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_anywhere(bad):
    G2 = G.copy()
    G2[1, 3] = bad
    with pytest.raises(NonFiniteError, match=r"\(1, 3\)"):
        SelectionProblem(G2, a, k=2, tau=1.0)
    a2 = a.copy()
    a2[5] = bad
    with pytest.raises(NonFiniteError):
        SelectionProblem(G, a2, k=2, tau=1.0)
    with pytest.raises(NonFiniteError):
        GradientStats(G_flat=G2, a_stiff=a)


def test_negative_stiff_costs():
    a2 = a.copy()
    a2[2] = -0.1
    with pytest.raises(NegativeCostError, match=r"a\[2\]"):
        SelectionProblem(G, a2, k=2, tau=1.0)
    with pytest.raises(NegativeCostError):
        GradientStats(G_flat=G, a_stiff=a2)


@pytest.mark.parametrize("k", [0, -1, 11, 2.5, True, "3"])
def test_bad_k(k):
    with pytest.raises(InvalidParameterError):
        SelectionProblem(G, a, k=k, tau=1.0)


@pytest.mark.parametrize("tau", [-1.0, np.nan, np.inf])
def test_bad_tau(tau):
    with pytest.raises(InvalidParameterError):
        SelectionProblem(G, a, k=2, tau=tau)


@pytest.mark.parametrize("tau_rel", [0.0, -0.1, np.nan])
def test_bad_tau_rel(tau_rel):
    stats = GradientStats(G_flat=G, a_stiff=a)
    with pytest.raises(InvalidParameterError, match="tau_rel"):
        SelectionProblem.from_stats(stats, k=2, tau_rel=tau_rel)


def test_unknown_backend_lists_known():
    prob = SelectionProblem(G, a, k=2, tau=1.0)
    with pytest.raises(UnknownNameError, match="sca-exact"):
        solve(prob, backend="nope")


def test_unknown_backend_option():
    prob = SelectionProblem(G, a, k=2, tau=1.0)
    with pytest.raises(InvalidParameterError, match="prox"):
        solve(prob, backend="sca-exact", step=3)


@pytest.mark.parametrize("arr", [np.array([["a", "b"]] * 2), np.array([[1, None]], dtype=object), np.ones((2, 3), dtype=complex)])
def test_non_numeric_dtypes(arr):
    with pytest.raises(DtypeError):
        SelectionProblem(arr, np.ones(arr.shape[1]), k=1, tau=1.0)


def test_integer_dtype_is_accepted_as_float():
    prob = SelectionProblem(np.ones((2, 5), dtype=int), np.ones(5, dtype=int), k=2, tau=3)
    assert solve(prob).feasible


def test_bad_solver_settings():
    prob = SelectionProblem(G, a, k=2, tau=1.0)
    for kw in ({"max_iter": 0}, {"tol": -1.0}, {"time_limit": 0.0}):
        with pytest.raises(InvalidParameterError):
            solve(prob, **kw)


def test_errors_are_value_errors():
    from direct_opt import errors

    for name in ("InvalidInputError", "ShapeMismatchError", "NonFiniteError", "UnsupportedConstraintError", "StatsFormatError"):
        assert issubclass(getattr(errors, name), ValueError)
