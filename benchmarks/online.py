"""Online selection: per-step overhead of every online selector vs a plain step, and FW convergence.

    python benchmarks/online.py                 # TinyGPT of the harness, b = 32, B = 4b = 128
    python benchmarks/online.py --json out.json

1. Overhead. Every method trains its own copy of the same checkpoint-sized TinyGPT on rows of
   the stdlib corpus. A *plain step* trains on b rows (no selection). An online step draws B
   candidates, selects b with the selector, trains on them and calls ``update``. The methods
   run round-robin (``--rounds`` rounds of ``--steps`` steps each, after one warm-up round), so
   machine load hits them alike; the ratio is median(online step) / median(plain step). The
   forward/backward samples each selector pushed per step (exact counts) are printed too.
   Aim: ``blade`` <= 1.5x a plain step at B = 4b.
2. FW convergence. At a few real blade steps the per-step program J(w) = cᵀw − ½‖Gw‖² is
   solved by the memoryless block-coordinate FW (objective after t = 0..32 steps) and exactly
   (cvxpy for the continuous optimum; brute-force top-b in the linear case), for the default
   penalty and for 100x / 10^4 x larger ones (where the quadratic term matters).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time

import numpy as np
import torch

from direct_opt.lm import GPTConfig, TinyGPT, lm_loss, stdlib_corpus
from direct_opt.lm.train import _make_optimizer, train_step
from direct_opt.online import StepPolytope, block_frank_wolfe, make_online_selector
from direct_opt.online.frank_wolfe import objective

METHODS = ("plain", "uniform", "loss", "rho-loss", "greats", "blade", "blade:reference=lockstep", "blade:reference=ema",
           "blade:excess=linear",
           "blade:reference=ema,excess=linear")


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def overhead(pool, val, b: int, B: int, steps: int, rounds: int, seed: int = 0) -> dict:
    base = TinyGPT(GPTConfig(seq_len=pool.shape[1] - 1), seed=seed)
    runs = {}
    for m in METHODS:
        model = copy.deepcopy(base)
        opt = _make_optimizer(model, 3e-3)
        sel = None
        if m != "plain":
            name, _, opt_s = m.partition(":")
            opts = dict(kv.split("=") for kv in opt_s.split(",") if kv)
            sel = make_online_selector(name, model=model, loss_fn=lm_loss, val=val, b=b, seed=seed, **opts)
        runs[m] = {"model": model, "opt": opt, "sel": sel, "times": [], "gen": np.random.default_rng(seed)}
    params = {m: list(r["model"].parameters()) for m, r in runs.items()}
    step = 0
    for rnd in range(rounds + 1):
        for m, r in runs.items():
            for _ in range(steps):
                cand = torch.from_numpy(r["gen"].choice(pool.shape[0], B if r["sel"] else b, replace=False))
                t0 = time.perf_counter()
                rows = pool[cand]
                if r["sel"] is not None:
                    idx = r["sel"].select(rows, step)
                    rows = rows[torch.from_numpy(idx)]
                r["model"].train()
                train_step(r["model"], r["opt"], rows, 3e-3, params[m], 1.0)
                if r["sel"] is not None:
                    r["sel"].update(r["model"], step)
                if rnd:  # round 0 is the warm-up
                    r["times"].append(time.perf_counter() - t0)
                step += 1
    plain = statistics.median(runs["plain"]["times"])
    out = {}
    for m, r in runs.items():
        med = statistics.median(r["times"])
        cost = r["sel"].cost if r["sel"] is not None else {"forward": 0, "backward": 0}
        n_steps = (rounds + 1) * steps
        out[m] = {"median_step_s": med, "ratio_vs_plain": med / plain,
                  "selector_forward_per_step": cost["forward"] / n_steps,
                  "selector_backward_per_step": cost["backward"] / n_steps}
    return out


def fw_convergence(pool, val, b: int, B: int, n_instances: int, seed: int = 0) -> dict:
    import cvxpy as cp

    model = TinyGPT(GPTConfig(seq_len=pool.shape[1] - 1), seed=seed)
    opt = _make_optimizer(model, 3e-3)
    sel = make_online_selector("blade", model=model, loss_fn=lm_loss, val=val, b=b, seed=seed)
    gen = np.random.default_rng(seed)
    checkpoints = (0, 1, 2, 4, 8, 16, 32)
    rows = {}
    for t in range(n_instances + 3):  # a few real training steps first, so the reference differs
        cand = pool[torch.from_numpy(gen.choice(pool.shape[0], B, replace=False))]
        if t >= 3:
            c, G0, _ = sel.program(cand, B, t)
            for mult in (0.0, 1.0, 100.0, 1e4):
                G = np.sqrt(mult) * G0
                poly = StepPolytope(B, b)
                tr = block_frank_wolfe(poly, c, G, steps=max(checkpoints), block_size=B // 2,
                                       rng=np.random.default_rng([seed, t]))
                w = cp.Variable(B)
                prob = cp.Problem(cp.Maximize(c @ w - 0.5 * cp.sum_squares(G @ w)), [w >= 0, w <= 1, cp.sum(w) == b])
                prob.solve()
                j_star = float(prob.value)
                x = np.zeros(B)
                x[poly.vertex(tr.w)] = 1.0
                scale = max(abs(j_star), 1e-300)
                rows.setdefault(mult, []).append({
                    "rel_gap": [(j_star - tr.values[k]) / scale for k in checkpoints],
                    "rounded_rel_gap": (j_star - objective(c, G, x)) / scale,
                    "top_b_exact": bool(mult == 0.0 and np.array_equal(poly.vertex(tr.w), np.sort(np.argsort(-c)[:b]))),
                })
        idx = sel.select(cand, t)
        model.train()
        train_step(model, opt, cand[torch.from_numpy(idx)], 3e-3, list(model.parameters()), 1.0)
        sel.update(model, t)
    summary = {}
    for mult, rs in rows.items():
        summary[str(mult)] = {"fw_steps": list(checkpoints),
                              "median_rel_gap": [float(np.median([r["rel_gap"][i] for r in rs]))
                                                 for i in range(len(checkpoints))],
                              "max_rel_gap": [float(np.max([r["rel_gap"][i] for r in rs])) for i in range(len(checkpoints))],
                              "median_rounded_rel_gap": float(np.median([r["rounded_rel_gap"] for r in rs])),
                              "instances": len(rs)}
        if mult == 0.0:
            summary[str(mult)]["top_b_exact_all"] = all(r["top_b_exact"] for r in rs)
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-b", type=int, default=32)
    p.add_argument("--factor", type=int, default=4, help="B = factor * b")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--instances", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    corpus = stdlib_corpus(seed=0, quick=True)
    pool, val = corpus.pool, corpus.val
    b, B = args.b, args.factor * args.b
    load0 = _loadavg()
    t0 = time.perf_counter()
    ov = overhead(pool, val, b, B, args.steps, args.rounds)
    print(f"per-step overhead, TinyGPT {GPTConfig().n_layer}x{GPTConfig().d_model}, b={b}, B={B}, "
          f"{args.rounds}x{args.steps} timed steps per method (round-robin), torch threads {torch.get_num_threads()}, "
          f"load average {load0} -> {_loadavg()}")
    print(f"{'method':34s} {'median step (ms)':>17s} {'x plain':>8s} {'sel fwd/step':>13s} {'sel bwd/step':>13s}")
    for m, r in ov.items():
        print(f"{m:34s} {1e3 * r['median_step_s']:17.1f} {r['ratio_vs_plain']:8.2f} "
              f"{r['selector_forward_per_step']:13.1f} {r['selector_backward_per_step']:13.1f}")
    aim = ov["blade"]["ratio_vs_plain"] <= 1.5
    print(f"aim blade <= 1.5x plain at B = {args.factor}b: {'met' if aim else 'NOT met'} "
          f"({ov['blade']['ratio_vs_plain']:.2f}x)")
    fw = fw_convergence(pool, val, b, B, args.instances)
    print(f"\nFW convergence of the per-step program (B={B}, b={b}, {args.instances} real blade steps): "
          "relative gap (J* - J_t)/|J*| after t block-FW steps (median over steps)")
    print(f"{'penalty x':>10s} " + " ".join(f"t={t:<6d}" for t in fw['1.0']['fw_steps']) + "  rounded  ")
    for mult, r in fw.items():
        print(f"{float(mult):10.0f} " + " ".join(f"{g:8.1e}" for g in r["median_rel_gap"])
              + f"  {r['median_rounded_rel_gap']:8.1e}" + ("  top-b exact: " + str(r["top_b_exact_all"])
                                                            if "top_b_exact_all" in r else ""))
    print(f"total {time.perf_counter() - t0:.1f}s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"overhead": ov, "fw": fw, "b": b, "B": B, "load": [load0, _loadavg()],
                       "machine": platform.machine(), "threads": torch.get_num_threads()}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
