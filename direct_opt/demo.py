"""``direct-opt demo``: the whole method end to end on an embedded default, no downloads.

    direct-opt demo [--out DIR] [--quick] [--seed S] [--n-seeds N] [--backends a,b,...]

What it does (everything through the evaluation harness, :mod:`direct_opt.evaluate`):

1. builds a byte-level corpus from the Python standard library's own sources (a pool
   mixing clean windows of several domains with degraded ones: shuffled, truncated,
   duplicated; validation and test sets from one target domain, docstrings);
2. pretrains the package's TinyGPT briefly at constant LR (the "stable" phase);
3. extracts gradient statistics once from that checkpoint (sjlt sketch, k = 512);
4. selects K = 10 % of the pool with ``random``, the DiReCT program solved by several
   backends (``direct/sca-exact`` default, ``greedy``, ``frank-wolfe``, ``fw-block``,
   the paper-faithful ``pga-dykstra``), the peer ``less`` (LESS as published) and the toolkit's
   default selector ``less-diverse`` (LESS with a redundancy penalty; docs/evaluation.md);
5. anneals the same checkpoint (LR decayed linearly to 0) on each selection, for each
   seed, and reports validation/test loss before and after, solve time, the DiReCT
   objective of each selection and its certified ratio f / upper bound.

``--seed S`` fixes the corpus split and pretraining (data seed S) and the evaluation seeds
S, S+1, ..., S+N-1 (random selection, randomised backends, annealing batch order): the
output is deterministic given S, and the same on every machine and thread count (the
computations run at one CPU thread). Run time, measured with ``benchmarks/demo_time.py``
on a 2-core machine: about 2.1 min of CPU time for the default demo (<= 5 min of
wall time on an idle 2-core machine) and about 16 s for ``--quick`` (<= 60 s).
Files written to ``DIR`` (default ``direct-opt-demo``):

* ``results.json``  per method: val/test loss before and after annealing, paired difference
  to random, integer objective, upper bound, certified ratio, budget use; plus seeds,
  sizes, the gradient-statistics checksum and the verdict (format ``direct_opt.demo``,
  version 2). No timing and no absolute path: byte-identical wherever it is run;
* ``timings.json`` wall-clock seconds per phase, CPU seconds and solve time per method;
* ``selections.json`` the selected pool indices per method and seed;
* ``demo.png``  loss curves, final losses and paired differences to random;
* ``backends.png`` objective vs upper bound, certified ratio and time per DiReCT backend;
* ``table.md``  the table printed at the end;
* ``work/<preset>-seed<S>/`` the checkpoint, extraction shards and per-run records (a
  re-run with the same settings resumes from them).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .defaults import DEMO_BACKENDS, TAU_REL
from .selectors import DEFAULT_SELECTOR

FORMAT = "direct_opt.demo"
VERSION = 2
DEFAULT_OUT = "direct-opt-demo"
#: DiReCT backends run by default: the default (sca-exact), the cheap/large-N ones and the
#: paper-faithful baseline (pga-dykstra). sca-osqp is left out (slow, same optimum as sca-exact).
DEFAULT_BACKENDS = DEMO_BACKENDS
#: CPU time measured by benchmarks/demo_time.py (quoted in --help and the README).
MEASURED_CPU = {"default": "2.1 min", "quick": "16 s"}
#: the sizes of the two presets. Chosen for run time on 2 CPU cores, not for any method.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"n_seeds": 2},
    "default": {"n_seeds": 3},
}
K_FRACTION = 0.1


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _pos_int(text: str) -> int:
    v = _nonneg_int(text)
    if v == 0:
        raise argparse.ArgumentTypeError("must be > 0, got 0")
    return v


def add_parser(subparsers: Any) -> None:
    """Register ``direct-opt demo``."""
    p = subparsers.add_parser(
        "demo", help=f"end-to-end demo on an embedded corpus (no downloads; about {MEASURED_CPU['default']} of CPU "
                     "time, <= 5 min on an idle 2-core machine)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true", help=f"small configuration (about {MEASURED_CPU['quick']} of CPU time, <= 60 s; "
                                                                "used by the tests)")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="data/pretraining seed and first evaluation seed")
    p.add_argument("--n-seeds", type=_pos_int, default=None,
                   help=f"evaluation seeds S..S+N-1 (default {PRESETS['default']['n_seeds']}, "
                        f"quick {PRESETS['quick']['n_seeds']})")
    p.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                   help="comma-separated DiReCT solver backends (see `direct-opt backends`)")
    p.add_argument("--no-less", action="store_true",
                   help=f"leave out the LESS-based peers (less, {DEFAULT_SELECTOR})")
    p.add_argument("--quiet", action="store_true", help="no progress lines or bars")
    p.set_defaults(func=run, check=check)


def check(args: argparse.Namespace) -> None:
    """The validation pass of ``direct-opt demo`` (before the corpus is built)."""
    from .cli_args import check_output
    from .compare import parse_backends

    parse_backends(args.backends)
    check_output(args, "--out", kind="dir")


def demo_config(quick: bool, seed: int, n_seeds: int | None, backends: Sequence[str],
                less: bool = True) -> dict[str, Any]:
    """The full, JSON-safe configuration of one demo run."""
    preset = PRESETS["quick" if quick else "default"]
    n = preset["n_seeds"] if n_seeds is None else int(n_seeds)
    peers = list(dict.fromkeys(["less", DEFAULT_SELECTOR])) if less else []
    selectors = ["random", *(f"direct:backend={b}" for b in backends), *peers]
    return {
        "corpus": "stdlib", "quick": bool(quick), "data_seed": int(seed),
        "seeds": list(range(int(seed), int(seed) + n)), "selectors": selectors,
        "k_fraction": K_FRACTION, "lr": 3e-3,
        "schedule": {"shape": "linear", "epochs": 4.0, "optimizer_state": "restore", "eval_every": 5},
        "extract": {"k_sketch": 512, "projector": "sjlt", "batch_size": 32},
        "program_tau_rel": TAU_REL,
    }


def run_demo(out: str | Path, *, quick: bool = False, seed: int = 0, n_seeds: int | None = None,
             backends: Sequence[str] = DEFAULT_BACKENDS, less: bool = True, progress: bool = True,
             log: Any = print) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the demo and write its files into ``out``; returns (results.json, timings.json) dicts.

    results.json holds no timing and no absolute path, so it is byte-identical on every machine
    and thread count for the same settings; timings go to timings.json.
    """
    from .evaluate import AnnealSchedule, evaluate, prepare
    from .extract import ExtractConfig
    from .lm import TinyGPT, lm_loss

    say = log if progress else (lambda s: None)
    cfg = demo_config(quick, seed, n_seeds, backends, less)
    out = Path(out)
    work = out / "work" / f"{'quick' if quick else 'default'}-seed{seed}"
    t_start, cpu_start = time.perf_counter(), time.process_time()
    setup = prepare(cfg["corpus"], data_seed=cfg["data_seed"], quick=quick, lr=cfg["lr"], cache_dir=work,
                    log=say, progress=progress)
    n = int(setup.corpus.pool.shape[0])
    k = max(1, int(math.ceil(cfg["k_fraction"] * n)))
    say(f"selecting K={k} of N={n} pool samples with {len(cfg['selectors'])} methods, seeds {cfg['seeds']}; "
        "annealing each selection ...")
    t1 = time.perf_counter()
    report = evaluate(
        setup.state, lm_loss, setup.corpus.pool, setup.corpus.val, setup.corpus.test, cfg["selectors"], k,
        cfg["seeds"], AnnealSchedule.from_dict(cfg["schedule"]),
        extract_config=ExtractConfig(**cfg["extract"], verbose=progress),
        pool_groups=setup.corpus.pool_groups, target_group=setup.target_group, out_dir=work / "eval",
        program_tau_rel=cfg["program_tau_rel"], progress=progress, plot=False,
        meta={"setup": setup.info, "demo_config": cfg},
    )
    t_eval = time.perf_counter() - t1
    n_params = TinyGPT(setup.state.config).num_parameters()
    res = build_results(report, {**setup.info, "n_parameters": n_params}, cfg, k)
    timings = {
        "note": "wall-clock seconds of this run (not part of results.json: they vary with the machine and its load)",
        "phases": {"corpus": setup.info["time_s"]["corpus"], "pretrain": setup.info["time_s"]["pretrain"],
                   "extract": (report.stats_info or {}).get("extract_time_s"),
                   "select_and_anneal": t_eval - ((report.stats_info or {}).get("extract_time_s") or 0.0),
                   "total": time.perf_counter() - t_start},
        "cpu_s": time.process_time() - cpu_start,
        "solve_time_s": {lab: {str(s): report.run(lab, s)["selection_time_s"] for s in report.seeds}
                         for lab in report.labels},
    }
    res["files"] = write_outputs(out, report, res, timings)
    return res, timings
