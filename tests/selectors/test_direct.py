"""direct: the paper's program through the solver registry."""

from __future__ import annotations

import json

import numpy as np
import pytest

import direct_opt
from direct_opt.errors import InfeasibleProblemError, InvalidParameterError
from direct_opt.selectors import select

from .selectors_testlib import random_stats


def test_direct_equals_solve_and_reports_certificates():
    st, _, _ = random_stats(n=60, k=10, m=6, k_star=3, seed=2)
    K = 8
    sel = select("direct", k=K, stats=st, tau_rel=1.0, seed=0)
    ref = direct_opt.solve(direct_opt.SelectionProblem.from_stats(st, K, tau_rel=1.0), backend="sca-exact", seed=0)
    np.testing.assert_array_equal(sel.indices, ref.indices)
    d = sel.diagnostics
    assert d["backend"] == "sca-exact" and d["status"] == ref.status
    assert d["objective"] == pytest.approx(ref.objective)
    assert d["certified_ratio"] == pytest.approx(ref.certified_ratio)
    assert d["budget_used"] <= d["tau"] + 1e-9 and d["solve_time_s"] >= 0
    json.dumps(d)


def test_direct_passes_backend_and_options():
    st, _, _ = random_stats(n=40, k=8, m=6, k_star=2, seed=3)
    sel = select("direct", k=5, stats=st, tau_rel=1.0, backend="frank-wolfe", max_iter=3, local_search=False)
    assert sel.diagnostics["backend"] == "frank-wolfe"
    assert sel.diagnostics["solver_options"] == {"max_iter": 3, "local_search": False}
    with pytest.raises(InvalidParameterError, match="no option"):
        select("direct", k=5, stats=st, tau_rel=1.0, backend="sca-exact", nonsense=1)


def test_direct_infeasible_raises():
    st, _, _ = random_stats(n=40, k=8, m=6, k_star=2, seed=3)
    with pytest.raises(InfeasibleProblemError, match="no feasible selection.*budget"):
        select("direct", k=10, stats=st, tau=0.0)
