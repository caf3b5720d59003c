"""Scale invariance of every backend: a problem and its rescaled copy give the same answer.

Solves 5 random problems (N = 24, r = 4, K = 5, budget 1.1 x the smallest feasible one) and
five rescaled copies of each (G x 1e-30, G x 1e30, a and tau x 1e-12, a and tau x 1e12, and
both G x 1e-30 and a, tau x 1e-12) with every backend, and prints how many of the 25
rescaled solves pick the same samples as the original and the largest difference of
certified ratio.  Decimal factors change the inputs' last bits, so this is the practical
case; tests/reliability/test_scale_invariance.py checks exact (power-of-two) rescalings.

    python benchmarks/scale_invariance.py
"""

from __future__ import annotations

import warnings

import numpy as np

from direct_opt import SelectionProblem, available_backends, solve

RESCALINGS = [(1e-30, 1.0), (1e30, 1.0), (1.0, 1e-12), (1.0, 1e12), (1e-30, 1e-12)]


def problem(seed: int, s_g: float, s_a: float) -> SelectionProblem:
    rng = np.random.default_rng(seed)
    G, a = rng.standard_normal((4, 24)), rng.random(24) + 0.05
    tau = 1.1 * float(np.sort(a)[:5].sum())
    return SelectionProblem(G * s_g, a * s_a, 5, tau=tau * s_a)


def main() -> int:
    warnings.filterwarnings("ignore")
    print("| backend | same selection | max certified-ratio difference |")
    print("|---|---|---|")
    bad = 0
    for backend in available_backends():
        same = total = 0
        worst = 0.0
        for seed in range(5):
            base = solve(problem(seed, 1.0, 1.0), backend=backend)
            for s_g, s_a in RESCALINGS:
                res = solve(problem(seed, s_g, s_a), backend=backend)
                total += 1
                same += list(res.indices) == list(base.indices)
                worst = max(worst, abs((res.certified_ratio or 0.0) - (base.certified_ratio or 0.0)))
        bad += same < total
        print(f"| {backend} | {same}/{total} | {worst:.1e} |")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
