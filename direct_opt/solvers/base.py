"""Backend base class, the registry, and :func:`solve`.

A backend is one class registered by name.  It declares which objective forms and
constraint kinds it honours and implements :meth:`Backend.relax` (continuous
solution + history); the base class does the rest the same way for everyone:
input checks, rounding, feasibility verification, certificates, timing.

Adding a backend::

    from direct_opt.solvers import Backend, Relaxation, register_backend

    @register_backend
    class MyBackend(Backend):
        name = "my-backend"
        kinds = {"bounds"}              # constraint kinds it honours
        options = {"step": 0.5}         # its own options and their defaults
        def relax(self, problem, ctx):
            w = ...                     # (N,) feasible point of the relaxation
            return Relaxation(w=w, history=[], iterations=1, converged=True)
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..certificates import certified_ratio, check_certify, certify as certify_bound
from ..defaults import SOLVER_BACKEND
from ..errors import InfeasibleProblemError, InvalidParameterError, UnknownNameError
from ..oracle import Oracle, check_oracle, make_oracle
from ..problem import SelectionProblem
from ..reduction import LOCAL, Reduction
from ..registry import Registry
from ..result import SelectionResult
from ..stats import int_scalar, real_scalar
from ..rounding import diagnose_infeasibility, round_selection

DEFAULT_MAX_ITER = 20
DEFAULT_TOL = 1e-4

#: Registered backend classes by name (capabilities: the objective forms and constraint kinds).
BACKENDS: Registry[type["Backend"]] = Registry("backend")


@dataclass
class Context:
    """What a backend's relax() gets besides the problem.

    ``oracle``: the feasible set's :class:`~direct_opt.oracle.Oracle`, built once per solve on
    first use (or the one passed to ``solve(..., oracle=)``) and shared with the certificates.
    ``reduction``: sums over the processes holding blocks of the coordinates (one process:
    :data:`~direct_opt.reduction.LOCAL`).
    """

    max_iter: int
    tol: float
    seed: int
    deadline: float | None
    options: dict[str, Any]
    problem: Any = None
    injected: Any = None
    reduction: Reduction = LOCAL

    @property
    def oracle(self) -> Oracle:
        if self.injected is None:
            self.injected = make_oracle(self.problem)
        return self.injected

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


def record_iteration(history: list, ctx: Context, t: int, objective: float, step: float, gap: float) -> str | None:
    """Append one history row; say "converged" (step < tol), "time_limit", or None (go on)."""
    history.append({"iter": t, "objective": float(objective), "step": float(step), "gap": float(gap)})
    if step < ctx.tol:
        return "converged"
    if ctx.out_of_time():
        return "time_limit"
    return None


@dataclass
class Relaxation:
    """A backend's continuous answer. w=None means 'no relaxation: round from empty'."""

    w: np.ndarray | None
    history: list[dict[str, float]] = field(default_factory=list)
    iterations: int = 0
    converged: bool = False
    timed_out: bool = False
    stalled: bool = False  # stopped before T_max without converging (e.g. an inexact subproblem)
    gap: float | None = None
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    priority: np.ndarray | None = None  # fill order for integer-only backends (random)
    selection: np.ndarray | None = None  # a backend's own 0/1 answer (indices), used as is when feasible
    upper_bound: float | None = None  # a backend's own valid bound on the integer optimum (exact)


