"""Hypothesis fuzzing of the public constructors and solve() (issue 6).

Whatever the input (random shapes and dtypes, NaN/Inf, empty arrays, huge/negative K and
tau, wrong types, unknown backends and options), the library either succeeds with a
result that honours its contract or raises one of the documented error types of
``direct_opt.errors`` -- never a bare numpy/scipy/Python exception.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from direct_opt import (
    AggregateStiffBudget,
    GradientStats,
    GroupQuota,
    LinearConstraint,
    MustExclude,
    MustInclude,
    SelectionProblem,
    WeightBudget,
    available_backends,
    solve,
)
from direct_opt.errors import DirectOptError

N = 12  # pool size of the valid problems the fuzzed pieces are combined with

_dtypes = st.sampled_from([np.float16, np.float32, np.float64, np.int32, np.uint8, np.bool_, np.complex64,
                           np.dtype("U3"), np.dtype("M8[s]"), np.dtype(object)])
_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def hostile_arrays(draw, ndim=None, size=N):
    """Arrays of random dtype/shape (sometimes the right ones) with NaN/Inf/huge entries, or non-arrays."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from([None, "abc", 3.5, {"a": 1}, [[1.0, 2.0], [3.0]], [], b"\x00"]))
    shape_nd = draw(st.integers(0, 3)) if ndim is None or kind == 1 else ndim
    shape = tuple(draw(st.sampled_from([0, 1, 2, size, size - 1])) for _ in range(shape_nd))
    if kind <= 3:
        dtype = draw(_dtypes)
        if dtype == np.dtype(object):
            return np.array([object()] * int(np.prod(shape)), dtype=object).reshape(shape)
        return draw(hnp.arrays(dtype, shape))
    return draw(hnp.arrays(np.float64, shape, elements=st.one_of(
        st.floats(-10, 10), _floats, st.sampled_from([1e308, -1e308, 5e-324]))))


def _valid(rng_seed: int = 0, n: int = N, r: int = 3):
    rng = np.random.default_rng(rng_seed)
    return rng.standard_normal((r, n)), rng.random(n)


_scalars = st.one_of(_floats, st.integers(-(10**30), 10**30), st.sampled_from([None, True, "3", [2], np.float32(2.0),
                                                                              np.int64(3), np.array(2.0)]))


def _check_result(problem: SelectionProblem, res) -> None:
    if res.status == "infeasible":
        assert len(res.indices) == 0 and not res.feasible and res.message.startswith("infeasible")
        return
    idx = np.asarray(res.indices)
    assert idx.dtype.kind == "i" and len(np.unique(idx)) == len(idx) == problem.k
    x = np.zeros(problem.n)
    x[idx] = 1
    assert res.feasible and problem.is_feasible(x)
    assert np.isfinite(res.objective)


@given(G=hostile_arrays(ndim=2), a=hostile_arrays(ndim=1), eig=st.one_of(st.none(), hostile_arrays(ndim=1)),
       k_star=_scalars, extra=st.one_of(st.none(), hostile_arrays(ndim=1)),
       meta=st.sampled_from([None, {}, {"g": np.arange(N)}, {"o": np.array([object()] * N)}, "x", {"r": [[1], [1, 2]]}]),
       config=st.sampled_from([None, {}, {"a": 1}, [1], "x"]))
def test_gradient_stats_raises_only_documented_errors(G, a, eig, k_star, extra, meta, config):
    try:
        s = GradientStats(G_flat=G, a_stiff=a, eigvals=eig, k_star=k_star if eig is not None else None,
                          losses=extra, metadata=meta, config=config)
    except DirectOptError:
        return
    assert s.n >= 1 and s.a_stiff.shape == (s.n,) and np.isfinite(s.G_flat).all()
    assert (s.a_stiff >= 0).all() and np.isfinite(s.a_stiff).all()


@given(G=st.one_of(hostile_arrays(ndim=2), st.just(None)), a=hostile_arrays(ndim=1), k=_scalars, tau=_scalars,
       c=st.one_of(st.none(), hostile_arrays(ndim=1)), form=st.sampled_from(["convex", "concave", "x", None, 1]),
       valid_g=st.booleans())
def test_selection_problem_raises_only_documented_errors(G, a, k, tau, c, form, valid_g):
    if valid_g:
        G, a = _valid()
    try:
        p = SelectionProblem(G, a, k, tau, c=c, form=form)
    except DirectOptError:
        return
    assert 1 <= p.k <= p.n and (p.tau is None or (np.isfinite(p.tau) and p.tau >= 0))


@given(k=_scalars, tau_rel=_scalars, tau=_scalars)
def test_from_stats_raises_only_documented_errors(k, tau_rel, tau):
    G, a = _valid()
    stats = GradientStats(G_flat=G, a_stiff=a)
    try:
        p = SelectionProblem.from_stats(stats, k=k, tau_rel=tau_rel, tau=tau)
    except DirectOptError:
        return
    assert 1 <= p.k <= p.n


