"""Integer-only backends: ``greedy`` (best marginal gain) and ``random`` (feasible baseline)."""

from __future__ import annotations

import numpy as np

from ..problem import SelectionProblem
from .base import Backend, Context, Relaxation, register_backend


@register_backend
class Greedy(Backend):
    """Add, K times, the sample with the best marginal gain q(2 p^T g_j + ||g_j||^2) + c_j that keeps
    every constraint completable; then 1-swap local search."""

    name = "greedy"
    forms = {"convex", "concave"}
    kinds = {"bounds", "linear", "quadratic", "custom"}

    def relax(self, problem: SelectionProblem, ctx: Context) -> Relaxation:
        return Relaxation(w=None, iterations=problem.k, converged=True, message="greedy by marginal gain")


@register_backend
class RandomFeasible(Backend):
    """A random feasible selection: samples visited in a seeded uniformly random order and added
    when they keep every constraint completable (uniform when the constraints do not bind)."""

    name = "random"
    forms = {"convex", "concave"}
    kinds = {"bounds", "linear", "quadratic", "custom"}
    local_search_default = False

    def relax(self, problem: SelectionProblem, ctx: Context) -> Relaxation:
        priority = np.random.default_rng(ctx.seed).random(problem.n)
        return Relaxation(w=None, iterations=1, converged=True, priority=priority,
                          message="random feasible order (seeded)")
