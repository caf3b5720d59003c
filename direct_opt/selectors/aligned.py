"""``direct-aligned``: the DiReCT program with a validation-alignment term (docs/less.md).

    maximise  f(w) = β ‖G w‖² / m_G + c̃ᵀw   s.t.  1ᵀw = K,  aᵀw <= τ (+ constraints),  w ∈ {0,1}^N

G: the flat eigen-coordinates (as ``direct``), m_G = mean_i ‖G e_i‖² (so ‖Gw‖²/m_G is ~K for K
unrelated samples), c̃ = c / mean_i |c_i| with c the faithful LESS scores: both terms are on the
same scale and β sets their ratio. β = 0 is LESS under the stiff budget (max c̃ᵀw: LESS's top-K
when the budget does not bind); large β tends to ``direct``. It is solved as the
:class:`~direct_opt.problem.SelectionProblem` ‖Gw‖² + (m_G/β) c̃ᵀw (the same maximiser for β > 0).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..constraints import Constraint
from ..errors import InfeasibleProblemError, InvalidInputError, InvalidParameterError
from ..problem import DEFAULT_BUDGET_FRAC, SelectionProblem
from ..stats import real_scalar
from .base import Pick, SelectorInputs, register_selector
from .direct import DEFAULT_BACKEND, DEFAULT_TAU_REL
from .gradient import less_scores

#: Default weight of the curvature (diversity) term relative to the alignment term.
DEFAULT_BETA = 1.0


def aligned_problem(stats: Any, k: int, c: np.ndarray, beta: float, *, tau_rel: float | None = None,
                    tau: float | None = None, budget_frac: float = DEFAULT_BUDGET_FRAC,
                    constraints: Iterable[Constraint] = ()) -> SelectionProblem:
    """The :class:`SelectionProblem` whose maximiser maximises β‖Gw‖²/m_G + c̃ᵀw (module docstring)."""
    beta = real_scalar("beta", beta)
    if beta < 0:
        raise InvalidParameterError(f"beta={beta} must be >= 0 (0: LESS under the budget).")
    c = np.asarray(c, np.float64)
    scale_c = float(np.mean(np.abs(c)))
    if scale_c == 0.0:
        raise InvalidInputError("the alignment scores c are all zero; the alignment term carries no information.")
    base = SelectionProblem.from_stats(stats, k, tau_rel=tau_rel, tau=tau, budget_frac=budget_frac,
                                       constraints=constraints)
    if beta == 0.0:
        prob = SelectionProblem(np.zeros((1, stats.n)), base.a, k, base.tau, c=c / scale_c,
                                constraints=base.constraints, validate=False)
    else:
        g = np.asarray(stats.G_flat, np.float64)
        m_g = float(np.einsum("ij,ij->j", g, g).mean()) if g.size else 0.0
        if m_g == 0.0:
            raise InvalidInputError("the flat coordinates G are all zero; use beta=0 (LESS under the budget).")
        prob = SelectionProblem(stats.G_flat, base.a, k, base.tau, c=(m_g / beta) * c / scale_c,
                                constraints=base.constraints, validate=False)
    prob.tau_rel, prob.budget_frac, prob.stats = base.tau_rel, base.budget_frac, stats
    return prob


@register_selector("direct-aligned")
def direct_aligned_selector(
    inp: SelectorInputs,
    *,
    beta: float = DEFAULT_BETA,
    backend: str = DEFAULT_BACKEND,
    tau_rel: float | None = DEFAULT_TAU_REL,
    tau: float | None = None,
    budget_frac: float = DEFAULT_BUDGET_FRAC,
    constraints: Iterable[Constraint] = (),
    features: str = "adam",
    group_max: bool = True,
    checkpoints: Any = None,
) -> Pick:
    """DiReCT with alignment: max β‖Gw‖²/m_G + c̃ᵀw under the stiff budget, c = faithful LESS scores.

    Options:
        beta: weight of the flat-direction energy (diversity) term; 0 gives LESS under the
            budget (LESS's top-K when the budget does not bind). Default 1: equal scale.
        backend, tau_rel, tau, budget_frac, constraints: as for ``direct`` (the budget default is
            the always-feasible one).
        features, group_max, checkpoints: as for ``less`` (faithful variant).
    Raises:
        InfeasibleProblemError when no K-subset meets the constraints.
    """
    if inp.stats is None:
        raise inp.missing_error("stats (GradientStats with val_coords and adam_coords)")
    from ..solvers import solve  # local: keeps `import direct_opt.selectors` light

    c, less_diag, _ = less_scores(inp, features=features, group_max=group_max, checkpoints=checkpoints)
    problem = aligned_problem(inp.stats, inp.k, c, beta, tau_rel=tau_rel, tau=tau, budget_frac=budget_frac,
                              constraints=constraints)
    res = solve(problem, backend=backend, seed=inp.seed)
    if not res.success:
        raise InfeasibleProblemError(
            f"selector 'direct-aligned' ({backend}, K={inp.k}, tau={problem.tau}) found no feasible selection: "
            f"{(res.message or res.status).rstrip('.')}."
        )
    w = np.zeros(inp.stats.n)
    w[res.indices] = 1.0
    diag = {"beta": float(beta), "backend": res.backend, "status": res.status, "objective": res.objective,
            "alignment_term": float(problem.c @ w), "tau": problem.tau, "tau_rel": problem.tau_rel,
            "budget_frac": problem.budget_frac, "budget_used": float(problem.a[res.indices].sum()),
            "less_score_selected_mean": float(c[res.indices].mean()), "less_score_pool_mean": float(c.mean()),
            "less": less_diag, "constraints": [con.name for con in problem.constraints]}
    return Pick(res.indices, diag, c)
