"""``direct-opt schedule``: fit, predict and optimise LR schedules with loss laws.

    direct-opt schedule collect --out curves/                         # TinyGPT under constant/WSD/cosine (torch)
    direct-opt schedule fit --curves curves/curves.json --fit-on constant,cosine,wsd-linear-0.3 \\
        --law multi-power --out law.json --plot fit.png
    direct-opt schedule predict --law law.json --schedule wsd:ratio=0.2,shape=1-sqrt --total-steps 600 \\
        --out pred.json --plot pred.png
    direct-opt schedule optimize --law law.json --total-steps 600 --warmup 30 --out opt.json --plot opt.png

Curve files: a curve set from ``collect``, CSV with columns step,lr,loss (one run per file),
JSON or JSON lines (see docs/schedule.md). Schedules: ``constant``, ``cosine``,
``wsd:ratio=R,shape=S`` (shapes linear, cosine, 1-sqrt, exponential, step), with
``total=``, ``peak=``, ``warmup=`` in the spec or from --total-steps/--peak-lr/--warmup, or a
file with one LR per step (.npy, .json list, text). Bad arguments or input files: one line
on stderr, exit 2. Only ``collect`` imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import DirectOptError, InvalidInputError

LAW_DEFAULT = "multi-power"


def _usage(fn):
    """Run ``fn``; input errors (bad files, specs, values) become the CLI's exit-2 usage errors."""
    from ..cli import UsageError

    try:
        return fn()
    except (DirectOptError, OSError) as exc:
        if isinstance(exc, (ValueError, OSError)):
            raise UsageError(str(exc)) from None
        raise