_constraints = st.one_of(
    st.builds(LinearConstraint, A=hostile_arrays(), b=st.one_of(hostile_arrays(ndim=1, size=2), _scalars),
              sense=st.sampled_from(["<=", ">=", "==", "<", None])),
    st.builds(GroupQuota, labels=st.one_of(st.just(np.arange(N) % 3), hostile_arrays(ndim=1)),
              min_count=st.one_of(st.none(), st.dictionaries(st.integers(-1, 4), _scalars, max_size=2), st.just("x")),
              max_count=st.one_of(st.none(), st.dictionaries(st.integers(-1, 4), _scalars, max_size=2))),
    st.builds(WeightBudget, weights=hostile_arrays(ndim=1), max_total=_scalars, min_total=_scalars),
    st.builds(MustInclude, indices=st.one_of(st.lists(st.integers(-3, N + 3), max_size=4), hostile_arrays(ndim=1))),
    st.builds(MustExclude, indices=st.one_of(st.lists(st.integers(-3, N + 3), max_size=4), hostile_arrays(ndim=1))),
    st.builds(AggregateStiffBudget, G_stiff=hostile_arrays(ndim=2), eigvals_stiff=hostile_arrays(ndim=1), tau=_scalars),
)


@given(data=st.data())
def test_constraints_and_solve_raise_only_documented_errors(data):
    """Build a random constraint, add it to a valid problem, solve with a random backend."""
    G, a = _valid()
    problem = SelectionProblem(G, a, k=4, tau=float(a.sum()))
    try:
        con = data.draw(_constraints)
        problem.add_constraint(con)
    except DirectOptError:
        con = None
    backend = data.draw(st.sampled_from(["sca-exact", "frank-wolfe", "fw-block", "greedy", "random", "pga-dykstra", "nope"]))
    try:
        res = solve(problem, backend=backend, max_iter=3, seed=data.draw(st.integers(0, 3)))
    except DirectOptError:
        return
    _check_result(problem, res)


_option_values = st.one_of(_scalars, st.sampled_from(["vanilla", "away", "pairwise", "center", "norms", "bogus", -1, 0,
                                                      0.5, 3, 10**9, float("nan")]))


@given(backend=st.sampled_from(available_backends() + ["", "SCA-EXACT", None, 3]),
       max_iter=st.one_of(st.integers(-2, 4), _scalars), tol=_scalars, seed=_scalars,
       time_limit=st.one_of(st.none(), st.floats(-1, 5), _scalars), local_search=st.sampled_from([None, True, False, "no"]),
       options=st.dictionaries(st.sampled_from(["prox", "init", "variant", "block_size", "inner_steps", "step_size",
                                                "dykstra_iters", "dykstra_tol", "eps", "frobnicate"]),
                               _option_values, max_size=2))
def test_solve_arguments_raise_only_documented_errors(backend, max_iter, tol, seed, time_limit, local_search, options):
    G, a = _valid(1)
    problem = SelectionProblem(G, a, k=3, tau=float(np.sort(a)[:6].sum()))
    try:
        res = solve(problem, backend=backend, max_iter=max_iter, tol=tol, seed=seed, time_limit=time_limit,
                    local_search=local_search, **options)
    except DirectOptError:
        return
    _check_result(problem, res)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_everywhere_is_a_non_finite_error(bad):
    """Control for the fuzzers: one non-finite entry anywhere is named (not silently solved)."""
    from direct_opt.errors import NonFiniteError

    G, a = _valid()
    G[1, 5] = bad
    with pytest.raises(NonFiniteError, match=r"\(1, 5\)"):
        SelectionProblem(G, a, k=3)
    with pytest.raises(NonFiniteError, match=r"\(1, 5\)"):
        GradientStats(G_flat=G, a_stiff=a)


@pytest.mark.parametrize("backend, options", [
    ("pga-dykstra", {"inner_steps": 0.5}), ("pga-dykstra", {"dykstra_iters": -3}), ("pga-dykstra", {"step_size": -1.0}),
    ("pga-dykstra", {"dykstra_tol": -1.0}), ("fw-block", {"block_size": "abc"}), ("fw-block", {"block_size": 0}),
    ("sca-osqp", {"eps": -1.0}), ("sca-exact", {"prox": -1.0}), ("sca-exact", {"prox": float("nan")}),
    ("frank-wolfe", {"variant": "bogus"}), ("sca-exact", {"init": "bogus"}), ("greedy", {"prox": 0.0}),
])
def test_out_of_range_backend_options_are_named(backend, options):
    """Found by the fuzzers: nonsense options used to be accepted silently or end in a TypeError."""
    from direct_opt.errors import InvalidParameterError

    G, a = _valid(1)
    problem = SelectionProblem(G, a, k=3)
    with pytest.raises(InvalidParameterError, match=next(iter(options))):
        solve(problem, backend=backend, max_iter=2, **options)