def _mean(xs: Sequence[Any]) -> float | None:
    v = [float(x) for x in xs if x is not None and not isinstance(x, str) and math.isfinite(float(x))]
    return sum(v) / len(v) if v else None


def _kind(label: str) -> str:
    if label == "random":
        return "baseline"
    return "direct" if label.startswith("direct") else "peer"


def build_results(report: Any, setup_info: dict[str, Any], cfg: dict[str, Any], k: int) -> dict[str, Any]:
    """The demo's results.json content from an :class:`~direct_opt.evaluate.EvalReport`."""
    methods: dict[str, Any] = {}
    selections: dict[str, dict[str, list[int]]] = {}
    for lab in report.labels:
        runs = [report.run(lab, s) for s in report.seeds]
        s = report.summary[lab]
        prog = [r.get("program") or {} for r in runs]
        diag = [r.get("diagnostics") or {} for r in runs]
        kind = _kind(lab)
        methods[lab] = {
            "kind": kind,
            "selector": runs[0]["selector"],
            "backend": diag[0].get("backend") if kind == "direct" else None,
            "val_loss_before": s["val_before"],
            "val_loss_after": s["val"]["mean"],
            "val_loss_after_std": s["val"]["std"],
            "test_loss_before": s["test_before"],
            "test_loss_after": s["test"]["mean"],
            "test_loss_after_std": s["test"]["std"],
            "diff_test_vs_random": s["diff_test_vs_baseline"],
            "diff_val_vs_random": s["diff_val_vs_baseline"],
            "objective": _mean([p.get("objective") for p in prog]),
            "upper_bound": prog[0].get("upper_bound"),
            "certified_ratio": _mean([p.get("certified_ratio") for p in prog]),
            "solver_upper_bound": _mean([d.get("upper_bound") for d in diag]) if kind == "direct" else None,
            "solver_certified_ratio": _mean([d.get("certified_ratio") for d in diag]) if kind == "direct" else None,
            "solver_status": [d.get("status") for d in diag] if kind == "direct" else None,
            "iterations": _mean([d.get("iterations") for d in diag]) if kind == "direct" else None,
            "stiff_cost": _mean([p.get("stiff_cost") for p in prog]),
            "tau": prog[0].get("tau"),
            "budget_ok": all(bool(p.get("budget_ok")) for p in prog),
            "target_fraction": s.get("target_fraction"),
            "degraded_fraction": s.get("degraded_fraction"),
            "distinct_selections": s.get("distinct_selections"),
            "per_seed": [{"seed": int(r["seed"]), "val_before": r["before"]["val"], "val_after": r["final"]["val"],
                          "test_before": r["before"]["test"], "test_after": r["final"]["test"],
                          "objective": (r.get("program") or {}).get("objective"),
                          "certified_ratio": (r.get("program") or {}).get("certified_ratio")}
                         for r in runs],
        }
        selections[lab] = {str(r["seed"]): [int(i) for i in r["indices"]] for r in runs}
    sizes = {**setup_info["sizes"], "k": k, "k_sketch": cfg["extract"]["k_sketch"]}
    if report.stats_info:
        sizes.update({"r_flat": report.stats_info["r"], "k_star": report.stats_info["k_star"]})
    sizes["model_parameters"] = setup_info.get("n_parameters")
    return {
        "format": FORMAT, "version": VERSION,
        "config": cfg, "seed": cfg["data_seed"], "seeds": list(report.seeds), "sizes": sizes,
        "target_group": report.target_group, "model": setup_info["model"], "pretrain": setup_info["pretrain"],
        "pretrain_last_loss": setup_info.get("pretrain_last_loss"),
        "stats": {k: v for k, v in (report.stats_info or {}).items() if k != "extract_time_s"} or None,
        "methods": methods, "ranking": report.ranking,
        "verdict": verdict(report), "verdicts": {lab: report.verdict(lab) for lab in report.labels if lab != "random"},
        "selections": selections,
        "units": "losses: mean next-byte cross-entropy in nats/byte (lower is better); objective: ||G x||^2",
    }


