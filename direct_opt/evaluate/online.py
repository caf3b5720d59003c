"""Online selection against static selection, from the same checkpoint (issue 12).

:func:`evaluate_online` anneals the harness's checkpoint with the harness's decay schedule:

* every **online** selector (``direct_opt.online``) trains each step on the b = batch_size best
  of a super-batch of B = ``super_batch_factor`` · b pool rows, drawn by seeded permutations;
* every **static** selector (``less``, ``random``, ``direct``, ...) runs through the ordinary
  harness (:func:`direct_opt.evaluate.evaluate`: K selected once, then annealed);

twice: at **equal steps** (the schedule's n steps for everyone) and at **equal compute**.
Compute is counted in per-sample forward passes (a backward counts 2): a plain step costs 3b;
the budget is F = 3b·n, what a plain annealing run (``random`` / ``uniform``) spends. An
online selector gets ⌊(F − setup)/(3b + extra)⌋ steps, with ``extra`` the forwards/backwards
it pushed per step in its equal-steps run (B scoring forwards, reference upkeep) and ``setup``
one-off work (``rho-loss``'s reference); a static selector that needs gradient statistics gets
⌊(F − 3(N + M))/3b⌋ steps (one forward + backward per pool and validation sample for the
extraction). A method whose overhead alone exceeds F gets 0 steps (its final loss is the
checkpoint's). Seeds pair every run with ``random`` (paired t-intervals).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..errors import InvalidInputError, InvalidParameterError
from ..lm.train import evaluate_loss, restore, train_step, wsd_lr
from ..result import _jsonable
from ..threads import reproducible
from .annealer import token_rows
from .harness import (Checkpoint, _check_less_features, _check_names, _check_seeds, _needs_stats, _trim,
                      data_fingerprint, evaluate, with_optimizer_state, write_json_atomic)
from .intervals import paired_difference, summarize
from .schedule import AnnealSchedule
from .spec import SelectorSpec, parse_selectors

ONLINE_DEFAULT = ("blade", "blade:reference=lockstep", "blade:reference=ema", "rho-loss", "greats", "loss", "uniform")
STATIC_DEFAULT = ("less", "random", "direct")
REGIMES = ("equal_steps", "equal_compute")
BASELINE = "random"
#: the online comparison's own baseline (a plain step on a random b of the B candidates)
ONLINE_BASELINE = "uniform"


def check_online_specs(items: Sequence[Any]) -> list[SelectorSpec]:
    """Parse online selectors (names / ``name:key=value`` / dicts) and check names and options now."""
    from ..online import ONLINE, check_options

    specs = parse_selectors(items)
    for s in specs:
        if s.fn is not None:
            raise InvalidParameterError(f"online selectors are given by name; {s.label!r} is a callable "
                                        "(register it with direct_opt.online.register_online_selector).")
        ONLINE.entry(s.name)
        check_options(s.name, s.options)
    return specs


@reproducible
def online_anneal(ckpt: Checkpoint, spec: SelectorSpec, *, loss_fn: Callable, pool: torch.Tensor, val: torch.Tensor,
                  test: torch.Tensor, b: int, super_batch: int, steps: int, peak_lr: float, schedule: AnnealSchedule,
                  seed: int, groups: np.ndarray | None, eval_batch_size: int = 256) -> dict[str, Any]:
    """One annealing run whose batches an online selector chooses; a run record like the harness's."""
    from ..online import OnlineBatches, make_online_selector

    model, opt = restore(ckpt.model_state, ckpt.optim_state, ckpt.config, peak_lr, schedule.optimizer_state)
    params = list(model.parameters())
    curves: dict[str, list[list[float]]] = {"val": [], "test": []}

    def record(t: int) -> None:
        for name, data in (("val", val), ("test", test)):
            curves[name].append([t, evaluate_loss(model, data, eval_batch_size)])

    lr_at = (lambda t: wsd_lr(t, steps, peak_lr, schedule.shape)) if steps else (lambda t: peak_lr)
    t0 = time.perf_counter()
    sel = make_online_selector(spec.name, model=model, loss_fn=loss_fn, val=val, b=b, seed=seed, eta=lr_at,
                               **dict(spec.options))
    setup_time = time.perf_counter() - t0
    record(0)
    composition, train_losses, step_times = [], [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        t_run = time.perf_counter()
        for batch in OnlineBatches(sel, pool, super_batch, steps, seed=seed, groups=groups):
            ts = time.perf_counter()
            model.train()
            loss = train_step(model, opt, batch.data, lr_at(batch.step), params, schedule.grad_clip)
            train_losses.append(float(loss.detach()))
            step_times.append(time.perf_counter() - ts)
            composition.append(batch.diagnostics.get("composition"))
            if (batch.step + 1) % schedule.eval_every == 0 or batch.step + 1 == steps:
                record(batch.step + 1)
        run_time = time.perf_counter() - t_run
    model.eval()
    units = sel.cost["forward"] + 2 * sel.cost["backward"]
    setup_units = sel.setup_cost["forward"] + 2 * sel.setup_cost["backward"]
    return {
        "label": spec.label, "selector": spec.describe(), "seed": seed, "kind": "online", "steps": steps,
        "b": b, "B": super_batch, "before": {k: c[0][1] for k, c in curves.items()},
        "final": {k: c[-1][1] for k, c in curves.items()}, "curves": curves, "train_loss_last":
        train_losses[-1] if train_losses else None, "composition_per_step": composition,
        "cost": {"selector": dict(sel.cost), "setup": dict(sel.setup_cost), "selector_units": units,
                 "setup_units": setup_units, "extra_units_per_step": units / steps if steps else 0.0},
        "time_s": {"setup": setup_time, "run": run_time, "train_steps": float(np.sum(step_times))},
        "last_diagnostics": _trim(sel.diagnostics),
    }


def _static_record(rec: Mapping[str, Any], steps: int) -> dict[str, Any]:
    return {"label": rec["label"], "selector": rec["selector"], "seed": rec["seed"], "kind": "static",
            "steps": steps, "before": rec["before"], "final": rec["final"], "curves": rec["curves"],
            "composition": rec.get("composition"), "time_s": {"selection": rec.get("selection_time_s"),
                                                              "run": rec.get("anneal_time_s")}}


def _unaffordable(label: str, desc: dict, seed: int, before: Mapping[str, float], kind: str) -> dict[str, Any]:
    return {"label": label, "selector": desc, "seed": seed, "kind": kind, "steps": 0, "before": dict(before),
            "final": dict(before), "curves": {k: [[0, v]] for k, v in before.items()}, "unaffordable": True}


@reproducible
def evaluate_online(
    model: Any,
    loss_fn: Callable[..., torch.Tensor],
    pool: Any,
    val: Any,
    test: Any,
    *,
    online: Sequence[Any] = ONLINE_DEFAULT,
    static: Sequence[Any] = STATIC_DEFAULT,
    k: int,
    seeds: Sequence[int],
    schedule: AnnealSchedule | None = None,
    super_batch_factor: int = 4,
    pool_groups: Sequence[str] | None = None,
    target_group: str | None = None,
    extract_config: Any = None,
    equal_compute: bool = True,
    out_dir: str | Path | None = None,
    level: float = 0.95,
    progress: bool = True,
    plot: bool = True,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every online selector vs every static one, same checkpoint and schedule, equal steps and equal compute.

    Args:
        model: the checkpoint (a :class:`~direct_opt.lm.TrainState`, as for the harness).
        loss_fn: ``loss_fn(model, batch) -> (n,)`` per-sample losses.
        pool, val, test: (N, L), (M, L), (T, L) integer rows (test disjoint from pool and val).
        online: online selectors (names, ``"name:key=value"``, dicts); see ``direct_opt.online``.
        static: static selectors for the harness (``random`` is always added: the baseline).
        k: K of the static selectors; the schedule's length n is ``schedule.n_steps(k)`` for all.
        seeds: ≥ 1 seeds (paired across all methods).
        schedule: the harness's :class:`AnnealSchedule`; b = ``schedule.batch_size``.
        super_batch_factor: B = factor · b candidates per online step (B <= N).
        pool_groups, target_group: source labels (composition) and the validation domain.
        extract_config: the static harness's extraction config.
        equal_compute: also run the equal-compute comparison.
        out_dir: writes ``results.json``, ``table.md``, ``online_curves.png``,
            ``online_composition.png`` and per-run JSON (resumed when the configuration matches).
    Returns:
        the report dict (also ``results.json``): ``config``, ``runs``, ``summary[regime][label]``, ``table``.
    """
    seeds = _check_seeds(seeds)
    on_specs = check_online_specs(online)
    st_specs = parse_selectors(list(static) + ([BASELINE] if BASELINE not in [str(s) for s in static] else []))
    _check_names(st_specs)
    clash = {s.label for s in on_specs} & {s.label for s in st_specs}
    if clash:
        raise InvalidParameterError(f"online and static selectors share the label(s) {sorted(clash)}; relabel them.")
    schedule = schedule or AnnealSchedule()
    if not isinstance(schedule, AnnealSchedule):
        schedule = AnnealSchedule.from_dict(schedule)
    pool_t, val_t, test_t = token_rows(pool, "pool"), token_rows(val, "val"), token_rows(test, "test")
    n, m = int(pool_t.shape[0]), int(val_t.shape[0])
    b = int(schedule.batch_size)
    if isinstance(super_batch_factor, bool) or not isinstance(super_batch_factor, int) or super_batch_factor < 1:
        raise InvalidParameterError(f"super_batch_factor={super_batch_factor!r} must be an integer >= 1.")
    B = super_batch_factor * b
    if B > n:
        raise InvalidParameterError(f"super batch B = {super_batch_factor}·{b} = {B} exceeds the pool (N={n}); "
                                    "lower super_batch_factor or the batch size.")
    groups = None if pool_groups is None else np.asarray(pool_groups).astype(str)
    if groups is not None and groups.shape != (n,):
        raise InvalidInputError(f"pool_groups has shape {groups.shape}; expected ({n},).")
    ckpt = Checkpoint.from_any(model)
    peak_lr = schedule.peak_lr or ckpt.lr or 3e-3
    n_steps = schedule.n_steps(k)
    out = Path(out_dir) if out_dir is not None else None
    say = print if progress else (lambda *a, **kw: None)

    # ---- one extraction, shared by every static run (equal steps and equal compute)
    stats = None
    if any(_needs_stats(s) for s in st_specs):
        from ..extract import ExtractConfig, extract_stats

        cfg = extract_config or ExtractConfig(k_sketch=512, projector="sjlt", batch_size=32, verbose=progress)
        if out is not None and cfg.out_dir is None:
            cfg = dataclasses.replace(cfg, out_dir=str(out / "extract"))
        cfg = with_optimizer_state(cfg, ckpt.optim_state)  # faithful `less` needs the Adam features
        _check_less_features(st_specs, None, cfg)
        stats = extract_stats(ckpt.model(), loss_fn, pool_t, val_t, cfg)

    def static_runs(specs: list[SelectorSpec], steps: int, tag: str) -> list[dict[str, Any]]:
        sched = dataclasses.replace(schedule, steps=steps, epochs=None)
        rep = evaluate(model, loss_fn, pool_t, val_t, test_t, specs, k, seeds, sched, stats=stats,
                       pool_groups=groups, target_group=target_group, baseline=None,
                       out_dir=None if out is None else out / f"static_{tag}", progress=progress, plot=False,
                       extract_config=extract_config)
        return [_static_record(r, steps) for r in rep.runs]

    base_fp = {"ckpt": ckpt.fingerprint(), "pool": data_fingerprint(pool_t), "val": data_fingerprint(val_t),
               "test": data_fingerprint(test_t), "groups": None if groups is None else data_fingerprint(groups),
               "schedule": schedule.to_dict(), "b": b, "B": B, "peak_lr": peak_lr}

    def online_run(spec: SelectorSpec, seed: int, steps: int, tag: str) -> dict[str, Any]:
        fp = hashlib.sha256(json.dumps(_jsonable({**base_fp, "spec": spec.describe(), "seed": seed, "steps": steps}),
                                       sort_keys=True).encode()).hexdigest()[:20]
        path = None if out is None else out / "online_runs" / f"{spec.file_stem}__{tag}__seed{seed}.json"
        if path is not None and path.exists():
            rec = json.loads(path.read_text())
            if rec.get("fingerprint") == fp:
                return rec
        say(f"online {spec.label} seed={seed} {tag}: {steps} steps")
        rec = online_anneal(ckpt, spec, loss_fn=loss_fn, pool=pool_t, val=val_t, test=test_t, b=b, super_batch=B,
                            steps=steps, peak_lr=peak_lr, schedule=schedule, seed=seed, groups=groups)
        rec["fingerprint"] = fp
        if path is not None:
            write_json_atomic(path, rec)
        return rec

    t_all = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {"equal_steps": [], "equal_compute": []}
    runs["equal_steps"] += static_runs(st_specs, n_steps, "equal_steps")
    for spec in on_specs:
        for seed in seeds:
            runs["equal_steps"].append(online_run(spec, seed, n_steps, "equal_steps"))

    budget = 3 * b * n_steps
    extraction_units = 3 * (n + m)
    if equal_compute:
        before = runs["equal_steps"][0]["before"]
        by_steps: dict[int, list[SelectorSpec]] = {}
        for s in st_specs:
            st = n_steps if not _needs_stats(s) else (budget - extraction_units) // (3 * b)
            by_steps.setdefault(int(st), []).append(s)
        for st, specs in by_steps.items():
            if st == n_steps:
                runs["equal_compute"] += [r for r in runs["equal_steps"]
                                          if r["kind"] == "static" and r["label"] in {s.label for s in specs}]
            elif st <= 0:
                runs["equal_compute"] += [_unaffordable(s.label, s.describe(), seed, before, "static")
                                          for s in specs for seed in seeds]
            else:
                runs["equal_compute"] += static_runs(specs, st, f"equal_compute_{st}")
        for spec in on_specs:
            for seed in seeds:
                eq = next(r for r in runs["equal_steps"] if r["label"] == spec.label and r["seed"] == seed)
                per_step = 3 * b + eq["cost"]["extra_units_per_step"]
                st = int((budget - eq["cost"]["setup_units"]) // per_step)
                if st == n_steps:
                    runs["equal_compute"].append(eq)
                elif st <= 0:
                    runs["equal_compute"].append(_unaffordable(spec.label, spec.describe(), seed, eq["before"], "online"))
                else:
                    runs["equal_compute"].append(online_run(spec, seed, st, f"equal_compute_{st}"))

    labels = [s.label for s in st_specs] + [s.label for s in on_specs]
    summary = {reg: summarize_runs(runs[reg], labels, seeds, target_group, level) for reg in REGIMES if runs[reg]}
    report = {
        "format": "direct_opt.online_eval", "version": 1,
        "config": {"k": k, "b": b, "B": B, "super_batch_factor": super_batch_factor, "n_steps": n_steps,
                   "seeds": seeds, "schedule": {**schedule.to_dict(), "peak_lr_used": peak_lr},
                   "online": [s.describe() for s in on_specs], "static": [s.describe() for s in st_specs],
                   "budget_units": budget, "extraction_units": extraction_units, "n_pool": n, "n_val": m,
                   "target_group": target_group, "level": level, "baseline": BASELINE, "meta": dict(meta or {})},
        "labels": labels, "summary": summary, "runs": runs, "time_s": time.perf_counter() - t_all,
    }
    report["table"] = table(report)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "results.json", report)
        tmp = out / ".table.md.tmp"
        tmp.write_text(report["table"] + "\n")
        tmp.replace(out / "table.md")
        if plot:
            plot_online_curves(report, out / "online_curves.png")
            plot_online_composition(report, out / "online_composition.png")
    return report


def _category(group: str, target_group: str | None) -> str:
    if target_group is not None and group == target_group:
        return "target"
    return "degraded" if group.startswith("degraded:") else "other clean"


def summarize_runs(runs: Sequence[Mapping[str, Any]], labels: Sequence[str], seeds: Sequence[int],
                   target_group: str | None, level: float) -> dict[str, Any]:
    """label -> test/val mean ± sd, paired difference vs random (test), steps, target/degraded fractions."""
    by = {(r["label"], int(r["seed"])): r for r in runs}
    base = {s: by[(BASELINE, s)]["final"]["test"] for s in seeds if (BASELINE, s) in by}
    plain = {s: by[(ONLINE_BASELINE, s)]["final"]["test"] for s in seeds if (ONLINE_BASELINE, s) in by}
    out: dict[str, Any] = {}
    for lab in labels:
        rs = [by[(lab, s)] for s in seeds if (lab, s) in by]
        if not rs:
            continue
        test = {int(r["seed"]): float(r["final"]["test"]) for r in rs}
        entry: dict[str, Any] = {"test": summarize(list(test.values())).to_dict(),
                                 "val": summarize([float(r["final"]["val"]) for r in rs]).to_dict(),
                                 "test_before": float(rs[0]["before"]["test"]),
                                 "steps": sorted({int(r["steps"]) for r in rs}),
                                 "kind": rs[0]["kind"], "unaffordable": any(r.get("unaffordable") for r in rs)}
        entry["diff_test_vs_random"] = (paired_difference(test, base, level).to_dict()
                                        if lab != BASELINE and set(test) & set(base) else None)
        # online vs online uniform: the selection's effect without the effect of drawing fresh pool rows
        entry["diff_test_vs_uniform"] = (paired_difference(test, plain, level).to_dict()
                                         if rs[0]["kind"] == "online" and lab != ONLINE_BASELINE
                                         and set(test) & set(plain) else None)
        fr = _fractions(rs, target_group)
        if fr:
            entry.update(fr)
        if rs[0]["kind"] == "online" and "cost" in rs[0]:
            entry["extra_units_per_step"] = float(np.mean([r["cost"]["extra_units_per_step"] for r in rs]))
            entry["select_time_per_step_s"] = float(np.mean(
                [(r["time_s"]["run"] - r["time_s"]["train_steps"]) / max(1, r["steps"]) for r in rs]))
            entry["train_time_per_step_s"] = float(np.mean([r["time_s"]["train_steps"] / max(1, r["steps"]) for r in rs]))
        out[lab] = entry
    return out


def _fractions(rs: Sequence[Mapping[str, Any]], target_group: str | None) -> dict[str, float] | None:
    tot: dict[str, float] = {}
    count = 0
    for r in rs:
        comps = r.get("composition_per_step") or ([r["composition"]] if r.get("composition") else [])
        for c in comps:
            if not c:
                continue
            s = float(sum(c.values()))
            for g, v in c.items():
                cat = _category(g, target_group)
                tot[cat] = tot.get(cat, 0.0) + float(v) / s
            count += 1
    if not count:
        return None
    return {"target_fraction": tot.get("target", 0.0) / count, "degraded_fraction": tot.get("degraded", 0.0) / count}


def _fmt(x: Any, nd: int = 4) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


def _fmt_diff(d: Mapping[str, Any] | None) -> str:
    if d is None:
        return "—"
    return f"{d['mean']:+.4f} [{_fmt(d['low'])}, {_fmt(d['high'])}]" + (" *" if d.get("significant") else "")


def table(report: Mapping[str, Any]) -> str:
    """Markdown table: per regime and selector, final test loss, paired differences vs random and (online
    selectors) vs online uniform (* = the 95% interval excludes 0), steps, share of target / degraded rows."""
    lines = ["| regime | selector | kind | steps | test loss (mean ± sd) | Δ vs random [95% CI] | Δ vs uniform [95% CI] "
             "| target frac | degraded frac | extra fwd units/step |", "|---|---|---|---|---|---|---|---|---|---|"]
    for reg, summ in report["summary"].items():
        for lab in report["labels"]:
            e = summ.get(lab)
            if e is None:
                continue
            diff, diff_u = (_fmt_diff(e.get("diff_test_vs_random")), _fmt_diff(e.get("diff_test_vs_uniform")))
            steps = ",".join(map(str, e["steps"])) + (" (unaffordable)" if e["unaffordable"] else "")
            lines.append(f"| {reg.replace('_', ' ')} | {lab} | {e['kind']} | {steps} | {e['test']['mean']:.4f} ± "
                         f"{e['test']['std']:.4f} | {diff} | {diff_u} | {_fmt(e.get('target_fraction'), 3)} | "
                         f"{_fmt(e.get('degraded_fraction'), 3)} | {_fmt(e.get('extra_units_per_step'), 1)} |")
    return "\n".join(lines)


def plot_online_curves(report: Mapping[str, Any], path: str | Path | None = None):
    """Test loss vs step (mean over seeds), one line per selector, one panel per regime."""
    from matplotlib.figure import Figure

    from ..plotting import _finish, method_color

    regs = [r for r in REGIMES if report["runs"].get(r)]
    fig = Figure(figsize=(6.0 * len(regs), 4.2), layout="constrained")
    labels = report["labels"]
    for i, reg in enumerate(regs):
        ax = fig.add_subplot(1, len(regs), i + 1)
        for lab in labels:
            curves = [r["curves"]["test"] for r in report["runs"][reg] if r["label"] == lab]
            if not curves or len(curves[0]) < 2:
                continue
            steps = [s for s, _ in curves[0]]
            vals = np.array([[v for _, v in c] for c in curves if len(c) == len(steps)])
            kind = next(r["kind"] for r in report["runs"][reg] if r["label"] == lab)
            ax.plot(steps, vals.mean(0), color=method_color(lab), lw=1.5, label=lab,
                    ls="-" if kind == "online" else "--")
        ax.set_xlabel("annealing step")
        ax.set_ylabel("test loss (nats/byte)")
        ax.set_title(f"{reg.replace('_', ' ')} (online solid, static dashed)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    return _finish(fig, path)


def plot_online_composition(report: Mapping[str, Any], path: str | Path | None = None):
    """Fraction of target / other clean / degraded rows chosen per step (equal steps, mean over seeds)."""
    from matplotlib.figure import Figure

    from ..plotting import _finish

    tg = report["config"]["target_group"]
    runs = [r for r in report["runs"]["equal_steps"] if r["kind"] == "online" and r.get("composition_per_step")]
    labels = [lab for lab in report["labels"] if any(r["label"] == lab for r in runs)]
    cats = ("target", "other clean", "degraded")
    colors = {"target": "#2ca02c", "other clean": "#1f77b4", "degraded": "#d62728"}
    fig = Figure(figsize=(3.2 * max(1, len(labels)), 3.2), layout="constrained")
    for i, lab in enumerate(labels):
        ax = fig.add_subplot(1, len(labels), i + 1)
        rs = [r for r in runs if r["label"] == lab]
        T = len(rs[0]["composition_per_step"])
        frac = np.zeros((len(cats), T))
        for r in rs:
            for t, c in enumerate(r["composition_per_step"][:T]):
                s = float(sum(c.values()))
                for g, v in c.items():
                    frac[cats.index(_category(g, tg)), t] += v / s / len(rs)
        ax.stackplot(np.arange(T), frac, labels=cats, colors=[colors[c] for c in cats], alpha=0.8)
        ax.set_title(lab, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1)
        if i == 0:
            ax.set_ylabel("fraction of the chosen batch")
            ax.legend(fontsize=7, loc="lower left")
    return _finish(fig, path)
