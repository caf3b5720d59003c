"""``direct``: the paper's program (docs/math.md) solved by a named backend."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..constraints import Constraint
from ..defaults import SOLVER_BACKEND
from ..errors import InfeasibleProblemError, InvalidParameterError, UnknownNameError
from ..problem import DEFAULT_BUDGET_FRAC, SelectionProblem
from ..solvers.base import SOLVE_ARGS
from .base import Pick, SelectorInputs, register_selector

#: Defaults: the always-feasible stiff budget (problem.feasible_budget; the paper's TAU_REL is an
#: option), the exact SCA backend.
DEFAULT_TAU_REL = None
DEFAULT_BACKEND = SOLVER_BACKEND


@register_selector("direct")
def direct_selector(
    inp: SelectorInputs,
    *,
    backend: str = DEFAULT_BACKEND,
    tau_rel: float | None = DEFAULT_TAU_REL,
    tau: float | None = None,
    budget_frac: float = DEFAULT_BUDGET_FRAC,
    constraints: Iterable[Constraint] = (),
    **solver_options: Any,
) -> Pick:
    """DiReCT: max ||G w||^2 s.t. 1^T w = K, a^T w <= tau (+ constraints), w in {0,1}^N.

    Options:
        backend: a solver backend name (``direct_opt.available_backends()``).
        tau_rel: the paper's budget tau = tau_rel * mean(a) * K (paper 0.1; may be infeasible);
            ignored when ``tau`` is given.
        tau: absolute stiff budget.
        budget_frac: when neither is given, tau = tau_min + budget_frac * (mean(a) K - tau_min),
            tau_min the cheapest K-subset's cost: always feasible (default 0.1).
        constraints: extra :class:`~direct_opt.constraints.Constraint` objects.
        **solver_options: passed to :func:`direct_opt.solve` (max_iter, tol, local_search,
            time_limit, backend options); ``seed`` comes from :func:`select`.
    Raises:
        InfeasibleProblemError when no K-subset meets the constraints (never returns one that
        does not).
    """
    if inp.stats is None:
        raise inp.missing_error("stats (GradientStats from direct_opt.extract.extract_stats)")
    from ..solvers import solve  # local: keeps `import direct_opt.selectors` light

    problem = SelectionProblem.from_stats(inp.stats, inp.k, tau_rel=tau_rel, tau=tau, budget_frac=budget_frac,
                                          constraints=constraints)
    res = solve(problem, backend=backend, seed=inp.seed, **solver_options)
    if not res.success:
        raise InfeasibleProblemError(
            f"selector 'direct' ({backend}, K={inp.k}, tau={problem.tau}) found no feasible selection: "
            f"{(res.message or res.status).rstrip('.')}."
        )
    diag = {
        "backend": res.backend,
        "status": res.status,
        "objective": res.objective,
        "objective_relaxed": res.objective_relaxed,
        "upper_bound": res.upper_bound,
        "certified_ratio": res.certified_ratio,
        "solve_time_s": res.time_s,
        "iterations": res.iterations,
        "converged": res.converged,
        "gap": res.gap,
        "message": res.message,
        "tau": problem.tau,
        "tau_rel": tau_rel if tau is None else None,
        "budget_frac": problem.budget_frac,
        "budget_used": float(problem.a[res.indices].sum()),
        "k_star": inp.stats.k_star,
        "r": inp.stats.r,
        "violations": res.violations,
        "constraints": [c.name for c in problem.constraints],
        "solver_options": {key: repr(v) if not isinstance(v, (int, float, str, bool, type(None))) else v
                           for key, v in solver_options.items()},
    }
    return Pick(res.indices, diag)


#: keyword arguments of :func:`direct_opt.solve` that the selector passes through (``seed`` comes from select)
SOLVE_KWARGS = tuple(name for name in SOLVE_ARGS if name != "seed")


def check_options(options: Mapping[str, Any]) -> None:
    """Raise InvalidParameterError for options ``direct`` would reject only when it runs
    (unknown backend, unknown solver option), so a harness can fail before any work."""
    from ..solvers import available_backends, get_backend

    backend = options.get("backend", DEFAULT_BACKEND)
    if backend not in available_backends():
        raise UnknownNameError(f"selector 'direct': unknown backend {backend!r}; known: {available_backends()}.")
    known = {"backend", "tau_rel", "tau", "budget_frac", "constraints", *SOLVE_KWARGS, *get_backend(backend).options}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidParameterError(
            f"selector 'direct' (backend {backend!r}) has no option(s) {unknown}; its options are {sorted(known)}."
        )


direct_selector.check_options = check_options  # type: ignore[attr-defined]