def verdict(report: Any) -> str:
    """One honest line: did any DiReCT backend beat random on held-out test loss?

    "beat" only when the 95% interval of the paired difference lies below 0; a lower mean whose
    interval includes 0 (or a single seed, no interval) is reported as not shown.
    """
    return _direct_verdict(report) + _default_selector_line(report)


def _ci(d: dict[str, Any] | None, against: str) -> str:
    if d is None:
        return f"no paired runs with {against}"
    if d.get("low") is None:
        return f"{d['mean']:+.4f} vs {against} (single seed, not conclusive)"
    word = ("beat" if d["mean"] < 0 else "lost to") if d.get("significant") else "tied"
    return f"{word} {against}: {d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"


def _default_selector_line(report: Any) -> str:
    """How the toolkit's default selector did against random and LESS (empty when it was not run)."""
    if DEFAULT_SELECTOR not in report.labels or DEFAULT_SELECTOR == report.baseline:
        return ""
    vs_less = (f"; {_ci(report.diff(DEFAULT_SELECTOR, 'less'), 'less')}"
               if "less" in report.labels and DEFAULT_SELECTOR != "less" else "")
    return (f" The toolkit's default selector {DEFAULT_SELECTOR} "
            f"{_ci(report.summary[DEFAULT_SELECTOR]['diff_test_vs_baseline'], report.baseline)}{vs_less} "
            "(nats/byte, 95% CI; 'beat' only when the interval excludes 0).")


