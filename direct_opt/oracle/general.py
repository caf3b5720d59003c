"""The standard set plus extra linear rows lo <= A w <= hi: LP by HiGHS, QP by OSQP."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import InfeasibleProblemError, SolverError


class GeneralPolytope:
    """{lb <= w <= ub, 1^T w = K, a^T w <= tau, lo <= A w <= hi}: ``lmo`` by a HiGHS dual-simplex
    LP (a vertex), ``project`` by OSQP (set up once, polished, tight tolerances).

    Args:
        problem: a :class:`~direct_opt.problem.SelectionProblem` (its linear rows are read once).
    """

    kind = "general"
    capabilities = frozenset({"lmo", "project", "dot"})

    def __init__(self, problem: Any) -> None:
        rows = problem.all_linear_rows()
        self.C = rows.A.tocsc()
        self.l, self.u = rows.lo, rows.hi
        self.lb, self.ub = problem.lb, problem.ub
        self.n = problem.n
        self.message = "extra linear constraints present: subproblems solved by a general LP (scipy HiGHS) / QP (OSQP)"
        eq = self.l == self.u
        ineq = ~eq
        hi_rows, lo_rows = ineq & np.isfinite(self.u), ineq & np.isfinite(self.l)
        self._A_eq, self._b_eq = self.C[np.flatnonzero(eq)], self.l[eq]
        self._A_ub = self._b_ub = None
        if hi_rows.any() or lo_rows.any():
            self._A_ub = sp.vstack([self.C[np.flatnonzero(hi_rows)], -self.C[np.flatnonzero(lo_rows)]], format="csr")
            self._b_ub = np.concatenate([self.u[hi_rows], -self.l[lo_rows]])
        self._osqp = None

    def dot(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.asarray(x, dtype=np.float64) @ np.asarray(y, dtype=np.float64))

    def lmo(self, c: np.ndarray) -> np.ndarray:
        """Maximiser of c^T w (HiGHS dual simplex gives a vertex).

        Raises InfeasibleProblemError when the set is empty, SolverError when HiGHS stops
        for another reason (iteration limit, numerical trouble)."""
        from scipy.optimize import linprog

        res = linprog(
            -np.asarray(c, float), A_ub=self._A_ub, b_ub=self._b_ub, A_eq=self._A_eq, b_eq=self._b_eq,
            bounds=np.column_stack([self.lb, self.ub]), method="highs-ds",
        )
        if res.status == 2:
            raise InfeasibleProblemError("the relaxation with the extra linear constraints is infeasible.")
        if res.status != 0:
            raise SolverError(f"HiGHS could not solve the LP subproblem (status {res.status}: {res.message}); "
                              "check the constraint rows for extreme coefficients, or use backend 'sca-osqp'.")
        return np.clip(res.x, self.lb, self.ub)

    def project(self, y: np.ndarray) -> np.ndarray:
        """Euclidean projection by OSQP: set up on the first call, later calls only change q."""
        q = -np.asarray(y, float)
        if self._osqp is None:
            import osqp

            n = self.n
            A = sp.vstack([self.C, sp.identity(n, format="csc")], format="csc")
            self._osqp = osqp.OSQP()
            self._osqp.setup(
                sp.identity(n, format="csc"), q, A, np.concatenate([self.l, self.lb]), np.concatenate([self.u, self.ub]),
                verbose=False, eps_abs=1e-10, eps_rel=1e-10, polishing=True, max_iter=200000, warm_starting=False,
            )
        else:
            self._osqp.update(q=q)
        res = self._osqp.solve(raise_error=False)
        if res.x is None or not np.all(np.isfinite(res.x)):
            status = str(res.info.status)
            if "infeasible" in status.lower():
                raise InfeasibleProblemError(f"the relaxation with the extra linear constraints is infeasible (OSQP: {status}).")
            raise SolverError(f"OSQP could not project onto the feasible set: {status}.")
        return np.clip(res.x, self.lb, self.ub)
