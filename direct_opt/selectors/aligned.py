"""Selectors that add the curvature geometry to a validation-alignment score (docs/less.md).

Both solve a :class:`~direct_opt.problem.SelectionProblem` over w ∈ {0,1}^N, 1ᵀw = K (+ constraints),
with G = the flat eigen-coordinates (as ``direct``), m_G = mean_i ‖G e_i‖² (so ‖Gw‖²/m_G is ~K for
K unrelated samples) and c̃ = c / mean_i |c_i| (c: the alignment scores), so both terms are on
the same scale:

* ``direct-aligned``:  max β ‖Gw‖²/m_G + c̃ᵀw  s.t. aᵀw <= τ — the paper's program (samples that
  push together along flat directions, within the stiff budget) aimed at the validation data.
  β = 0 is the best alignment subset under the budget; large β tends to ``direct``. Solved as
  ‖Gw‖² + (m_G/β) c̃ᵀw (the same maximiser for β > 0).
* ``less-diverse``:  max c̃ᵀw − ½ λ ‖Gw‖²/m_G — LESS with a redundancy penalty: samples whose
  flat-direction components add up (near-duplicates) cost more. A concave objective: the
  relaxation is solved to global optimality (pairwise ``frank-wolfe``, ``sca-osqp``) and the duality gap
  certifies the integer selection. λ = 0 is LESS's top-K; no stiff budget unless one is given.

The alignment c is the faithful LESS score (``alignment="less"``) or, for ``direct-aligned``, the
one-sample Taylor gain Δ({i}) = η ḡᵀx_i − (η²/2) x_iᵀ F x_i of a step along sample i's Adam
(or plain-gradient) direction (``alignment="taylor"``, see ``taylor-fisher``).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from ..constraints import Constraint
from ..errors import InfeasibleProblemError, InvalidInputError, InvalidParameterError
from ..problem import DEFAULT_BUDGET_FRAC, SelectionProblem
from ..stats import GradientStats, real_scalar
from .base import Pick, SelectorInputs, register_selector
from .direct import DEFAULT_BACKEND, DEFAULT_TAU_REL
from .gradient import (DEFAULT_TAYLOR_ETA, _check_eta, _need_taylor_fields, _taylor_pick,
                       less_scores, stats_taylor_terms, taylor_singleton_gains)

#: Default weight of the curvature (diversity) term relative to the alignment term.
DEFAULT_BETA = 1.0
#: Default redundancy weight of ``less-diverse``: the best of λ ∈ {0.3, 1, 3, 10, 30, 100, 300, 1000,
#: 10000} on the stdlib corpus (K = 200 of 2000, 3 seeds; a plateau from 30 to 10000), fixed before
#: the confirmation corpora were run (docs/evaluation.md).
DEFAULT_LAM = 100.0
#: ``less-diverse``'s default solver: pairwise Frank–Wolfe on the concave relaxation (O(r N) per step,
#: memory O(N) beyond G). On the three evaluation corpora's statistics (N = 2000, r ≈ 430, λ = 100) it found
#: higher integer objectives than ``sca-osqp`` (Clarabel on the whole relaxation, 6–7 s: 53.8 → 75.7,
#: 158.9 → 165.8, 100.8 → 128.0) with upper bounds within 1 % of its exact relaxed optimum, in 1–7 s.
DIVERSE_BACKEND = "frank-wolfe"
DIVERSE_SOLVER_OPTIONS = {"variant": "pairwise", "max_iter": 2000}
ALIGNMENTS = ("less", "taylor")
#: selectors whose default features are the Adam update directions, and the option that switches them
ADAM_FEATURE_OPTION = {"less": "features", "direct-aligned": "features", "less-diverse": "features",
                       "taylor-fisher": "step"}


def wants_adam_features(name: str | None, options: dict[str, Any]) -> bool:
    """True when selector ``name`` with ``options`` needs ``stats.adam_coords`` (the checkpoint's Adam state)."""
    opt = ADAM_FEATURE_OPTION.get(name or "")
    return (opt is not None and options.get("variant", "faithful") == "faithful"
            and options.get(opt, "adam") == "adam")


def _weight(name: str, value: float, zero_means: str) -> float:
    value = real_scalar(name, value)
    if value < 0:
        raise InvalidParameterError(f"{name}={value} must be >= 0 (0: {zero_means}).")
    return value


def aligned_problem(stats: GradientStats, k: int, c: np.ndarray, weight: float, *, form: str = "convex",
                    tau_rel: float | None = None, tau: float | None = None,
                    budget_frac: float | None = DEFAULT_BUDGET_FRAC,
                    constraints: Iterable[Constraint] = ()) -> SelectionProblem:
    """The :class:`SelectionProblem` whose maximiser maximises c̃ᵀw ± weight·‖Gw‖²/m_G.

    ``form="convex"``: + β‖Gw‖²/m_G (``direct-aligned``, weight = β); ``"concave"``: − ½λ‖Gw‖²/m_G
    (``less-diverse``, weight = λ). The stiff budget aᵀw <= τ comes from ``tau`` / ``tau_rel`` /
    ``budget_frac`` as in :meth:`SelectionProblem.from_stats`; all three None: no budget.
    """
    c = np.asarray(c, np.float64)
    scale_c = float(np.mean(np.abs(c)))
    if scale_c == 0.0:
        raise InvalidInputError("the alignment scores c are all zero; the alignment term carries no information.")
    budget = not (tau is None and tau_rel is None and budget_frac is None)
    if budget:  # from_stats resolves tau / tau_rel / budget_frac into an absolute budget
        base = SelectionProblem.from_stats(stats, k, tau_rel=tau_rel, tau=tau,
                                           budget_frac=DEFAULT_BUDGET_FRAC if budget_frac is None else budget_frac,
                                           constraints=constraints)
        a, tau_abs, constraints = base.a, base.tau, base.constraints
    else:
        a, tau_abs = stats.a_stiff, None
    g, c_t = np.zeros((1, stats.n)), c / scale_c
    if weight > 0.0:
        g = np.asarray(stats.G_flat, np.float64)
        m_g = float(np.einsum("ij,ij->j", g, g).mean()) if g.size else 0.0
        if m_g == 0.0:
            raise InvalidInputError("the flat coordinates G are all zero; set the curvature weight to 0.")
        if form == "convex":
            c_t = (m_g / weight) * c_t
        else:
            g = math.sqrt(weight / m_g) * g
    prob = SelectionProblem(g, a, k, tau_abs, c=c_t, form=form, constraints=constraints, validate=not budget)
    prob.tau_rel, prob.budget_frac = (base.tau_rel, base.budget_frac) if budget else (None, None)
    prob.stats = stats
    return prob


def alignment_scores(inp: SelectorInputs, alignment: str, *, features: str, group_max: bool, checkpoints: Any,
                     eta: float | None) -> tuple[np.ndarray, dict[str, Any]]:
    """(N,) alignment scores c and their description: faithful LESS scores or one-sample Taylor gains."""
    if alignment not in ALIGNMENTS:
        raise InvalidParameterError(f"alignment={alignment!r}; choose one of {ALIGNMENTS}.")
    if alignment == "less":
        if eta is not None:
            raise InvalidParameterError("eta is an option of alignment='taylor'; drop it or set alignment='taylor'.")
        c, diag, _ = less_scores(inp, features=features, group_max=group_max, checkpoints=checkpoints)
        return c, {"alignment": "less", "less": diag}
    if checkpoints is not None or group_max is not True:
        raise InvalidParameterError("group_max and checkpoints are options of alignment='less'.")
    eta = _check_eta(DEFAULT_TAYLOR_ETA if eta is None else eta)
    U, gv, lam = stats_taylor_terms(_need_taylor_fields(inp, features), features)
    return taylor_singleton_gains(np.asarray(U, np.float64), gv, lam, eta), {
        "alignment": "taylor", "eta": eta, "step": features,
        "score": "one-sample Taylor gain eta g_valᵀx_i - eta²/2 x_iᵀ F x_i"}


def _solve(inp: SelectorInputs, name: str, problem: SelectionProblem, backend: str, c: np.ndarray,
           diag: dict[str, Any], **solver_options: Any) -> Pick:
    """Solve ``problem``, refuse an infeasible answer, and describe the selection."""
    from ..solvers import solve  # local: keeps `import direct_opt.selectors` light

    res = solve(problem, backend=backend, seed=inp.seed, **solver_options)
    if not res.success:
        raise InfeasibleProblemError(
            f"selector {name!r} ({backend}, K={inp.k}, tau={problem.tau}) found no feasible selection: "
            f"{(res.message or res.status).rstrip('.')}."
        )
    w = np.zeros(inp.stats.n)
    w[res.indices] = 1.0
    diag = {**diag, "backend": res.backend, "status": res.status, "objective": res.objective,
            "upper_bound": res.upper_bound, "certified_ratio": res.certified_ratio, "gap": res.gap,
            "alignment_term": float(problem.c @ w), "tau": problem.tau,
            "tau_rel": getattr(problem, "tau_rel", None), "budget_frac": getattr(problem, "budget_frac", None),
            "budget_used": float(problem.a[res.indices].sum()),
            "alignment_selected_mean": float(c[res.indices].mean()), "alignment_pool_mean": float(c.mean()),
            "constraints": [con.name for con in problem.constraints]}
    return Pick(res.indices, diag, c)


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
    alignment: str = "less",
    features: str = "adam",
    group_max: bool = True,
    checkpoints: Any = None,
    eta: float | None = None,
) -> Pick:
    """DiReCT with alignment: max β‖Gw‖²/m_G + c̃ᵀw under the stiff budget.

    Options:
        beta: weight of the flat-direction energy term; 0 gives the best alignment subset under
            the budget (LESS's top-K when the budget does not bind). Default 1: equal scale.
        backend, tau_rel, tau, budget_frac, constraints: as for ``direct`` (the budget default is
            the always-feasible one).
        alignment: ``"less"`` (default: c = faithful LESS scores) or ``"taylor"`` (c = one-sample
            Taylor gains, ``taylor-fisher``'s estimate for one sample).
        features: ``"adam"`` (default) or ``"sgd"``: LESS's training features, or the Taylor step.
        group_max, checkpoints: as for ``less`` (alignment="less").
        eta: Taylor step size (alignment="taylor"; default the ``taylor`` default).
    Raises:
        InfeasibleProblemError when no K-subset meets the constraints.
    """
    if inp.stats is None:
        raise inp.missing_error("stats (GradientStats with val_coords and adam_coords)")
    beta = _weight("beta", beta, "the best alignment subset under the budget")
    c, diag = alignment_scores(inp, alignment, features=features, group_max=group_max, checkpoints=checkpoints,
                               eta=eta)
    problem = aligned_problem(inp.stats, inp.k, c, beta, tau_rel=tau_rel, tau=tau, budget_frac=budget_frac,
                              constraints=constraints)
    return _solve(inp, "direct-aligned", problem, backend, c, {"beta": beta, **diag})