def _direct_verdict(report: Any) -> str:
    direct = [l for l in report.labels if _kind(l) == "direct"]
    if not direct or report.baseline != "random":
        return f"lowest held-out test loss: {report.winner}."
    diffs = {l: report.summary[l]["diff_test_vs_baseline"] for l in direct}
    best = min(direct, key=lambda l: diffs[l]["mean"])
    d = diffs[best]
    n = d["n"]
    ci = (f", 95% CI [{d['low']:+.4f}, {d['high']:+.4f}]" if d.get("low") is not None
          else ", single seed: no interval, not conclusive")
    tail = f" Lowest test loss overall: {report.winner}."
    winners = [l for l in direct if diffs[l]["mean"] < 0 and diffs[l].get("significant")]
    lower = [l for l in direct if diffs[l]["mean"] < 0]
    if winners:
        return (f"VERDICT: {len(winners)} of {len(direct)} DiReCT backends beat random on held-out test loss "
                f"(95% CI below 0): {', '.join(winners)} (best: {best}, {d['mean']:+.4f} nats/byte{ci}; "
                f"n={n} seed(s)).{tail}")
    if lower:
        return (f"VERDICT: DiReCT is NOT shown to beat random here: {len(lower)} of {len(direct)} DiReCT backends "
                f"ended with a lower mean held-out test loss than random, but no 95% CI excludes 0 "
                f"(best: {best}, {d['mean']:+.4f} nats/byte{ci}; n={n} seed(s)).{tail}")
    worse = sum(bool(diffs[l].get("significant")) for l in direct)
    sig = f" {worse} of {len(direct)} significantly worse (95% CI excludes 0);" if d.get("low") is not None else ""
    return (f"VERDICT: DiReCT did NOT beat random here: all {len(direct)} DiReCT backends ended with a higher "
            f"held-out test loss than a random selection of the same size;{sig} closest: {best}, "
            f"{d['mean']:+.4f} nats/byte{ci}; n={n} seed(s).{tail}")


def _f(x: Any, nd: int = 4) -> str:
    if x is None or isinstance(x, str) or not math.isfinite(float(x)):
        return "n/a"
    return f"{float(x):.{nd}f}"


