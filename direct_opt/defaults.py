"""The toolkit's defaults in one place (every module that needs one imports it from here).

* :data:`TAU_REL` — the paper's relative stiff budget: tau = TAU_REL * mean(a) * K (0.1), an
  option (it can admit no selection);
* :data:`BUDGET_FRAC` — the default, always-feasible budget: tau = tau_min + BUDGET_FRAC *
  (mean(a) K - tau_min), tau_min the cost of the K cheapest samples (``problem.feasible_budget``);
* :data:`SOLVER_BACKEND` — the backend used when none is named;
* :data:`COMPARE_BACKENDS` — ``direct-opt compare``'s default list (the first is the Jaccard
  reference, the paper-faithful baseline last);
* :data:`DEMO_BACKENDS` — the backends ``direct-opt demo`` compares by default.

A leaf module: it imports nothing from the package.
"""

from __future__ import annotations

TAU_REL = 0.1
BUDGET_FRAC = 0.1
SOLVER_BACKEND = "sca-exact"
#: sca-osqp (the general cvxpy backend) is left out: slow on the standard program (most of the run
#: time at N = 5000) and meant for constraints only cvxpy can express; add it with --backends.
COMPARE_BACKENDS = ("sca-exact", "frank-wolfe", "fw-block", "greedy", "random", "pga-dykstra")
DEMO_BACKENDS = ("sca-exact", "greedy", "frank-wolfe", "fw-block", "pga-dykstra")