@register_selector("less-diverse")
def less_diverse_selector(
    inp: SelectorInputs,
    *,
    lam: float = DEFAULT_LAM,
    backend: str | None = None,
    max_iter: int | None = None,
    tau_rel: float | None = None,
    tau: float | None = None,
    budget_frac: float | None = None,
    constraints: Iterable[Constraint] = (),
    features: str = "adam",
    group_max: bool = True,
    checkpoints: Any = None,
) -> Pick:
    """LESS with a redundancy penalty: max c̃ᵀw − ½λ‖Gw‖²/m_G, c = faithful LESS scores.

    Options:
        lam: weight λ of the flat-direction redundancy penalty; 0 gives LESS's top-K. Default 100
            (:data:`DEFAULT_LAM`, tuned on one corpus).
        backend: a backend solving the concave form. Default (None): pairwise Frank–Wolfe,
            :data:`DIVERSE_SOLVER_OPTIONS` (O(r N) per step); ``sca-osqp`` solves the relaxation exactly
            as one convex program (Clarabel; memory O(r N), seconds at N = 2000); ``greedy``;
            ``exact`` for small pools.
        max_iter: outer iterations of the backend (default 2000 for the default solver).
        tau_rel, tau, budget_frac: a stiff budget as for ``direct``; default none.
        constraints: extra constraints (quotas, exclusions, ...).
        features, group_max, checkpoints: as for ``less``.
    Diagnostics carry the certificate: ``upper_bound`` (relaxed optimum + duality gap) and
    ``certified_ratio`` = objective / upper_bound.
    """
    if inp.stats is None:
        raise inp.missing_error("stats (GradientStats with val_coords and adam_coords)")
    lam = _weight("lam", lam, "LESS's top-K")
    c, diag = alignment_scores(inp, "less", features=features, group_max=group_max, checkpoints=checkpoints,
                               eta=None)
    problem = aligned_problem(inp.stats, inp.k, c, lam, form="concave", tau_rel=tau_rel, tau=tau,
                              budget_frac=budget_frac, constraints=constraints)
    opts = dict(DIVERSE_SOLVER_OPTIONS) if backend is None else {}
    if max_iter is not None:
        opts["max_iter"] = max_iter
    return _solve(inp, "less-diverse", problem, backend or DIVERSE_BACKEND, c, {"lam": lam, **diag}, **opts)


