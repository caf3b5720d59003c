"""Optimality evidence: backends against the optimum, bounds against the best known value.

    OMP_NUM_THREADS=1 python benchmarks/certify.py --json runs/certify.json     # docs/certificates.md
    OMP_NUM_THREADS=1 python benchmarks/certify.py --demo 120                    # real statistics (demo model)

Instances: the three families of :mod:`direct_opt.instances` (Gaussian decaying scales,
clustered, heavy-tailed) at tau_rel 0.1 / 0.3 / 1.0, K = N/5 (small) or N/10, infeasible
draws skipped.  Small N: the optimum by enumerating every K-subset; larger N: the best
value any backend found ("best known").  Printed per size: f/opt (or f/best) per backend
(min, median, share >= 0.99), the certified ratio best/bound per bound method (median,
min) with its CPU time, and CPU times (time.process_time, one thread).  pga-dykstra is
scored on the paper's own top-K (its info["paper_topk_objective"], feasible or not) and
the share of its top-Ks that break the budget is printed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from direct_opt import solve  # noqa: E402
from direct_opt.certificates import certify  # noqa: E402
from direct_opt.instances import FAMILIES, family_problem  # noqa: E402

TAUS = (0.1, 0.3, 1.0)


def enumerate_optimum(P) -> float:
    """max f over every feasible K-subset (tiny N)."""
    best = -np.inf
    cols = P.op.columns(np.arange(P.n))
    for S in itertools.combinations(range(P.n), P.k):
        S = list(S)
        if P.tau is not None and P.a[S].sum() > P.tau:
            continue
        z = cols[:, S].sum(1)
        best = max(best, float(z @ z))
    return best


def cpu(fn):
    t = time.process_time()
    out = fn()
    return out, time.process_time() - t


def run_size(n, k, r, seeds, backends, bounds, enum, rlt_limit, out=print):
    rows = []
    for fam, tau_rel, seed in itertools.product(FAMILIES, TAUS, seeds):
        P = family_problem(fam, n, k, tau_rel, r=r, seed=seed)
        if P.min_budget() > P.tau:
            continue
        row = {"n": n, "k": k, "family": fam, "tau_rel": tau_rel, "seed": seed, "f": {}, "t": {}, "bound": {}, "tb": {}}
        for b in backends:
            res, t = cpu(lambda b=b: solve(P, backend=b, certify="cheap",
                                           **({"time_limit": 30.0} if b == "exact" else {})))
            if not res.success:
                continue
            row["f"][b] = res.objective
            row["t"][b] = t
            if b == "pga-dykstra":
                row["paper_topk"] = res.info["paper_topk_objective"]
                row["paper_topk_feasible"] = res.info["paper_topk_feasible"]
                row["paper_topk_violation"] = res.info["topk_budget_violation"]
        row["opt"] = enumerate_optimum(P) if enum else None
        row["best"] = max(row["f"].values())
        for m in bounds:
            (ub, info), t = cpu(lambda m=m: certify(P, m, time_limit=rlt_limit if m in ("rlt", "sdp") else None))
            row["bound"][m] = ub
            row["tb"][m] = t
        rows.append(row)
    summarise(rows, backends, bounds, out)
    return rows


def _q(xs, f):
    return f(xs) if xs else float("nan")


def summarise(rows, backends, bounds, out=print, opt_label="enumerated optimum"):
    if not rows:
        return
    n, k = rows[0]["n"], rows[0]["k"]
    ref = "opt" if rows[0]["opt"] is not None else "best"
    out(f"\nN={n} K={k}: {len(rows)} feasible instances; reference = {opt_label if ref == 'opt' else 'best found'}")
    out(f"| backend | f/{ref} min | median | share >= 0.99 | CPU s median |")
    out("|---|---|---|---|---|")
    for b in backends + (["pga-dykstra (paper top-K)"] if "pga-dykstra" in backends else []):
        key = "pga-dykstra" if b.startswith("pga") else b
        if b.endswith("(paper top-K)"):
            vals = [r["paper_topk"] / r[ref] for r in rows if "paper_topk" in r]
        else:
            vals = [r["f"][key] / r[ref] for r in rows if key in r["f"]]
        ts = [r["t"][key] for r in rows if key in r["t"]]
        out(f"| {b} | {_q(vals, min):.4f} | {_q(vals, np.median):.4f} | {np.mean(np.array(vals) >= 0.99):.2f} | "
            f"{_q(ts, np.median):.3f} |")
    if "pga-dykstra" in backends:
        v = [r for r in rows if "paper_topk" in r]
        bad = [r["paper_topk_violation"] for r in v if not r["paper_topk_feasible"]]
        out(f"pga-dykstra: paper's top-K infeasible on {len(bad)}/{len(v)} instances"
            + (f" (budget excess {min(bad) * 100:.1f}-{max(bad) * 100:.1f} %)" if bad else ""))
    out(f"| bound | certified ratio {ref}/bound median | min | CPU s median | bound CPU / sca-exact CPU median |")
    out("|---|---|---|---|---|")
    for m in bounds:
        vals = [r[ref] / r["bound"][m] for r in rows]
        ts = [r["tb"][m] for r in rows]
        rel = [r["tb"][m] / max(r["t"].get("sca-exact", np.nan), 1e-6) for r in rows]
        out(f"| {m} | {_q(vals, np.median):.4f} | {_q(vals, min):.4f} | {_q(ts, np.median):.3f} | {np.nanmedian(rel):.1f} |")
    if "auto" in backends and "sca-exact" in backends:
        ratio = [r["t"]["auto"] / max(r["t"]["sca-exact"], 1e-6) for r in rows if "auto" in r["t"]]
        out(f"auto portfolio CPU / sca-exact CPU: median {np.median(ratio):.1f}, max {max(ratio):.1f}")


def demo_problems(n_pool: int, cache: str, seed: int = 0):
    """Selection problems on real statistics: the demo's tiny language model, extracted on its pool."""
    from direct_opt import SelectionProblem
    from direct_opt.evaluate import prepare
    from direct_opt.extract import ExtractConfig, extract_stats
    from direct_opt.lm import lm_loss, load_model

    setup = prepare("stdlib", quick=True, n_pool=n_pool, n_val=12, n_test=32, n_pretrain=128, pretrain_steps=5,
                    cache_dir=cache, data_seed=seed)
    model = load_model(setup.state.model_state, setup.state.config)
    cfg = ExtractConfig(k_sketch=32, projector="sjlt", batch_size=32, verbose=False,
                        out_dir=os.path.join(cache, f"extract-{setup.info['checkpoint_key']}"))
    stats = extract_stats(model, lm_loss, setup.corpus.pool, setup.corpus.val, cfg)
    k = max(4, stats.n // 10)
    for tau_rel in TAUS:
        P = SelectionProblem.from_stats(stats, k=k, tau_rel=tau_rel)
        if P.min_budget() <= P.tau:
            yield tau_rel, P


def run_demo(n_pool, cache, rlt_limit, out=print):
    backends = ["sca-exact", "greedy", "pga-dykstra", "frank-wolfe", "auto"]
    bounds = ["cheap", "subspace", "rlt", "sdp"]
    rows = []
    for tau_rel, P in demo_problems(n_pool, cache):
        row = {"n": P.n, "k": P.k, "family": "demo", "tau_rel": tau_rel, "seed": 0, "f": {}, "t": {}, "bound": {}, "tb": {}}
        for b in backends:
            res, t = cpu(lambda b=b: solve(P, backend=b, certify="cheap"))
            if res.success:
                row["f"][b], row["t"][b] = res.objective, t
                if b == "pga-dykstra":
                    row["paper_topk"] = res.info["paper_topk_objective"]
                    row["paper_topk_feasible"] = res.info["paper_topk_feasible"]
                    row["paper_topk_violation"] = res.info["topk_budget_violation"]
        ex, t = cpu(lambda: solve(P, backend="exact", time_limit=120.0, certify="cheap"))
        row["exact_status"] = ex.status
        row["opt"] = ex.objective if ex.status == "converged" else None
        row["best"] = max(list(row["f"].values()) + [ex.objective])
        for m in bounds:
            (ub, _), tb = cpu(lambda m=m: certify(P, m, time_limit=rlt_limit))
            row["bound"][m], row["tb"][m] = ub, tb
        rows.append(row)
    if rows and any(r["opt"] is None for r in rows):
        for r in rows:
            r["opt"] = None
    out(f"demo statistics (N={rows[0]['n'] if rows else '?'}, tau_rel {[r['tau_rel'] for r in rows]}; exact: {[r['exact_status'] for r in rows]})")
    summarise(rows, backends, bounds, out, opt_label="optimum proven by the exact backend")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small-seeds", type=int, default=6, help="seeds per family and tau at N = 16")
    p.add_argument("--sizes", default="200,2000,20000")
    p.add_argument("--r", type=int, default=32)
    p.add_argument("--rlt-time", type=float, default=60.0, help="CPU-side time limit of one RLT LP / SDP (s)")
    p.add_argument("--json", default=None)
    p.add_argument("--demo", type=int, default=0, metavar="N_POOL",
                   help="only the real-statistics part: extract the demo model's stats on N_POOL samples")
    p.add_argument("--cache", default=os.path.join("runs", "certify-demo"), help="checkpoint/extraction cache for --demo")
    args = p.parse_args(argv)
    import subprocess

    out_rows = []
    out = lambda s: print(s, flush=True)  # noqa: E731
    out(f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    if args.demo:
        out_rows += run_demo(args.demo, args.cache, args.rlt_time, out)
        out(f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(out_rows, fh, indent=1)
        return 0
    small_backends = ["sca-exact", "greedy", "pga-dykstra", "sca-osqp", "frank-wolfe", "auto", "exact"]
    out_rows += run_size(16, 4, 6, range(args.small_seeds), small_backends, ["cheap", "subspace", "rlt", "sdp"],
                         True, args.rlt_time, out)
    for n in (int(s) for s in args.sizes.split(",")):
        backends = ["sca-exact", "greedy", "auto"] + (["pga-dykstra"] if n <= 2000 else [])
        bounds = ["cheap", "subspace"] + (["rlt"] if n <= 200 else [])
        out_rows += run_size(n, n // 10, args.r, [0], backends, bounds, False, args.rlt_time, out)
    out(f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(out_rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
