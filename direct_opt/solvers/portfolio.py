"""``auto``: a portfolio that never loses to its own members.

Runs, on the same problem, the cheap members that complement each other and keeps the
best feasible selection, then polishes it with the 1-swap local search of the shared
rounding (from that selection as a start):

* ``sca-exact`` from its two starts (the LMO vertex of the column norms, and the
  projection of (K/N) 1) — the continuous route;
* ``greedy`` (by marginal gain) while N K is at most ``greedy_max_nk`` — the integer route;
* ``exact`` (HiGHS on the RLT model) for N <= ``exact_max_n``, given what is left of
  ``time_limit`` (default ``exact_time``), which makes small problems proven optimal.

The result's ``info["members"]`` gives each member's objective and CPU-independent wall
time, so the cost of the portfolio is on record; ``time_s`` is the total.
"""

from __future__ import annotations

import time

import numpy as np

from ..problem import SelectionProblem
from .base import Backend, Context, Relaxation, get_backend, register_backend


@register_backend
class Auto(Backend):
    """Portfolio: sca-exact (two starts), greedy and, for small N, exact; keeps the best (never worse than a member)."""

    name = "auto"
    forms = {"convex"}
    kinds = {"bounds", "linear"}
    options = {"greedy_max_nk": 2e7, "exact_max_n": 60, "exact_time": 10.0}
    local_search_default = True

    def relax(self, problem: SelectionProblem, ctx: Context) -> Relaxation:
        P, o = problem, ctx.options
        plan: list[tuple[str, dict]] = [("sca-exact", {"init": "norms"}), ("sca-exact", {"init": "center"})]
        if P.n * P.k <= float(o["greedy_max_nk"]):
            plan.append(("greedy", {}))
        if P.n <= int(o["exact_max_n"]):
            plan.append(("exact", {}))
        members, best, best_rel = [], None, None
        for name, opts in plan:
            left = None if ctx.deadline is None else ctx.deadline - time.monotonic()
            if left is not None and left <= 0 and best is not None:
                members.append({"member": name, **opts, "skipped": "time limit"})
                continue
            if name == "exact":
                left = float(o["exact_time"]) if left is None else min(left, float(o["exact_time"]))
            t0 = time.monotonic()
            res = get_backend(name).solve(P, max_iter=ctx.max_iter, tol=ctx.tol, seed=ctx.seed, certify="cheap",
                                          time_limit=None if left is None else max(left, 1e-3), **opts)
            row = {"member": name, **opts, "status": res.status, "time_s": time.monotonic() - t0,
                   "objective": res.objective if res.success else None}
            members.append(row)
            if res.success and (best is None or res.objective > best.objective):
                best, best_rel = res, (name, opts)
        if best is None:
            return Relaxation(w=None, message="no member found a feasible selection", info={"members": members})
        label = best_rel[0] + (f"(init={best_rel[1]['init']})" if best_rel[1] else "")
        ub = best.upper_bound if best.backend == "exact" and best.status == "converged" else None
        return Relaxation(w=None, selection=best.indices, upper_bound=ub, history=best.history,
                          iterations=sum(1 for m in members if "objective" in m), converged=True,
                          message=f"best of {len(members)} members: {label}",
                          info={"members": members, "best_member": label})
