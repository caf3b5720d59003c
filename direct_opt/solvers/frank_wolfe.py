"""Frank–Wolfe family over the relaxation, driven by the shared oracle.

Along a direction d the objective is the 1-D quadratic
    phi(gamma) = f(w) + gamma * grad^T d + q * gamma^2 * ||G d||^2,
maximised exactly on [0, gamma_max]: at an end point for the convex form (q > 0),
at the clipped stationary point for the concave form (q < 0).

* ``frank-wolfe``: vanilla, away-step or pairwise variants (``variant``).  For the
  convex form the vanilla exact line search always takes gamma = 1, i.e. it coincides
  with LP-SCA; the away/pairwise variants and the concave form are where it differs.
* ``fw-block``: memoryless randomised block-coordinate FW (BLADE-style): each step
  updates one random block B with the rest frozen, over the block polytope with
  K_B = sum_{i in B} w_i and the residual budget; G w is updated incrementally.
  ``max_iter`` counts passes over the data (epochs).
"""

from __future__ import annotations

import numpy as np

from ..problem import SelectionProblem
from ..stats import int_scalar
from .base import Backend, Context, Relaxation, record_iteration, register_backend
from .sca import initial_point


def line_search(q: float, slope: float, curv: float, gamma_max: float) -> float:
    """argmax over [0, gamma_max] of gamma*slope + q*gamma^2*curv (curv = ||G d||^2 >= 0)."""
    if q > 0:
        return gamma_max if gamma_max * slope + q * gamma_max**2 * curv > 0 else 0.0
    if curv <= 0:
        return gamma_max if slope > 0 else 0.0
    return float(np.clip(-slope / (2.0 * q * curv), 0.0, gamma_max))


@register_backend
class FrankWolfe(Backend):
    """Frank–Wolfe with exact line search; variant 'vanilla' | 'away' | 'pairwise'."""

    name = "frank-wolfe"
    forms = {"convex", "concave"}
    kinds = {"bounds", "linear"}
    options = {"variant": "vanilla", "init": "norms"}

    def relax(self, problem: SelectionProblem, ctx: Context) -> Relaxation:
        from ..errors import InvalidParameterError

        P = problem
        variant = ctx.options["variant"]
        if variant not in ("vanilla", "away", "pairwise"):
            raise InvalidParameterError(f"variant must be 'vanilla', 'away' or 'pairwise', got {variant!r}.")
        oracle = ctx.oracle
        if variant == "vanilla":
            w = initial_point(P, oracle, ctx.options["init"])
            active: list[list] = []
        else:  # active-set variants start at a vertex
            w = oracle.lmo(P.op.col_sq_norms() if P.form == "convex" else P.gradient(np.zeros(P.n)))
            active = [[w.copy(), 1.0]]
        p = P.op.matvec(w)
        history, stop, gap, t = [], None, np.inf, 0
        for t in range(1, ctx.max_iter + 1):
            grad = P.gradient(w, p)
            v = oracle.lmo(grad)
            gap = max(0.0, float(grad @ (v - w)))
            d, gmax, kind = v - w, 1.0, "fw"
            if active:
                scores = [float(grad @ s) for s, _ in active]
                ia = int(np.argmin(scores))
                s_a, alpha = active[ia]
                if variant == "pairwise":
                    d, gmax, kind = v - s_a, alpha, "pair"
                elif float(grad @ (w - s_a)) > gap and alpha < 1.0:
                    d, gmax, kind = w - s_a, alpha / (1.0 - alpha), "away"
            Gd = P.op.matvec(d)
            gamma = line_search(P.q, float(grad @ d), float(Gd @ Gd), gmax)
            w = w + gamma * d
            p = p + gamma * Gd
            if active and gamma > 0:
                _update_active(active, kind, gamma, v, ia)
            step = gamma * float(np.linalg.norm(d))
            f = P.value_from(p, w)
            stop = record_iteration(history, ctx, t, f, step, gap)
            if stop is None and gap <= 1e-12 * abs(f):
                stop = "converged"
            if stop:
                break
        grad = P.gradient(w, p)
        gap = max(0.0, float(grad @ (oracle.lmo(grad) - w)))
        return Relaxation(w=np.clip(w, P.lb, P.ub), history=history, iterations=t, converged=stop == "converged",
                          timed_out=stop == "time_limit", gap=gap, message=getattr(oracle, "message", ""))