def table(res: dict[str, Any], timings: dict[str, Any] | None = None) -> str:
    """Markdown table of the demo results (one row per method); select times from ``timings``."""
    head = ["method", "val before", "val after", "test after", "Δ test vs random", "select time (s)",
            "DiReCT objective f", "f / UB", "in budget", "frac target", "frac degraded"]
    rows = []
    for lab, m in res["methods"].items():
        d = m["diff_test_vs_random"]
        if d is None:
            dtxt = "—"
        elif d.get("low") is None:
            dtxt = f"{d['mean']:+.4f}"
        else:
            dtxt = f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]" + (" *" if d.get("significant") else "")
        rows.append([lab, _f(m["val_loss_before"]), _f(m["val_loss_after"]), _f(m["test_loss_after"]), dtxt,
                     _f(_solve_time(timings, lab), 3), _f(m["objective"], 1), _f(m["certified_ratio"], 3),
                     "yes" if m["budget_ok"] else "no", _f(m["target_fraction"], 3), _f(m["degraded_fraction"], 3)])
    sz = res["sizes"]
    notes = (f"pool N={sz['n_pool']}, K={sz['k']}, val {sz['n_val']}, test {sz['n_test']}, seeds {res['seeds']}; "
             f"target {res['target_group']}; losses in nats/byte (lower is better), mean over seeds; "
             "Δ = paired difference to random (same seed) with a 95% t-interval when n > 1 (* = excludes 0); "
             "f / UB = DiReCT objective of the selection over an upper bound on the program's optimum (<= 1); "
             "in budget = stiff cost a^T x <= tau.")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return notes + "\n\n" + "\n".join(lines)


def _solve_time(timings: dict[str, Any] | None, label: str) -> float | None:
    per_seed = ((timings or {}).get("solve_time_s") or {}).get(label)
    return _mean(list(per_seed.values())) if per_seed else None


def stats_dir(res: dict[str, Any], out: str | Path) -> Path:
    """Where the demo's gradient statistics of the pool are (under ``out``)."""
    return Path(out) / "work" / f"{'quick' if res['config']['quick'] else 'default'}-seed{res['seed']}" / "eval" / \
        "extract" / "stats"


def write_outputs(out: Path, report: Any, res: dict[str, Any], timings: dict[str, Any]) -> dict[str, str]:
    """results.json, timings.json, selections.json, table.md, demo.png, backends.png.

    Returns name -> file name (relative to ``out``; results.json records it).
    """
    from .evaluate import write_json_atomic
    from .output import write_output
    from .plotting import plot_backend_comparison, save_eval_figure

    out.mkdir(parents=True, exist_ok=True)
    files = {"results": "results.json", "timings": "timings.json", "selections": "selections.json",
             "table": "table.md", "plot": "demo.png"}
    write_json_atomic(out / "selections.json", {
        "format": "direct_opt.demo_selections", "k": res["sizes"]["k"], "n_pool": res["sizes"]["n_pool"],
        "seeds": res["seeds"], "selections": res["selections"]})
    write_json_atomic(out / "timings.json", timings)
    write_output(out / "table.md", table(res, timings) + "\n\n" + res["verdict"] + "\n")
    save_eval_figure(report.to_dict(), out / "demo.png")
    direct = {lab: {"objective": m["objective"], "upper_bound": m["upper_bound"],
                    "certified_ratio": m["certified_ratio"], "time_s": _solve_time(timings, lab)}
              for lab, m in res["methods"].items() if m["kind"] == "direct"}
    if direct:
        plot_backend_comparison(direct, path=out / "backends.png",
                                title=f"DiReCT backends on the demo program (N={res['sizes']['n_pool']}, "
                                      f"K={res['sizes']['k']})")
        files["backends_plot"] = "backends.png"
    write_json_atomic(out / "results.json", {**res, "files": files})
    return files


def run(args: argparse.Namespace) -> int:
    """``direct-opt demo`` entry point."""
    from .compare import parse_backends

    backends = parse_backends(args.backends)
    t0 = time.perf_counter()
    res, timings = run_demo(args.out, quick=args.quick, seed=args.seed, n_seeds=args.n_seeds, backends=backends,
                            less=not args.no_less, progress=not args.quiet)
    out = Path(args.out)
    print()
    print(table(res, timings))
    print()
    print(res["verdict"])
    for lab, line in res["verdicts"].items():
        if res["methods"][lab]["kind"] == "peer":
            print(line)
    print(f"\nwritten to {out}/: {', '.join(res['files'].values())}")
    stats = stats_dir(res, out)
    print(f"gradient statistics of the pool: {stats}\n"
          f"  re-solve them yourself: direct-opt solve --stats {stats} -k {res['sizes']['k']} --backend greedy\n"
          "on your own data: compute stats of your model and pool with direct_opt.extract.extract_stats "
          "(or `direct-opt extract` for a Hugging Face model), then `direct-opt solve --stats DIR -k K`; "
          "see docs/getting-started.md.")
    print(f"total time {time.perf_counter() - t0:.1f}s wall, {timings['cpu_s']:.1f}s CPU")
    sys.stdout.flush()
    return 0
