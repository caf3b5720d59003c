"""Evidence for the loss laws (docs/schedule.md): fit on 2-3 schedules, predict held-out ones,
pick the annealing ratio, transfer it to a larger model, and run the free-form optimum.

    OMP_NUM_THREADS=1 python benchmarks/schedule.py [--work DIR] [--figures docs/img] [--json PATH]

Two embedded TinyGPT sizes trained from scratch for T steps (warmup, peak LR, AdamW, the
same data order for every schedule; held-out loss every 10 steps):

* small: the default GPTConfig (2 layers, d=64), constant + WSD {linear, cosine, 1-sqrt} x
  ratios 0.1..0.6 + cosine;
* large: 3 layers, d=128 (4.9x the parameters), constant + WSD linear x 0.1..0.6 + WSD 1-sqrt
  0.3 + cosine.

Per law and model: fit on constant, cosine and WSD-linear-0.3; on every other (held-out)
curve the mean absolute error of the whole curve (points after the warmup) and of the
final loss (absolute and relative); per decay shape, whether the predicted best ratio on
the measured grid is the measured best one, or one grid step away. Transfer: the laws fitted
on the small model predict the best linear ratio for the large one (the ratio does not
depend on N under any of the three laws), checked against the large model's measured grid;
the forward-momentum law is also fitted jointly on the small fit set plus the large
model's constant run and predicts the large held-out curves. Finally the recommended law
(lowest held-out final-loss error over both sizes) optimises a free-form monotone schedule
for the small model, which is then trained and compared with the best measured grid schedule.

Curves are cached in ``--work`` (collect is the expensive part, ~10-20 min on 2 busy cores);
a re-run only refits. Loss values are deterministic; times depend on the load (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from direct_opt.schedule import WSD, Constant, Cosine, Curve, collect, fit, load_curves, optimize

T, WARMUP, PEAK = 600, 30, 3e-3
RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
SIZES = {
    "small": {"model": {}, "shapes": ("linear", "cosine", "1-sqrt"), "extra": []},
    "large": {"model": {"d_model": 128, "n_layer": 3, "n_head": 4}, "shapes": ("linear",),
              "extra": [WSD(T, PEAK, 0.3, "1-sqrt", WARMUP)]},
}
FIT_SET = ("constant", "cosine", "wsd-linear-0.3")
#: points fitted: from step T/6 on. The first ~100 steps are the initial transient (held-out loss
#: 4.9 -> 2.7 nats/byte) that no power law in S1 describes; the fit with every post-warmup point
#: (the library default) is reported too, as a sensitivity check.
MIN_STEP = T // 6
LAWS = ("momentum", "forward-momentum", "multi-power")
COLLECT_KW = {"batch_size": 16, "eval_every": 10, "n_eval": 128, "n_train": 8192, "seed": 0, "data_seed": 0}


def schedules(size: str) -> list:
    spec = SIZES[size]
    return ([Constant(T, PEAK, WARMUP)] + [WSD(T, PEAK, r, s, WARMUP) for s in spec["shapes"] for r in RATIOS]
            + spec["extra"] + [Cosine(T, PEAK, WARMUP)])


def curves_for(size: str, work: Path) -> tuple[list[Curve], dict]:
    path = work / f"curves_{size}.json"
    names = [s.label for s in schedules(size)]
    if path.exists():
        blob = json.loads(path.read_text())
        cs = load_curves(path)
        if [c.name for c in cs] == names and blob["meta"].get("model", {}).get("d_model") == \
                {"d_model": 64, **SIZES[size]["model"]}["d_model"]:
            print(f"[{size}] curves reused from {path}")
            return cs, blob["meta"]
    cs = collect(schedules(size), model=SIZES[size]["model"], out=path, log=print, **COLLECT_KW)
    return cs, json.loads(path.read_text())["meta"]


def grid_of(curves: list[Curve], shape: str) -> tuple[list[float], list[float]]:
    """Measured (ratios, final losses) of one shape."""
    by = {c.name: c for c in curves}
    r = [x for x in RATIOS if f"wsd-{shape}-{x:g}" in by]
    return r, [by[f"wsd-{shape}-{x:g}"].final_loss for x in r]


def predicted_grid(law, shape: str, ratios: list[float]) -> list[float]:
    return [law.final_loss(WSD(T, PEAK, r, shape, WARMUP)) for r in ratios]


def heldout_errors(law, curves: list[Curve]) -> dict:
    rows = []
    for c in curves:
        if c.name in FIT_SET:
            continue
        keep = c.steps > WARMUP
        n = c.model_size if law.uses_model_size else None
        pred = law.predict(c.lrs, c.steps[keep], model_size=n)
        fin = pred[-1] - c.losses[keep][-1]
        rows.append({"name": c.name, "mae_curve": float(np.mean(np.abs(pred - c.losses[keep]))),
                     "final_abs": float(abs(fin)), "final_rel": float(abs(fin) / c.losses[keep][-1]),
                     "final_signed": float(fin)})
    agg = {k: float(np.mean([r[k] for r in rows])) for k in ("mae_curve", "final_abs", "final_rel")}
    agg["final_rel_max"] = float(max(r["final_rel"] for r in rows))
    return {"n_heldout": len(rows), **agg, "per_curve": rows}


def ratio_match(law, curves: list[Curve], shapes) -> dict:
    out = {}
    for s in shapes:
        r, meas = grid_of(curves, s)
        if len(r) < 2:
            continue
        pred = predicted_grid(law, s, r)
        im, ip = int(np.argmin(meas)), int(np.argmin(pred))
        out[s] = {"measured_best": r[im], "predicted_best": r[ip], "exact": im == ip, "within_one_step": abs(im - ip) <= 1,
                  "measured": meas, "predicted": pred}
    return out


def held_table(laws_by: dict, data: dict, title: str) -> None:
    print(f"\n## {title}\n")
    print("| law | model | held-out final-loss error (mean) | relative | worst relative |")
    print("|---|---|---|---|---|")
    for (size, name), law in laws_by.items():
        h = heldout_errors(law, data[size][0])
        print(f"| {name} | {size} | {h['final_abs']:.4f} | {100 * h['final_rel']:.2f} % | {100 * h['final_rel_max']:.2f} % |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="schedule-bench", help="cache of collected curves + outputs")
    ap.add_argument("--figures", default=None, help="also write the docs figures into this directory")
    ap.add_argument("--json", default=None, help="write every number here (default WORK/results.json)")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    print(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f} "
          f"(2 shared cores; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})")
    data = {size: curves_for(size, work) for size in SIZES}
    res: dict = {"settings": {"T": T, "warmup": WARMUP, "peak_lr": PEAK, "ratios": RATIOS, "fit_set": FIT_SET,
                              "min_step": MIN_STEP,
                              "collect": COLLECT_KW},
                 "models": {s: {"n_parameters": m["n_parameters"], "collect_time_s": m["time_s"],
                                "steps_trained": m["steps_trained"]} for s, (_, m) in data.items()},
                 "laws": {}}
    n_small, n_large = (res["models"][s]["n_parameters"] for s in ("small", "large"))
    print(f"\nmodels: small {n_small} parameters, large {n_large} ({n_large / n_small:.1f}x)")
    laws = {}
    for size, (cs, _) in data.items():
        fit_curves = [c for c in cs if c.name in FIT_SET]
        for name in LAWS:
            t0 = time.perf_counter()
            law = fit(fit_curves, law=name, bootstrap=0, min_step=MIN_STEP)
            laws[(size, name)] = law
            r = {"fit": law.fit_info["goodness"], "fit_time_s": time.perf_counter() - t0, "params": law.params,
                 "heldout": heldout_errors(law, cs), "ratio": ratio_match(law, cs, SIZES[size]["shapes"])}
            res["laws"].setdefault(name, {})[size] = r

    print(f"\n## Held-out prediction (fit on constant, cosine, WSD-linear-0.3; points from step {MIN_STEP})\n")
    print("| law | model | fit R² | held-out curves | MAE whole curve | final-loss error | relative | worst relative "
          "| best ratio = measured (within one step) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in LAWS:
        for size in SIZES:
            r = res["laws"][name][size]
            h = r["heldout"]
            match = ", ".join(f"{s}: {m['predicted_best']:g} vs {m['measured_best']:g} "
                              f"({'yes' if m['exact'] else ('±1' if m['within_one_step'] else 'no')})"
                              for s, m in r["ratio"].items())
            print(f"| {name} | {size} | {r['fit']['r2']:.4f} | {h['n_heldout']} | {h['mae_curve']:.4f} | "
                  f"{h['final_abs']:.4f} | {100 * h['final_rel']:.2f} % | {100 * h['final_rel_max']:.2f} % | {match} |")

    # transfer: small-model fit predicts the large model's best linear ratio
    print("\n## Transfer: fitted on the small model, best linear ratio for the large one\n")
    r_large, meas_large = grid_of(data["large"][0], "linear")
    i_meas = int(np.argmin(meas_large))
    res["transfer"] = {"measured_large": dict(zip(map(str, r_large), meas_large)), "laws": {}}
    print(f"large model, measured final loss per linear ratio: "
          + ", ".join(f"{r:g}: {v:.4f}" for r, v in zip(r_large, meas_large)) + f" -> best {r_large[i_meas]:g}")
    print("\n| law | predicted best ratio (from small) | measured best (large) | match |")
    print("|---|---|---|---|")
    for name in LAWS:
        pred = predicted_grid(laws[("small", name)], "linear", r_large)
        ip = int(np.argmin(pred))
        m = "yes" if ip == i_meas else ("within one step" if abs(ip - i_meas) <= 1 else "no")
        regret = meas_large[ip] - meas_large[i_meas]
        res["transfer"]["laws"][name] = {"predicted_best": r_large[ip], "match": m, "regret": regret}
        print(f"| {name} | {r_large[ip]:g} | {r_large[i_meas]:g} | {m} (measured regret {regret:.4f}) |")
    joint = fit([c for c in data["small"][0] if c.name in FIT_SET] + [c for c in data["large"][0] if c.name == "constant"],
                law="forward-momentum", bootstrap=0, min_step=MIN_STEP)
    jh = heldout_errors(joint, [c for c in data["large"][0] if c.name != "constant"])
    res["transfer"]["forward_momentum_joint"] = {"params": joint.params, "heldout_large": jh}
    print(f"\nforward-momentum fitted on the small fit set + the large constant run (N term identified: "
          f"B={joint.params['B']:.3g}, alpha_N={joint.params['alpha_N']:.3g}): on {jh['n_heldout']} large curves not "
          f"fitted, final-loss error {jh['final_abs']:.4f} ({100 * jh['final_rel']:.2f} %), MAE curve "
          f"{jh['mae_curve']:.4f}")

    all_points = {(size, name): fit([c for c in data[size][0] if c.name in FIT_SET], law=name, bootstrap=0)
                  for size in SIZES for name in LAWS}
    held_table(all_points, data, f"Sensitivity: the same fits on every point after the warmup (step {WARMUP + 1} on)")
    res["sensitivity_all_points"] = {f"{n}/{s}": heldout_errors(l, data[s][0]) for (s, n), l in all_points.items()}

    # recommendation: lowest mean relative held-out final error over both sizes
    score = {n: np.mean([res["laws"][n][s]["heldout"]["final_rel"] for s in SIZES]) for n in LAWS}
    best = min(score, key=score.get)
    res["recommended"] = best
    print("\nmean held-out relative final-loss error over both sizes: "
          + ", ".join(f"{n} {100 * v:.2f} %" for n, v in score.items()) + f" -> recommended: {best}")

    # free-form optimum of the recommended law, run on the small model
    law = laws[("small", best)]
    opt = optimize(law, T, peak_lr=PEAK, warmup_steps=WARMUP, shapes=SIZES["small"]["shapes"])
    small = data["small"][0]
    grid_best = min((c for c in small if c.name.startswith("wsd-")), key=lambda c: c.final_loss)
    run = collect([opt.free_form, opt.best_grid], model=SIZES["small"]["model"], log=print, **COLLECT_KW)
    ff, pg = run
    res["free_form"] = {"law": best, "predicted": opt.free_form_loss, "predicted_best_grid": opt.best_grid.to_dict(),
                        "predicted_best_grid_loss": opt.best_grid_loss, "measured_free_form": ff.final_loss,
                        "measured_predicted_best_grid": pg.final_loss, "measured_best_grid": grid_best.final_loss,
                        "measured_best_grid_name": grid_best.name, "lrs": opt.free_form.lrs().tolist()}
    print(f"\n## Free-form schedule ({best} law, small model)\n")
    print(f"predicted: free-form {opt.free_form_loss:.4f}, best grid {opt.best_grid.label} {opt.best_grid_loss:.4f}")
    print(f"measured:  free-form {ff.final_loss:.4f}, law's best grid {opt.best_grid.label} {pg.final_loss:.4f}, "
          f"best measured grid schedule {grid_best.name} {grid_best.final_loss:.4f} "
          f"-> free-form {'beats' if ff.final_loss < grid_best.final_loss else 'does not beat'} the best grid by "
          f"{grid_best.final_loss - ff.final_loss:+.4f}")

    if args.figures:
        from direct_opt.schedule.plots import plot_fit, plot_optimum, plot_schedules

        fig_dir = Path(args.figures)
        plot_fit(laws[("small", best)], [c for c in small if c.name in FIT_SET or c.name.endswith(("-0.1", "-0.5"))],
                 fitted=FIT_SET, path=fig_dir / "schedule_fit.png",
                 title=f"{best} law, small TinyGPT: fitted (solid) and held-out (dashed)")
        measured = {s: grid_of(small, s) for s in SIZES["small"]["shapes"]}
        plot_optimum(opt, measured=measured, path=fig_dir / "schedule_optimize.png",
                     title=f"{best} law (small TinyGPT): predicted lines, measured crosses")
        plot_schedules({"free-form (optimised)": opt.free_form, f"best grid: {grid_best.name}":
                        next(c.lrs for c in small if c.name == grid_best.name), "cosine": Cosine(T, PEAK, WARMUP)},
                       path=fig_dir / "schedule_free_form.png")
    load_end = os.getloadavg()
    res["load"] = {"start": load_start, "end": load_end}
    res["time_s"] = time.perf_counter() - t_start
    print(f"\nload average at end: {load_end[0]:.2f}; wall time {res['time_s']:.0f}s "
          f"(collect: small {res['models']['small']['collect_time_s']:.0f}s, "
          f"large {res['models']['large']['collect_time_s']:.0f}s when not cached)")
    out = Path(args.json) if args.json else work / "results.json"
    out.write_text(json.dumps(res, indent=1, default=float))
    print(f"numbers written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