def _update_active(active: list, kind: str, gamma: float, v: np.ndarray, ia: int) -> None:
    """Update convex-combination weights of the active vertex set after a step."""
    def add(vertex: np.ndarray, amount: float) -> None:
        for item in active:
            if np.array_equal(item[0], vertex):
                item[1] += amount
                return
        active.append([vertex.copy(), amount])

    if kind == "fw":
        for item in active:
            item[1] *= 1.0 - gamma
        add(v, gamma)
    elif kind == "away":
        for item in active:
            item[1] *= 1.0 + gamma
        active[ia][1] -= gamma
    else:  # pairwise
        active[ia][1] -= gamma
        add(v, gamma)
    active[:] = [it for it in active if it[1] > 1e-12]


@register_backend
class FWBlock(Backend):
    """Memoryless randomised block-coordinate Frank–Wolfe (max_iter = epochs)."""

    name = "fw-block"
    forms = {"convex", "concave"}
    kinds = {"bounds"}
    options = {"block_size": None, "init": "norms"}

    def relax(self, problem: SelectionProblem, ctx: Context) -> Relaxation:
        P = problem
        rng = np.random.default_rng(ctx.seed)
        oracle = ctx.oracle
        if "restrict" not in getattr(oracle, "capabilities", ()):
            from ..errors import InvalidParameterError

            raise InvalidParameterError(f"fw-block needs an oracle that can restrict itself to a block "
                                        f"(capability 'restrict'); {type(oracle).__name__} cannot.")
        w = initial_point(P, oracle, ctx.options["init"])
        p = P.op.matvec(w)
        b = ctx.options["block_size"]
        if b is not None:
            b = int_scalar("option block_size", b, minimum=1)
        # default N/8, capped at half a streamed block (its float64 copy = one float32 block)
        b = b or max(256, min(int(np.ceil(P.n / 8)), P.op.block_cols // 2))
        b = int(min(max(1, b), P.n))
        history, stop, t, steps = [], None, 0, 0
        for t in range(1, ctx.max_iter + 1):
            w_start = w.copy()
            perm = rng.permutation(P.n)
            for s in range(0, P.n, b):
                B = np.sort(perm[s : s + b])
                GB = P.op.columns(B)  # (r, |B|)
                wB = w[B]
                gradB = 2.0 * P.q * (GB.T @ p) + (P.c[B] if P.c is not None else 0.0)
                kB = float(wB.sum())
                tauB = None
                if P.tau is not None:  # residual budget, never below the block's own usage
                    tauB = max(P.tau - float(P.a @ w) + float(P.a[B] @ wB), float(P.a[B] @ wB))
                poly = oracle.restrict(B, kB, tauB)
                d = poly.lmo(gradB) - wB
                slope = float(gradB @ d)
                if slope <= 0:
                    continue
                Gd = GB @ d
                gamma = line_search(P.q, slope, float(Gd @ Gd), 1.0)
                w[B] = np.clip(wB + gamma * d, P.lb[B], P.ub[B])
                p = p + gamma * Gd
                steps += 1
            p = P.op.matvec(w)  # refresh against drift once per epoch
            grad = P.gradient(w, p)
            gap = max(0.0, float(grad @ (oracle.lmo(grad) - w)))
            step = float(np.linalg.norm(w - w_start))
            stop = record_iteration(history, ctx, t, P.value_from(p, w), step, gap)
            if stop:
                break
        return Relaxation(w=w, history=history, iterations=t, converged=stop == "converged",
                          timed_out=stop == "time_limit",
                          gap=history[-1]["gap"] if history else None,
                          message=f"block size {b}, {steps} block steps", info={"block_size": b, "block_steps": steps})