class Backend:
    """Base class of all solver backends."""

    name: str = ""
    forms: set[str] = {"convex"}
    kinds: set[str] = {"bounds", "linear"}
    options: dict[str, Any] = {}
    local_search_default: bool = True

    def relax(self, problem: SelectionProblem, ctx: Context) -> Relaxation:
        raise NotImplementedError

    def solve(
        self,
        problem: SelectionProblem,
        *,
        max_iter: int = DEFAULT_MAX_ITER,
        tol: float = DEFAULT_TOL,
        seed: int = 0,
        local_search: bool | None = None,
        time_limit: float | None = None,
        device: Any = None,
        certify: str = "auto",
        oracle: Oracle | None = None,
        **options: Any,
    ) -> SelectionResult:
        """Solve ``problem``; see :func:`solve` for the arguments."""
        if not isinstance(problem, SelectionProblem):
            raise InvalidParameterError(f"solve() expects a SelectionProblem, got {type(problem).__name__}.")
        check_oracle(oracle)
        if device is not None:  # products with G on a torch device for this solve only
            from ..linop import use_device

            saved = problem.op
            use_device(problem, device)
            try:
                return self.solve(problem, max_iter=max_iter, tol=tol, seed=seed, local_search=local_search,
                                  time_limit=time_limit, certify=certify, oracle=oracle, **options)
            finally:
                problem.op = saved
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise InvalidParameterError(
                f"backend {self.name!r} has no option(s) {unknown}; its options are {sorted(self.options)}."
            )
        if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
            raise InvalidParameterError(f"max_iter={max_iter!r} must be an integer >= 1.")
        if real_scalar("tol", tol, finite=False) < 0 or not np.isfinite(tol):
            raise InvalidParameterError(f"tol={tol!r} must be a finite number >= 0.")
        if time_limit is not None and (
            not np.isfinite(real_scalar("time_limit", time_limit, finite=False)) or time_limit <= 0
        ):
            raise InvalidParameterError(f"time_limit={time_limit!r} must be > 0 seconds.")
        seed = int_scalar("seed", seed, minimum=0)
        check_certify(certify, problem.n)
        for key, val in options.items():
            default = self.options[key]
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                real_scalar(f"option {key}", val)
            elif isinstance(default, (bool, str)) and not isinstance(val, type(default)):
                raise InvalidParameterError(
                    f"option {key}={val!r} must be a {type(default).__name__} (backend {self.name!r})."
                )
        problem.require(
            self.name, self.kinds, self.forms,
            kind_support={n: BACKENDS.get(n).kinds for n in BACKENDS.names()},
            form_support={n: BACKENDS.get(n).forms for n in BACKENDS.names()},
        )
        t0 = time.monotonic()
        deadline = None if time_limit is None else t0 + float(time_limit)
        why = precheck_infeasible(problem)  # before any backend work: every backend is fast on it
        if why is not None:
            return self._infeasible(problem, why, time.monotonic() - t0)
        ctx = Context(int(max_iter), float(tol), int(seed), deadline, {**self.options, **options},
                      problem=problem, injected=oracle)
        try:
            rel = self.relax(problem, ctx)
        except InfeasibleProblemError as exc:
            return self._infeasible(problem, str(exc), time.monotonic() - t0)
        ls = self.local_search_default if local_search is None else bool(local_search)
        rounded = own_selection(problem, rel.selection)
        if rounded is None:
            rounded = round_selection(
                problem, rel.w, local_search=ls, seed=seed, deadline=deadline, priority=rel.priority,
                milp_time_limit=30.0 if deadline is None else max(0.1, min(30.0, deadline - time.monotonic())),
            )
        if not rounded.ok:
            return self._infeasible(problem, rounded.message, time.monotonic() - t0, rel)
        x = np.zeros(problem.n)
        x[rounded.indices] = 1.0
        viol = problem.violations(x)
        if not problem.is_feasible(x) or len(rounded.indices) != problem.k:  # never pass a violating set
            return self._infeasible(problem, f"internal: rounding produced a violating set {viol}", time.monotonic() - t0, rel)
        objective = problem.selection_objective(rounded.indices)
        f_rel = None if rel.w is None else problem.objective(rel.w)
        left = None if deadline is None else max(deadline - time.monotonic(), 1e-3)
        ub, cert = certify_bound(problem, certify, rel.w, rel.gap, left, oracle=ctx.injected)  # norm only past the limit
        cert.pop("time_s", None)  # results are deterministic; the bound's cost is part of res.time_s
        if rel.upper_bound is not None and rel.upper_bound < ub:
            ub, cert = float(rel.upper_bound), {**cert, "method": f"{self.name} (its own bound)"}
        ub = max(ub, objective)  # a rounding-level excess (1e-16 relative) must not exceed ratio 1
        if rel.timed_out or ctx.out_of_time():
            status = "time_limit"
        else:
            status = "converged" if rel.converged else ("stalled" if rel.stalled else "max_iter")
        parts = [p for p in (rel.message, rounded.message) if p]
        return SelectionResult(
            indices=rounded.indices,
            objective=objective,
            w=rel.w,
            objective_relaxed=f_rel,
            upper_bound=ub,
            certified_ratio=certified_ratio(objective, ub),
            feasible=True,
            violations=viol,
            status=status,
            message="; ".join(parts),
            history=rel.history,
            iterations=rel.iterations,
            converged=rel.converged,
            time_s=time.monotonic() - t0,
            backend=self.name,
            gap=rel.gap,
            info={**rel.info, "certificate": cert, "swaps": rounded.swaps, "options": ctx.options, "max_iter": ctx.max_iter, "tol": ctx.tol, "seed": ctx.seed},
        )

    def _infeasible(self, problem: SelectionProblem, why: str, t: float, rel: Relaxation | None = None) -> SelectionResult:
        if not why.startswith("infeasible"):
            why = "infeasible: " + (why if ":" in why else diagnose_infeasibility(problem))
        return SelectionResult(
            indices=np.empty(0, np.int64),
            objective=float("nan"),
            w=None if rel is None else rel.w,
            objective_relaxed=None,
            upper_bound=None,
            certified_ratio=None,
            feasible=False,
            violations={},
            status="infeasible",
            message=why,
            history=[] if rel is None else rel.history,
            iterations=0 if rel is None else rel.iterations,
            converged=False,
            time_s=t,
            backend=self.name,
        )


