"""Successive convex approximation (the paper's outer loop), two subproblem solvers.

At w_t the convex f is minorised by its linearisation; each iteration maximises

    grad f(w_t)^T w - (rho_t / 2) ||w - w_t||^2      over the feasible set,

so f(w_t) never decreases.  rho_t = prox * ||grad f(w_t)||_inf (scale-free).

* ``sca-exact``: prox = 0 by default -> the LP subproblem, solved exactly by the
  structured oracle (a vertex); prox > 0 -> the exact Euclidean projection.
* ``sca-osqp``: the subproblem as a sparse QP solved by OSQP (re-solved by Clarabel when
  OSQP's status is not "solved"; never read as infeasibility), or modelled in cvxpy and
  solved by Clarabel when a convex quadratic/custom constraint is present, so every
  cvxpy-expressible constraint is honoured.  For the concave form it solves the (convex)
  program directly.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import InvalidParameterError
from ..problem import SelectionProblem
from .base import Backend, Context, Relaxation, record_iteration, register_backend


def initial_point(problem: SelectionProblem, oracle, init: str) -> np.ndarray:
    """A feasible starting point: 'center' projects K/N * 1; 'norms' is the LMO of ||g_i||^2."""
    if init == "center":
        return oracle.project(np.full(problem.n, problem.k / problem.n))
    if init == "norms":
        return oracle.lmo(problem.op.col_sq_norms())
    from ..errors import InvalidParameterError

    raise InvalidParameterError(f"init must be 'center' or 'norms', got {init!r}.")


def next_product(op, p: np.ndarray, w: np.ndarray, w_next: np.ndarray) -> np.ndarray:
    """G w_next.  For a streamed G (memory map / half precision) whose iterate changed in few
    coordinates, p + G (w_next - w) gathers only the changed columns instead of a full pass."""
    from ..linop import SPARSE_FRACTION

    if getattr(op, "streamed", False):
        d = w_next - w
        if np.count_nonzero(d) < SPARSE_FRACTION * op.n:
            return p + op.matvec(d)
    return op.matvec(w_next)


def sca_loop(problem: SelectionProblem, ctx: Context, oracle, subproblem) -> Relaxation:
    """Generic SCA loop; ``subproblem(w, grad, v) -> w_next`` with v = lmo(grad) precomputed."""
    w = initial_point(problem, oracle, ctx.options.get("init", "center"))
    p = problem.op.matvec(w)
    history, stop, t = [], None, 0
    grad = problem.gradient(w, p)
    f = problem.value_from(p, w)
    notes = []
    red = ctx.reduction  # gaps and steps over every coordinate (one process: plain numpy)
    v = oracle.lmo(grad)
    gap = max(0.0, float(red.sum(grad @ (v - w))))
    for t in range(1, ctx.max_iter + 1):
        w_next = subproblem(w, grad, v)
        p_next = next_product(problem.op, p, w, w_next)
        f_next = problem.value_from(p_next, w_next)
        if f_next < f - 1e-9 * abs(f):  # only an inexact subproblem can do this
            notes.append(f"iteration {t}: inexact subproblem lowered f; kept the previous iterate and stopped")
            t, stop = t - 1, "stalled"
            break
        step = red.norm(w_next - w)
        w, p, f = w_next, p_next, f_next
        grad = problem.gradient(w, p)
        v = oracle.lmo(grad)  # gap certificate, and the next LP subproblem's answer
        gap = max(0.0, float(red.sum(grad @ (v - w))))
        stop = record_iteration(history, ctx, t, f, step, gap)
        if stop:
            break
    msg = "; ".join([m for m in [getattr(oracle, "message", "")] + notes if m])
    return Relaxation(w=w, history=history, iterations=t, converged=stop == "converged",
                      timed_out=stop == "time_limit", stalled=stop == "stalled", gap=gap, message=msg)


@register_backend
class ScaExact(Backend):
    """SCA with the exact structured oracle (LP form by default, projection with prox > 0)."""

    name = "sca-exact"
    kinds = {"bounds", "linear"}
    options = {"prox": 0.0, "init": "norms"}

    def relax(self, problem: SelectionProblem, ctx: Context) -> Relaxation:
        oracle = ctx.oracle
        prox = float(ctx.options["prox"])
        if prox < 0:
            raise InvalidParameterError(f"option prox={prox!r} must be >= 0 (0: the LP subproblem).")

        def sub(w: np.ndarray, grad: np.ndarray, v: np.ndarray) -> np.ndarray:
            if prox <= 0:
                return v
            rho = prox * max(float(np.abs(grad).max()), 1e-300)
            return oracle.project(w + grad / rho)

        return sca_loop(problem, ctx, oracle, sub)


def _cvxpy_constraints(problem: SelectionProblem, w):
    cons = [w >= problem.lb, w <= problem.ub, _cp().sum(w) == problem.k]
    if problem.tau is not None:  # scaled to max a = 1: OSQP's tolerances are absolute
        s = float(problem.a.max()) if float(problem.a.max()) > 0 else 1.0
        cons.append((problem.a / s) @ w <= problem.tau / s)
    for con in problem.constraints:
        cons.extend(con.cvxpy_constraints(w, problem))
    return cons


def _cp():
    import cvxpy as cp

    return cp


class _OsqpSubproblem:
    """The prox subproblem  max d^T w - 1/2 ||w||^2  over the linear feasible set, set up once in
    OSQP with sparse matrices (P = I, the constraint rows plus the box; nothing N x N), then
    re-solved with a new linear term.  A status other than "solved" is never taken as proof
    of anything: the same subproblem is re-solved by Clarabel (cvxpy), and if that also
    fails the exact LP vertex (the SCA step without the prox term) is used; the note says so.
    Infeasibility is decided before any backend work by one HiGHS LP (the shared pre-check)."""

    def __init__(self, problem: SelectionProblem, eps: float, oracle) -> None:
        import osqp
        import scipy.sparse as sp

        n = problem.n
        rows = problem.all_linear_rows()
        self.problem, self.oracle, self.notes = problem, oracle, []
        # each row scaled to max |coefficient| = 1: OSQP's tolerances are absolute, so a budget row of
        # tiny or huge costs must not change the answer (scale invariance, docs/reliability.md)
        size = np.asarray(abs(rows.A).max(axis=1).todense()).ravel()
        size = np.where(size > 0, size, 1.0)
        self.A = sp.vstack([sp.diags(1.0 / size) @ rows.A, sp.identity(n, format="csr")], format="csc")
        self.l = np.r_[rows.lo / size, problem.lb]
        self.u = np.r_[rows.hi / size, problem.ub]
        self.solver = osqp.OSQP()
        self.solver.setup(sp.identity(n, format="csc"), np.zeros(n), self.A, self.l, self.u, verbose=False,
                          eps_abs=eps, eps_rel=eps, max_iter=20000, polishing=True)

    def __call__(self, d: np.ndarray, grad: np.ndarray) -> np.ndarray:
        P = self.problem
        self.solver.update(q=-d)
        res = self.solver.solve(raise_error=False)
        status = str(res.info.status).lower()
        if status == "solved" and res.x is not None and np.all(np.isfinite(res.x)):
            return np.clip(res.x, P.lb, P.ub)
        x = self._clarabel(d)
        if x is not None:
            self.notes.append(f"OSQP status {status!r}: subproblem re-solved by Clarabel")
            return x
        self.notes.append(f"OSQP status {status!r} and Clarabel failed: took the exact LP vertex (no prox) instead")
        return self.oracle.lmo(grad)

    def _clarabel(self, d: np.ndarray) -> np.ndarray | None:
        cp = _cp()
        P = self.problem
        w = cp.Variable(P.n)
        prob = cp.Problem(cp.Maximize(d @ w - 0.5 * cp.sum_squares(w)), _cvxpy_constraints(P, w))
        try:
            prob.solve(solver=cp.CLARABEL)
        except cp.error.SolverError:
            return None
        if prob.status != cp.OPTIMAL or w.value is None:
            return None
        return np.clip(np.asarray(w.value, float), P.lb, P.ub)


@register_backend
class ScaOsqp(Backend):
    """SCA whose subproblem is a sparse QP solved by OSQP (Clarabel via cvxpy for quadratic/custom constraints)."""

    name = "sca-osqp"
    forms = {"convex", "concave"}
    kinds = {"bounds", "linear", "quadratic", "custom"}
    options = {"prox": 0.1, "init": "center", "eps": 1e-6}
    local_search_default = False

    def relax(self, problem: SelectionProblem, ctx: Context) -> Relaxation:
        cp = _cp()
        n = problem.n
        if not (ctx.options["prox"] >= 0 and ctx.options["eps"] > 0):
            raise InvalidParameterError(
                f"options prox={ctx.options['prox']!r} must be >= 0 and eps={ctx.options['eps']!r} > 0."
            )
        oracle = ctx.oracle
        prox = max(float(ctx.options["prox"]), 1e-12)
        if problem.form == "concave" or problem.nonlinear:
            return self._cvxpy_relax(problem, ctx, oracle, cp, prox)
        sub_qp = _OsqpSubproblem(problem, float(ctx.options["eps"]), oracle)

        def sub(w_t: np.ndarray, grad: np.ndarray, v: np.ndarray) -> np.ndarray:
            rho = prox * max(float(np.abs(grad).max()), 1e-300)
            return sub_qp(w_t + grad / rho, grad)

        rel = sca_loop(problem, ctx, oracle, sub)
        notes = sorted(set(sub_qp.notes))
        rel.message = "; ".join(m for m in ["subproblems: sparse QP solved by OSQP", rel.message, *notes] if m)
        rel.info["subproblem_fallbacks"] = len(sub_qp.notes)
        return rel

    def _cvxpy_relax(self, problem: SelectionProblem, ctx: Context, oracle, cp, prox: float) -> Relaxation:
        """Quadratic/custom constraints or the concave form: the cvxpy model, solved by Clarabel."""
        n = problem.n
        w = cp.Variable(n)
        cons = _cvxpy_constraints(problem, w)
        solver = cp.CLARABEL
        note = "subproblems modelled in cvxpy, solved by CLARABEL"
        if problem.nonlinear:
            note += " (gaps are measured on the linear part of the feasible set: an upper bound on the true gap)"
        if problem.form == "concave":
            z = cp.Variable(problem.r)
            G = problem.op.columns(np.arange(n))
            obj = -0.5 * cp.sum_squares(z)
            if problem.c is not None:
                obj = obj + problem.c @ w
            prob = cp.Problem(cp.Maximize(obj), cons + [z == G @ w])
            _solve_checked(prob, cp, w)
            wv = np.clip(np.asarray(w.value, float), problem.lb, problem.ub)
            grad = problem.gradient(wv)
            gap = max(0.0, float(grad @ (oracle.lmo(grad) - wv)))
            hist = [{"iter": 1, "objective": problem.objective(wv), "step": float(np.linalg.norm(wv)), "gap": gap}]
            return Relaxation(w=wv, history=hist, iterations=1, converged=True, gap=gap,
                              message=note + "; concave objective solved as one convex program (certificate: duality gap)")

        def sub(w_t: np.ndarray, grad: np.ndarray, v: np.ndarray) -> np.ndarray:
            rho = prox * max(float(np.abs(grad).max()), 1e-300)
            prob = cp.Problem(cp.Maximize((w_t + grad / rho) @ w - 0.5 * cp.sum_squares(w)), cons)
            _solve_checked(prob, cp, w)
            return np.clip(np.asarray(w.value, float), problem.lb, problem.ub)

        rel = sca_loop(problem, ctx, oracle, sub)
        rel.message = "; ".join(m for m in (note, rel.message) if m)
        return rel


def _solve_checked(prob, cp, w) -> None:
    """Clarabel, then SCS when Clarabel's answer is inexact.  Only an accurate infeasibility
    status from both is reported as infeasible; no point at all -> SolverError; an inexact
    point is accepted (the SCA loop rejects it if it lowers f)."""
    from ..errors import InfeasibleProblemError, SolverError

    statuses = []
    for solver in (cp.CLARABEL, cp.SCS):
        with warnings.catch_warnings():  # inexact points are handled by the SCA loop
            warnings.simplefilter("ignore", UserWarning)
            try:
                prob.solve(solver=solver)
            except cp.error.SolverError as exc:
                statuses.append(f"{solver}: {exc}")
                continue
        statuses.append(f"{solver}: {prob.status}")
        if prob.status == cp.OPTIMAL:
            return
    if all(s.endswith(cp.INFEASIBLE) for s in statuses):
        raise InfeasibleProblemError("the continuous relaxation is infeasible (Clarabel and SCS both report infeasible).")
    if w.value is None or not np.all(np.isfinite(w.value)):
        raise SolverError(f"the cvxpy subproblem returned no point ({'; '.join(statuses)}); try backend 'sca-exact'.")