def _csv(text: str, kind=str) -> list:
    try:
        return [kind(x.strip()) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of numbers, got {text!r}") from None


def _floats(text: str) -> list[float]:
    return _csv(text, float)


def add_parser(subparsers: Any) -> None:
    """Register ``direct-opt schedule`` and its four actions."""
    from ..cli import _finite_float, _positive_int

    p = subparsers.add_parser("schedule", help="fit/predict/optimise the LR schedule with loss laws",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", parser_class=type(p))
    p.set_defaults(func=lambda a: _missing_action())

    def common_sched(q: argparse.ArgumentParser, total_required: bool = False) -> None:
        q.add_argument("--total-steps", type=_positive_int, required=total_required, default=None,
                       help="steps T of every schedule (warmup included)")
        q.add_argument("--peak-lr", type=_finite_float, default=None, help="peak LR (default: the law's fitted peak)")
        q.add_argument("--warmup", type=int, default=0, help="linear warmup steps (default 0)")
        q.add_argument("--model-size", type=_finite_float, default=None, help="N, for the forward-momentum law")

    q = sub.add_parser("fit", help="fit a loss law to observed curves")
    q.add_argument("--curves", nargs="+", required=True, help="curve files (curve sets, CSV, JSON, JSONL)")
    q.add_argument("--law", default=LAW_DEFAULT, help="momentum | forward-momentum | multi-power (default multi-power)")
    q.add_argument("--fit-on", type=_csv, default=None,
                   help="comma-separated curve names to fit (default all); the others are scored as held out")
    q.add_argument("--model-size", type=_finite_float, default=None, help="N for curves without one")
    q.add_argument("--bootstrap", type=int, default=32, help="bootstrap refits for intervals (default 32; 0: none)")
    q.add_argument("--starts", type=_positive_int, default=8, help="optimiser starts (default 8)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--min-step", type=_positive_int, default=None, help="fit points at steps >= this only")
    q.add_argument("--out", default="law.json", help="fitted law + goodness of fit, JSON (default law.json)")
    q.add_argument("--plot", default=None, help="observed vs predicted curves, PNG")
    q.set_defaults(func=_cmd_fit, check=check)

    q = sub.add_parser("predict", help="predict the loss curve of schedules with a fitted law")
    q.add_argument("--law", required=True, help="law JSON written by `schedule fit`")
    q.add_argument("--schedule", action="append", default=[], help="schedule spec or per-step LR file (repeatable)")
    q.add_argument("--curves", nargs="+", default=[], help="observed curves to predict and score as well")
    common_sched(q)
    q.add_argument("--level", type=_finite_float, default=0.9, help="bootstrap interval level (default 0.9)")
    q.add_argument("--out", default=None, help="predictions (JSON)")
    q.add_argument("--plot", default=None, help="predicted (and observed) curves, PNG")
    q.set_defaults(func=_cmd_predict, check=check)

    q = sub.add_parser("optimize", help="best WSD ratio/shape and a free-form schedule for a step budget")
    q.add_argument("--law", required=True, help="law JSON written by `schedule fit`")
    common_sched(q, total_required=True)
    q.add_argument("--final-lr", type=_finite_float, default=0.0, help="LR at the end of the decay (default 0)")
    q.add_argument("--shapes", type=_csv, default=None, help="decay shapes (default all five)")
    q.add_argument("--ratios", type=_floats, default=None, help="decay ratios (default 0.05,0.10,...,0.95)")
    q.add_argument("--knots", type=_positive_int, default=64, help="free-form resolution (default 64)")
    q.add_argument("--no-free-form", action="store_true", help="grid only")
    q.add_argument("--out", default=None, help="result (JSON)")
    q.add_argument("--plot", default=None, help="final loss vs annealing ratio per shape, PNG")
    q.set_defaults(func=_cmd_optimize, check=check)

    q = sub.add_parser("collect", help="train the embedded TinyGPT under several schedules and write the curves")
    q.add_argument("--out", required=True, help="output directory (curves.json, curves.png)")
    q.add_argument("--steps", type=_positive_int, default=None, help="steps per run (default 600)")
    q.add_argument("--peak-lr", type=_finite_float, default=None, help="peak LR (default 3e-3)")
    q.add_argument("--warmup", type=int, default=None, help="warmup steps (default 30)")
    q.add_argument("--ratios", type=_floats, default=None, help="WSD decay ratios (default 0.1,0.2,0.3,0.5)")
    q.add_argument("--shapes", type=_csv, default=None, help="WSD shapes (default linear,cosine,1-sqrt)")
    q.add_argument("--schedule", action="append", default=[],
                   help="run these schedules instead of the default set (spec or LR file; repeatable)")
    q.add_argument("--batch-size", type=_positive_int, default=16)
    q.add_argument("--eval-every", type=_positive_int, default=10)
    q.add_argument("--n-eval", type=_positive_int, default=128, help="held-out windows (default 128)")
    q.add_argument("--n-train", type=_positive_int, default=8192, help="training windows (default 8192)")
    q.add_argument("--d-model", type=_positive_int, default=None)
    q.add_argument("--n-layer", type=_positive_int, default=None)
    q.add_argument("--n-head", type=_positive_int, default=None)
    q.add_argument("--seed", type=int, default=0, help="initialisation and batch order")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=_cmd_collect, check=check)


def _missing_action() -> int:
    from ..cli import UsageError

    raise UsageError("schedule needs an action: fit, predict, optimize or collect (see `direct-opt schedule --help`)")


def check(args: argparse.Namespace) -> None:
    """The validation pass of ``direct-opt schedule ACTION`` (helpers in :mod:`direct_opt.cli`)."""
    from ..cli import check_input_path, check_number, check_output

    for path in (getattr(args, "curves", None) or []):
        check_input_path(path, "--curves")
    if args.action in ("predict", "optimize"):  # (fit's --law is a law name)
        check_input_path(args.law, "--law")
    check_output(args, "--out", kind="dir" if args.action == "collect" else "file")
    if getattr(args, "plot", None) is not None:
        check_output(args, "--plot")
    for flag in ("warmup", "bootstrap", "seed"):
        check_number(getattr(args, flag, None), f"--{flag}", minimum=0, integer=True)
    check_number(getattr(args, "level", None), "--level", above=0.0, maximum=1.0)
    check_number(getattr(args, "final_lr", None), "--final-lr", minimum=0.0)


def _write_json(path: str | None, blob: dict[str, Any]) -> None:
    if path:
        from ..stats import write_text_atomic

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(Path(path), json.dumps(blob, indent=1))
        print(f"written: {path}")


def _load_all_curves(paths: list[str], model_size: float | None) -> list:
    from .curves import as_curve, load_curves

    cs = [c for p in paths for c in load_curves(p)]
    if model_size is not None:
        cs = [as_curve(c, model_size=model_size) if c.model_size is None else c for c in cs]
    names = [c.name for c in cs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InvalidInputError(f"curve names must be unique across files; repeated: {dup} (rename the files).")
    return cs


def _schedules(specs: list[str], args: argparse.Namespace, default_peak: float | None) -> dict[str, Any]:
    from .curves import load_lrs
    from .schedules import PerStep, parse_schedule

    out: dict[str, Any] = {}
    for spec in specs:
        if Path(spec).is_file():
            out[Path(spec).stem] = PerStep(load_lrs(spec), name=Path(spec).stem)
        else:
            peak = args.peak_lr if args.peak_lr is not None else default_peak
            s = parse_schedule(spec, total_steps=args.total_steps, peak_lr=peak, warmup_steps=args.warmup)
            out[spec] = s
    return out


def _cmd_fit(args: argparse.Namespace) -> int:
    from .fit import fit, goodness
    from .laws import get_law

    def prepare():
        get_law(args.law)
        cs = _load_all_curves(args.curves, args.model_size)
        names = [c.name for c in cs]
        chosen = args.fit_on or names
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise InvalidInputError(f"--fit-on names {unknown} are not among the curves {names}.")
        if args.bootstrap < 0:
            raise InvalidInputError(f"--bootstrap {args.bootstrap} must be >= 0.")
        return cs, chosen

    cs, chosen = _usage(prepare)
    fit_cs = [c for c in cs if c.name in chosen]
    law = _usage(lambda: fit(fit_cs, law=args.law, bootstrap=args.bootstrap, n_starts=args.starts, seed=args.seed,
                             min_step=args.min_step))
    print(law.summary())
    held = {}
    for c in cs:
        if c.name in chosen:
            continue
        n = c.model_size if law.uses_model_size else None
        try:
            pred = law.predict(c.lrs, c.steps, model_size=n)
        except DirectOptError as exc:
            print(f"  held out {c.name}: not predicted ({exc})")
            continue
        g = goodness(c.losses, pred)
        g["final_error"] = float(pred[-1] - c.losses[-1])
        held[c.name] = g
        print(f"  held out {c.name}: MAE {g['mae']:.4f}, final-loss error {g['final_error']:+.4f} "
              f"({100 * abs(g['final_error']) / c.losses[-1]:.2f} %)")
    law.fit_info["heldout"] = held
    if law.bootstrap is not None:
        for k, (lo, hi) in law.param_intervals(0.9).items():
            if k not in law.fixed:
                print(f"  {k}: {law.params[k]:.4g}  90% bootstrap interval [{lo:.4g}, {hi:.4g}]")
    law.save(args.out)
    print(f"written: {args.out}")
    if args.plot:
        from .plots import plot_fit

        plot_fit(law, cs, fitted=chosen, path=args.plot)
        print(f"written: {args.plot}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .laws import load_law

    def prepare():
        law = load_law(args.law)
        if not args.schedule and not args.curves:
            raise InvalidInputError("give --schedule SPEC (repeatable) and/or --curves FILE to predict.")
        scheds = _schedules(args.schedule, args, law.lr_scale)
        cs = _load_all_curves(args.curves, args.model_size)
        if not 0 < args.level < 1:
            raise InvalidInputError(f"--level {args.level} must lie in (0, 1).")
        for s in scheds.values():
            law.final_loss(s, model_size=args.model_size)  # checks model_size before any output
        return law, scheds, cs

    law, scheds, cs = _usage(prepare)
    items = dict(scheds)
    items.update({c.name: c.lrs for c in cs})
    record: dict[str, Any] = {"format": "direct_opt.schedule_prediction", "version": 1, "law": law.to_dict(),
                              "predictions": {}}
    for name, s in items.items():
        n = args.model_size
        obs = next((c for c in cs if c.name == name), None)
        if obs is not None and law.uses_model_size and n is None:
            n = obs.model_size
        pred = law.predict(s, model_size=n)
        entry: dict[str, Any] = {"schedule": s.to_dict() if hasattr(s, "to_dict") else None,
                                 "loss": pred.tolist(), "final_loss": float(pred[-1])}
        if law.bootstrap is not None:
            lo, hi = law.predict_interval(s, level=args.level, model_size=n)
            entry.update({"interval_level": args.level, "final_interval": [float(lo[-1]), float(hi[-1])]})
        line = f"{name}: predicted final loss {pred[-1]:.4f}"
        if "final_interval" in entry:
            line += f" [{entry['final_interval'][0]:.4f}, {entry['final_interval'][1]:.4f}]"
        if obs is not None:
            entry["observed_final"] = obs.final_loss
            line += f" (observed {obs.final_loss:.4f})"
        print(line)
        record["predictions"][name] = entry
    _write_json(args.out, record)
    if args.plot:
        from .plots import plot_fit, plot_predictions

        if cs:
            plot_fit(law, cs, path=args.plot)
        else:
            plot_predictions(law, scheds, path=args.plot, model_size=args.model_size)
        print(f"written: {args.plot}")
    return 0


def _cmd_optimize(args: argparse.Namespace) -> int:
    from .laws import load_law
    from .optimize import DEFAULT_RATIOS, optimize
    from .schedules import DECAY_SHAPES

    def run():
        law = load_law(args.law)
        return law, optimize(law, args.total_steps, peak_lr=args.peak_lr, warmup_steps=args.warmup,
                             final_lr=args.final_lr, shapes=args.shapes or DECAY_SHAPES,
                             ratios=args.ratios or DEFAULT_RATIOS, model_size=args.model_size,
                             free_form=not args.no_free_form, knots=args.knots)

    law, opt = _usage(run)
    print(opt.summary())
    _write_json(args.out, {**opt.to_dict(), "law_record": law.to_dict()})
    if args.plot:
        from .plots import plot_optimum

        plot_optimum(opt, path=args.plot)
        print(f"written: {args.plot}")
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from . import lm_runs as collect_mod  # imports torch
    from .schedules import DECAY_SHAPES

    def prepare():
        steps = args.steps or collect_mod.DEFAULT_STEPS
        peak = args.peak_lr if args.peak_lr is not None else collect_mod.DEFAULT_PEAK_LR
        warm = args.warmup if args.warmup is not None else min(collect_mod.DEFAULT_WARMUP, steps // 10)
        ns = argparse.Namespace(total_steps=steps, peak_lr=peak, warmup=warm)
        if args.schedule:
            scheds = list(_schedules(args.schedule, ns, peak).values())
        else:
            shapes = args.shapes or collect_mod.DEFAULT_COLLECT_SHAPES
            bad = [s for s in shapes if s not in DECAY_SHAPES]
            if bad:
                raise InvalidInputError(f"unknown shape(s) {bad}; known: {list(DECAY_SHAPES)}.")
            scheds = collect_mod.default_schedules(steps, peak, warm, args.ratios or collect_mod.DEFAULT_COLLECT_RATIOS,
                                                   shapes)
        model = {k: v for k, v in (("d_model", args.d_model), ("n_layer", args.n_layer), ("n_head", args.n_head))
                 if v is not None}
        from ..lm import GPTConfig

        try:
            GPTConfig(**model)
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None
        return scheds, model

    scheds, model = _usage(prepare)
    out = Path(args.out)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    curves = collect_mod.collect(scheds, model=model, batch_size=args.batch_size, eval_every=args.eval_every,
                                 n_eval=args.n_eval, n_train=args.n_train, seed=args.seed,
                                 out=out / "curves.json", log=log)
    from .plots import plot_curves

    plot_curves(curves, path=out / "curves.png")
    print(f"written: {out / 'curves.json'}, {out / 'curves.png'}")
    for c in curves:
        print(f"  {c.name:22s} final held-out loss {c.final_loss:.4f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["schedule", *sys.argv[1:]]))
