"""Solver benchmark: every backend side by side on generated instances, ratios vs the paper's top-K.

    python benchmarks/solvers.py                       # N in {2000, 10000, 50000}, r=256, K=N/10, tau_rel=0.1
    python benchmarks/solvers.py --sizes 2000 --r 64   # other sizes
    python benchmarks/solvers.py --device cuda         # G as a CUDA tensor
    python benchmarks/solvers.py --scale ...           # out-of-core / time-vs-N study (benchmarks/scale.py)

Instances imitate gradient statistics (a shared direction, heavy-tailed per-sample
scales, stiff costs from decaying eigenvalues); they are generated from a seed and
are not tuned to favour any backend.  Printed per backend: CPU time (time.process_time;
run with OMP_NUM_THREADS=1), speed-up over pga-dykstra (measured in the same run), integer
objective relative to **the paper's own top-K** of pga-dykstra's iterate (as the paper
reports it, whether or not it meets the budget; its budget excess is printed),
feasibility, certified ratio, iterations.  When the paper's package is installed
(``direct`` from github.com/xuyj233/Direct, its ``direct.sca.sca_solver``), it runs too,
as shipped, as the row ``paper-code`` (its top-K).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from direct_opt import SelectionProblem, available_backends, solve  # noqa: E402


def make_instance(n: int, r: int, seed: int = 0, k_stiff: int = 32):
    """(G (r, N) float32, a (N,)) imitating sketched eigen-coordinates."""
    rng = np.random.default_rng(seed)
    scale = rng.lognormal(0.0, 0.5, n)  # per-sample gradient norms vary
    shared = rng.standard_normal(r) / np.sqrt(r)
    align = rng.normal(0.3, 0.3, n)  # how much each sample follows the shared direction
    G = (rng.standard_normal((r, n)) + 3.0 * np.outer(shared, align)) * scale
    lam = 1.0 / np.arange(1, k_stiff + 1)
    Gs = rng.standard_normal((k_stiff, n)) * scale
    a = (lam[:, None] * Gs**2).sum(0)
    return G.astype(np.float32), a


def paper_code():
    """The paper's own solver (``direct.sca.sca_solver``) when its package is installed, else None."""
    try:
        from direct.sca import sca_solver  # github.com/xuyj233/Direct
    except ImportError:
        return None
    return sca_solver


def run_paper_code(sca_solver, G, a, k, tau):
    """(CPU s, top-K indices) of the paper's code run as shipped."""
    t = time.process_time()
    w = sca_solver(np.asarray(G, dtype=np.float64), a, k, tau)
    top = np.argsort(-w, kind="stable")[:k]
    return time.process_time() - t, top


def run(sizes, r, backends, device, seed, osqp_max_n, out=print):
    rows = []
    paper = paper_code()
    if paper is None:
        out("paper code (package `direct`, github.com/xuyj233/Direct) not installed: its row is skipped")
    for n in sizes:
        G, a = make_instance(n, r, seed)
        if device != "cpu":
            import torch

            G = torch.as_tensor(G, device=device)
        k = n // 10
        results = {}
        prob = SelectionProblem(G, a, k=k, tau=0.1 * a.mean() * k)
        for b in backends:
            if (b == "sca-osqp" and n > osqp_max_n) or (b == "exact" and n > 60):
                continue
            t = time.process_time()
            res = solve(prob, backend=b, seed=seed)
            results[b] = (time.process_time() - t, res)
        ref_t, ref = results.get("pga-dykstra", (None, None))
        ref_f = ref.info["paper_topk_objective"] if ref is not None else None
        out(f"\nN={n} r={r} K={k} tau_rel=0.1 device={device}")
        if ref is not None:
            out(f"reference: pga-dykstra's own top-K, f = {ref_f:.6g}, budget excess "
                f"{100 * ref.info['topk_budget_violation']:.2f} % ({'feasible' if ref.info['paper_topk_feasible'] else 'INFEASIBLE: the returned selection is its repair'})")
        out(f"{'backend':12s} {'cpu_s':>9s} {'speedup':>9s} {'obj/paper':>9s} {'feasible':>9s} {'cert':>7s} {'iters':>6s}")
        if paper is not None:
            t, top = run_paper_code(paper, G if device == "cpu" else G.cpu().numpy(), a, k, prob.tau)
            f = prob.selection_objective(top)
            excess = max(0.0, float(a[top].sum()) / prob.tau - 1)
            out(f"{'paper-code':12s} {t:9.3f} {ref_t / t if ref_t else float('nan'):9.1f} "
                f"{f / ref_f if ref_f else float('nan'):9.4f} {str(excess == 0):>9s}     n/a      -  (budget excess {100 * excess:.2f} %)")
            rows.append({"n": n, "backend": "paper-code", "time_s": t, "objective": f, "feasible": excess == 0,
                         "budget_excess": excess, "objective_vs_paper_topk": f / ref_f if ref_f else None})
        for b, (t, res) in results.items():
            speed = f"{ref_t / t:9.1f}" if ref_t else "      n/a"
            rel = f"{res.objective / ref_f:9.4f}" if ref_f else "      n/a"
            cert = f"{res.certified_ratio:7.3f}" if res.certified_ratio is not None else "    n/a"
            out(f"{b:12s} {t:9.3f} {speed} {rel} {str(res.feasible):>9s} {cert} {res.iterations:6d}")
            rows.append({"n": n, "backend": b, "time_s": t, "objective": res.objective, "feasible": res.feasible,
                         "certified_ratio": res.certified_ratio, "iterations": res.iterations,
                         "speedup_vs_pga": ref_t / t if ref_t else None,
                         "objective_vs_paper_topk": res.objective / ref_f if ref_f else None})
        if ref is not None:
            out(f"pga-dykstra note: {ref.message}")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="2000,10000,50000")
    p.add_argument("--r", type=int, default=256)
    p.add_argument("--backends", default=",".join(available_backends()))
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--osqp-max-n", type=int, default=10000, help="skip sca-osqp above this N (it is slow)")
    p.add_argument("--json", default=None, help="also write the rows as JSON here")
    p.add_argument("--scale", action="store_true", help="run the out-of-core scaling study instead (benchmarks/scale.py)")
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--scale" in argv:  # every other argument belongs to the scaling study
        sys.path.insert(0, os.path.dirname(__file__))
        import scale

        return scale.main([a for a in argv if a != "--scale"])
    args, rest = p.parse_known_args(argv)
    if rest:
        p.error(f"unrecognized arguments: {rest}")
    backends = args.backends.split(",")
    if "pga-dykstra" in backends:  # the reference first
        backends = ["pga-dykstra"] + [b for b in backends if b != "pga-dykstra"]
    rows = run([int(s) for s in args.sizes.split(",")], args.r, backends, args.device, args.seed, args.osqp_max_n)
    if args.json:
        import json

        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
