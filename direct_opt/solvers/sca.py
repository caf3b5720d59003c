"""Successive convex approximation (the paper's outer loop), two subproblem solvers.

At w_t the convex f is minorised by its linearisation; each iteration maximises

    grad f(w_t)^T w - (rho_t / 2) ||w - w_t||^2      over the feasible set,

so f(w_t) never decreases.  rho_t = prox * ||grad f(w_t)||_inf (scale-free).

* ``sca-exact``: prox = 0 by default -> the LP subproblem, solved exactly by the
  structured oracle (a vertex); prox > 0 -> the exact Euclidean projection.
* ``sca-osqp``: the subproblem modelled in cvxpy, solved by OSQP (by Clarabel when a
  convex quadratic constraint is present), so every cvxpy-expressible constraint is
  honoured.  For the concave form it solves the (convex) program directly.
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


@register_backend
class ScaOsqp(Backend):
    """SCA whose subproblem is a cvxpy model solved by OSQP (Clarabel for quadratic constraints)."""

    name = "sca-osqp"
    forms = {"convex", "concave"}
    kinds = {"bounds", "linear", "quadratic", "custom"}
    options = {"prox": 0.1, "init": "center", "eps": 1e-6}
    local_search_default = False

    def relax(self, problem: SelectionProblem, ctx: Context) -> Relaxation:
        cp = _cp()
        n = problem.n
        w = cp.Variable(n)
        cons = _cvxpy_constraints(problem, w)
        conic = bool(problem.nonlinear)
        solver = cp.CLARABEL if conic else cp.OSQP
        if not (ctx.options["prox"] >= 0 and ctx.options["eps"] > 0):
            raise InvalidParameterError(
                f"options prox={ctx.options['prox']!r} must be >= 0 and eps={ctx.options['eps']!r} > 0."
            )
        kw = {} if conic else {"eps_abs": ctx.options["eps"], "eps_rel": ctx.options["eps"], "max_iter": 20000, "polishing": True}
        oracle = ctx.oracle
        note = f"subproblems modelled in cvxpy, solved by {solver}"
        if problem.nonlinear:
            note += " (gaps are measured on the linear part of the feasible set: an upper bound on the true gap)"
        if problem.form == "concave":
            G = problem.op.columns(np.arange(n))
            obj = -0.5 * cp.sum_squares(G @ w)
            if problem.c is not None:
                obj = obj + problem.c @ w
            prob = cp.Problem(cp.Maximize(obj), cons)
            prob.solve(solver=solver, **kw)
            _check(prob, cp, w)
            wv = np.clip(np.asarray(w.value, float), problem.lb, problem.ub)
            grad = problem.gradient(wv)
            gap = max(0.0, float(grad @ (oracle.lmo(grad) - wv)))
            hist = [{"iter": 1, "objective": problem.objective(wv), "step": float(np.linalg.norm(wv)), "gap": gap}]
            return Relaxation(w=wv, history=hist, iterations=1, converged=True, gap=gap,
                              message=note + "; concave objective solved as one convex program (certificate: duality gap)")
        d = cp.Parameter(n)
        prob = cp.Problem(cp.Maximize(d @ w - 0.5 * cp.sum_squares(w)), cons)
        prox = max(float(ctx.options["prox"]), 1e-12)

        def sub(w_t: np.ndarray, grad: np.ndarray, v: np.ndarray) -> np.ndarray:
            rho = prox * max(float(np.abs(grad).max()), 1e-300)
            d.value = w_t + grad / rho
            with warnings.catch_warnings():  # inexact points are handled by the SCA loop
                warnings.simplefilter("ignore", UserWarning)
                prob.solve(solver=solver, warm_start=True, **kw)
            _check(prob, cp, w)
            return np.clip(np.asarray(w.value, float), problem.lb, problem.ub)

        rel = sca_loop(problem, ctx, oracle, sub)
        rel.message = "; ".join(m for m in (note, rel.message) if m)
        return rel


def _check(prob, cp, w) -> None:
    """Infeasible -> InfeasibleProblemError; no point at all -> SolverError; an inexact point
    (iteration limit) is accepted: the SCA loop rejects it if it lowers f."""
    from ..errors import InfeasibleProblemError, SolverError

    if prob.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        raise InfeasibleProblemError("the continuous relaxation is infeasible (cvxpy reports infeasible).")
    if w.value is None or not np.all(np.isfinite(w.value)):
        raise SolverError(f"the cvxpy subproblem returned no point (status {prob.status}); try backend 'sca-exact'.")