def precheck_infeasible(problem: SelectionProblem) -> str | None:
    """A reason why no K-subset can be feasible, found in O(N) (fixings, budget) plus one LP for
    extra linear rows — or None.  Run by every backend before any work."""
    from ..oracle import DirectPolytope

    try:
        DirectPolytope(problem.a, problem.k, problem.tau, problem.lb, problem.ub)
    except InfeasibleProblemError as exc:
        return f"infeasible: {exc}"
    if problem.rows is not None:
        from scipy.optimize import linprog

        rows = problem.all_linear_rows()
        A = rows.A
        fin_hi, fin_lo = np.isfinite(rows.hi), np.isfinite(rows.lo)
        import scipy.sparse as sp

        A_ub = sp.vstack([A[np.flatnonzero(fin_hi)], -A[np.flatnonzero(fin_lo)]], format="csr")
        b_ub = np.r_[rows.hi[fin_hi], -rows.lo[fin_lo]]
        res = linprog(np.zeros(problem.n), A_ub=A_ub, b_ub=b_ub, bounds=np.column_stack([problem.lb, problem.ub]),
                      method="highs")
        if res.status == 2:
            return "infeasible: " + diagnose_infeasibility(problem)
    return None


def own_selection(problem: SelectionProblem, indices: np.ndarray | None):
    """A backend's own 0/1 answer as a :class:`~direct_opt.rounding.Rounded` when it is K distinct
    feasible indices; None (round as usual) otherwise."""
    from ..rounding import Rounded

    if indices is None:
        return None
    idx = np.unique(np.asarray(indices, dtype=np.int64))
    x = np.zeros(problem.n)
    x[idx] = 1.0
    if idx.size != problem.k or not problem.is_feasible(x):
        return None
    return Rounded(idx, True, "the backend's own selection (feasible, not re-rounded)")


def register_backend(cls: type[Backend] | None = None, *, overwrite: bool = False) -> Any:
    """Class decorator: make ``cls`` available under ``cls.name``.

    A second, different class under a taken name is an error unless ``overwrite=True``
    (``@register_backend(overwrite=True)``)."""

    def deco(c: type[Backend]) -> type[Backend]:
        if not isinstance(c, type) or not issubclass(c, Backend):
            raise InvalidParameterError(f"register_backend expects a Backend subclass, got {c!r}.")
        if not c.name:
            raise InvalidParameterError(f"{c.__name__} needs a non-empty 'name'.")
        return BACKENDS.add(c.name, c, overwrite=overwrite,
                            capabilities={"forms": sorted(c.forms), "kinds": sorted(c.kinds)})

    return deco if cls is None else deco(cls)


def available_backends() -> list[str]:
    """Registered backend names."""
    return BACKENDS.names()


def get_backend(name: str) -> Backend:
    """A fresh instance of the backend registered as ``name``."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise UnknownNameError(f"unknown backend {name!r}; known backends: {available_backends()}.")
    return BACKENDS.get(name)()


#: the keyword arguments solve() takes for every backend (the backends' own options come on top)
SOLVE_ARGS = tuple(name for name in inspect.signature(Backend.solve).parameters if name not in ("self", "problem", "options"))


def solve(problem: SelectionProblem, backend: str = SOLVER_BACKEND, **kwargs: Any) -> SelectionResult:
    """Solve a SelectionProblem with a named backend.

    Args:
        problem: the program.
        backend: a name from :func:`available_backends`.
        max_iter: T_max, outer iterations (default 20).
        tol: delta, stop when ||w_{t+1} - w_t|| < tol (default 1e-4).
        seed: for randomised backends and tie-breaking in repair.
        local_search: 1-swap local search after rounding (backend default).
        time_limit: seconds; past it the best feasible selection so far is returned
            with status "time_limit".
        device: a torch device ("cuda", "cuda:1", "cpu") for the products with G during
            this solve: G is copied there once in its storage dtype when it fits, else
            streamed in column blocks (see :func:`direct_opt.linop.use_device`).  None
            (default): numpy on the host, memory maps streamed block by block.
        certify: which upper bound certifies the result (``res.upper_bound``,
            ``res.certified_ratio``; details in ``res.info["certificate"]``): "cheap" (norm and
            spectral bounds), "subspace" (scalable, tighter), "rlt" / "sdp" (small N, near-exact),
            "auto" (default: rlt for N <= 40, cheap above).  See
            the certificates page of the docs.
        oracle: an :class:`~direct_opt.oracle.Oracle` for the feasible set, used instead of
            the one the backend would build (:func:`~direct_opt.oracle.make_oracle`); a
            structured one is also used by the certificates.
        **options: backend-specific options (see each backend's ``options``).
    Returns:
        SelectionResult (status "infeasible" with an explanation when no selection exists).
    """
    return get_backend(backend).solve(problem, **kwargs)
