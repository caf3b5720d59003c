"""Extending the toolkit touches one file: this one adds a toy backend, a toy constraint kind,
a toy selector and a toy projector through the public API only (and removes them again)."""

from __future__ import annotations

import numpy as np
import pytest

from direct_opt import SelectionProblem, solve
from direct_opt.constraints import LinearRowsConstraint
from direct_opt.solvers import Backend, Relaxation, register_backend
from direct_opt.solvers.base import BACKENDS

from .helpers import instance


def test_toy_backend_uses_the_shared_oracle():
    @register_backend
    class OneVertex(Backend):
        """The LMO vertex of the column norms, rounded."""

        name = "toy-one-vertex"
        kinds = {"bounds", "linear"}

        def relax(self, problem, ctx):
            return Relaxation(w=ctx.oracle.lmo(problem.op.col_sq_norms()), iterations=1, converged=True)

    try:
        G, a, k, tau = instance(n=60, k=6)
        res = solve(SelectionProblem(G, a, k, tau), "toy-one-vertex")
        assert res.feasible and len(res.indices) == k and res.certified_ratio is not None
    finally:
        BACKENDS.remove("toy-one-vertex")


def test_toy_constraint_kind_is_honoured_by_the_fast_backends():
    class AtMost(LinearRowsConstraint):
        """At most ``m`` of the samples ``idx``."""

        def __init__(self, idx, m, n, name="at most"):
            import scipy.sparse as sp

            row = np.zeros((1, n))
            row[0, idx] = 1.0
            self.A, self.lo, self.hi = sp.csr_matrix(row), np.array([-np.inf]), np.array([float(m)])
            self.name, self.row_names = name, [name]

    G, a, k, tau = instance(n=60, k=6, tau_rel=0.5)
    best = solve(SelectionProblem(G, a, k, tau), "sca-exact").indices
    res = solve(SelectionProblem(G, a, k, tau, constraints=[AtMost(best[:3], 1, 60)]), "sca-exact")
    assert res.feasible and np.isin(best[:3], res.indices).sum() <= 1


def test_toy_selector_by_name():
    from direct_opt.selectors import Pick, register_selector, select, unregister_selector

    @register_selector("toy-first", needs_stats=False)
    def first(inp, *, offset: int = 0):
        """The first K samples after ``offset``."""
        return Pick(np.arange(offset, offset + inp.k), {"offset": offset})

    try:
        assert select("toy-first", k=3, n=10, offset=2).indices.tolist() == [2, 3, 4]
    finally:
        unregister_selector("toy-first")


def test_toy_projector_by_name_and_as_an_object():
    torch = pytest.importorskip("torch")
    from direct_opt.extract import ExtractConfig, Projector, make_projector, register_projector
    from direct_opt.extract.projector_registry import PROJECTORS

    class BlockSum(Projector):
        """Coordinate i goes to row i mod k (a deterministic toy sketch)."""

        name = "toy-block-sum"

        def _accumulate(self, out, g, start, stop):
            rows = torch.arange(start, stop, device=out.device) % self.k
            out.index_add_(1, rows, g)

    register_projector("toy-block-sum", BlockSum)
    try:
        proj = make_projector("toy-block-sum", k=2, dim=5)
        assert torch.equal(proj.project(torch.arange(5.0)[None]), torch.tensor([[6.0, 4.0]]))
        assert ExtractConfig(projector="toy-block-sum").validate().projector == "toy-block-sum"
        assert make_projector(proj, k=2, dim=5) is proj  # an object is used as given
        assert ExtractConfig(projector=proj).validate().to_dict()["projector"]["name"] == "toy-block-sum"
    finally:
        PROJECTORS.remove("toy-block-sum")
