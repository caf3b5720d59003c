"""``exact``: the integer optimum for small pools, by branch and bound on the RLT model.

The program is linear in the products y_ij = x_i x_j on 0/1 points, so it is a MILP over
N + N(N-1)/2 variables (:mod:`direct_opt.bounds.rlt`); its LP relaxation with the RLT
rows (cardinality and budget times x_i) is usually within a few per cent of the optimum,
so HiGHS's branch and bound closes the gap in few nodes.  Why a MILP and not a MIQP:
maximising a convex quadratic is non-convex, which the convex MIQP solvers cvxpy reaches
cannot take; HiGHS ships with scipy, needs no licence and reports its dual bound.

Before the MILP, ``sca-exact`` and ``greedy`` give an incumbent; the better of theirs and
HiGHS's is returned, with HiGHS's bound as the certificate.  With ``time_limit`` the solve
stops early and returns the incumbent with status "time_limit" and its gap
(``res.info["gap_rel"]``).  Proven optimal (status "converged", ``res.info["proven"]``) when
HiGHS closes the gap.  Above ``max_n`` samples no MILP is built: the incumbent is returned
with status "stalled" and a message saying it is not proven.
"""

from __future__ import annotations

import time

import numpy as np

from ..bounds.rlt import RLT_MAX_N, rlt_milp
from ..problem import SelectionProblem
from .base import Backend, Context, Relaxation, register_backend


@register_backend
class Exact(Backend):
    """Proven optimum for small N: HiGHS branch and bound on the RLT linearisation (incumbent + gap with a time limit)."""

    name = "exact"
    forms = {"convex", "concave"}
    kinds = {"bounds", "linear"}
    options = {"max_n": RLT_MAX_N}
    local_search_default = False

    def relax(self, problem: SelectionProblem, ctx: Context) -> Relaxation:
        from .base import get_backend

        P = problem
        too_big = P.n > int(ctx.options["max_n"])
        t0 = time.monotonic()
        starts = []
        for name in ("sca-exact", "greedy") if P.form == "convex" else ("greedy",):
            res = get_backend(name).solve(P, max_iter=ctx.max_iter, tol=ctx.tol, seed=ctx.seed, certify="cheap",
                                          time_limit=None if ctx.deadline is None else max(ctx.deadline - time.monotonic(), 1e-3))
            if res.success:
                starts.append((res.objective, res.indices))
        if too_big:  # N^2/2 product variables would not fit: the incumbent, not proven, says so
            best = max(starts, key=lambda s: s[0])[1] if starts else None
            return Relaxation(w=None, selection=best, stalled=True,
                              message=f"N={P.n} is above max_n={ctx.options['max_n']} (the MILP would have "
                                      f"{P.n * (P.n - 1) // 2} product variables): returned the best of sca-exact "
                                      "and greedy, NOT proven optimal; raise max_n to try the MILP",
                              info={"proven": False})
        left = None if ctx.deadline is None else max(ctx.deadline - time.monotonic(), 1e-3)
        out = rlt_milp(P, time_limit=left)
        if out.indices is not None and out.indices.size == P.k:
            x = np.zeros(P.n)
            x[out.indices] = 1.0
            if P.is_feasible(x):
                starts.append((P.selection_objective(out.indices), out.indices))
        if not starts:
            return Relaxation(w=None, message=out.message + "; no incumbent found: rounded greedily")
        best_f, best = max(starts, key=lambda s: s[0])
        gap = max(0.0, (out.bound - best_f) / max(abs(out.bound), 1e-300)) if np.isfinite(out.bound) else np.inf
        optimal = out.optimal or gap <= 1e-7
        hist = [{"iter": 1, "objective": float(best_f), "step": 0.0, "gap": float(gap)}]
        return Relaxation(w=None, selection=best, upper_bound=out.bound if np.isfinite(out.bound) else None,
                          history=hist, iterations=max(out.nodes, 1), converged=optimal,
                          timed_out=not optimal and ctx.deadline is not None,
                          stalled=not optimal and ctx.deadline is None, gap=None,
                          message=f"{out.message}; {out.nodes} nodes; relative gap {gap:.2e}"
                                  + (" (proven optimal)" if optimal else ""),
                          info={"gap_rel": float(gap), "nodes": out.nodes, "proven": bool(optimal),
                                "milp_time_s": time.monotonic() - t0})