@register_selector("taylor-fisher")
def taylor_fisher_selector(inp: SelectorInputs, *, eta: float = DEFAULT_TAYLOR_ETA, normalize: str = "mean",
                           step: str = "adam", backend: str | None = None,
                           constraints: Iterable[Constraint] = ()) -> Pick:
    """GREATS-style Taylor selection with the step the optimiser would take: Adam.

    Δ(S) = eta ḡᵀs − (eta²/2) sᵀ F s with F = the sketched validation Fisher (diag(eigvals) in
    the eigen-coordinates) and s = the mean of the selected samples' Adam update directions
    m̂/(√v̂+ε) (``stats.adam_coords``, computed from the checkpoint's optimizer state, as LESS's
    features): with eta = the annealing peak LR, Δ predicts the loss decrease in nats of one
    real AdamW step (up to the sketch's JL error). Greedy as GREATS (:func:`greedy_taylor`).

    Δ is the concave quadratic cᵀw − ½‖Bw‖² of w (c = (eta/K) Aᵀḡ, B = (eta/K) F^½ A, A the step
    directions), so with ``constraints`` or a ``backend`` it is solved as that
    :class:`SelectionProblem` (default backend ``greedy``: the same marginal-gain rule, kept
    feasible, then 1-swap local search; ``sca-osqp``: the global relaxed optimum, certified).

    Options:
        eta: step size (default :data:`DEFAULT_TAYLOR_ETA`: set it to your peak LR).
        normalize: as :func:`greedy_taylor` (default ``"mean"``; ``"mean"`` with a backend).
        step: ``"adam"`` (default) or ``"sgd"`` (plain gradients: exactly selector ``taylor``).
        backend, constraints: see above.
    Selection.scores: the singleton gains Δ({i}).
    """
    if backend is None and not list(constraints):
        return _taylor_pick(inp, eta, normalize, step)
    if normalize != "mean":
        raise InvalidParameterError(f"normalize={normalize!r} is only available without backend/constraints; "
                                    "with them the step is the mean direction (normalize='mean').")
    eta = _check_eta(eta)
    U, gv, lam = stats_taylor_terms(_need_taylor_fields(inp, step), step)
    e = eta / inp.k
    U = np.asarray(U, np.float64)
    problem = SelectionProblem(e * np.sqrt(lam)[:, None] * U, np.zeros(inp.n), inp.k, c=e * (gv @ U),
                               form="concave", constraints=constraints, validate=False)
    single = taylor_singleton_gains(U, gv, lam, e)
    pick = _solve(inp, "taylor-fisher", problem, backend or "greedy", single,
                  {"eta": eta, "normalize": normalize, "step": step})
    pick.diagnostics["predicted_decrease"] = pick.diagnostics["objective"]  # Δ(S) is the program's objective
    return pick
