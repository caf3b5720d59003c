"""The evaluation harness: does a selection help after annealing? (docs/evaluation.md)

For every selector and seed the harness

1. restores the SAME checkpoint (weights + AdamW state, deep copies — no run sees another
   run's updates),
2. selects K pool samples (gradient statistics, when a selector needs them, are extracted
   ONCE from the checkpoint with a configurable :class:`~direct_opt.extract.ExtractConfig`),
3. anneals on the selection with a Warmup-Stable-Decay decay phase
   (:func:`direct_opt.lm.train.anneal`, see :class:`AnnealSchedule`), recording the
   validation and test loss curves,
4. writes the finished run to ``out_dir/runs/<label>__seed<s>.json`` atomically.

The seed controls the ``random`` selector (and randomised solver backends) and the order
in which the annealing batches are drawn; deterministic selectors give the same indices
for every seed while the annealing order still varies. All selectors share the seed, so
differences to the baseline are *paired* by seed.

Re-running with the same ``out_dir`` skips finished runs after checking that the run
was made with the same checkpoint, data, K, schedule, extraction config and selector
options (a mismatch is an error: use another ``out_dir`` or ``overwrite=True``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import InfeasibleProblemError, InvalidInputError, InvalidParameterError, UnknownNameError
from ..threads import reproducible
from ..output import write_output
from ..result import _jsonable
from ..stats import GradientStats
from .annealer import (Annealer, Checkpoint, as_annealer, check_row_keys_disjoint, n_rows, short_hash,  # noqa: F401
                       subset)
from .report import EvalReport, build_summary
from .schedule import AnnealSchedule, check_schedule_gain
from .spec import SelectorSpec, parse_selectors

REPORT_FORMAT = "direct_opt.eval_report"
REPORT_VERSION = 1
RUN_FORMAT = "direct_opt.eval_run"
#: selectors that work without gradient statistics (everything else triggers extraction)
#: None: the program uses the always-feasible default budget (problem.feasible_budget)
DEFAULT_PROGRAM_TAU_REL: float | None = None
BUDGET_OPTIONS = ("tau", "tau_rel", "budget_frac")


class DataOverlapError(InvalidInputError):
    """The held-out test set shares rows with the pool or the validation set."""


class ResumeMismatchError(InvalidInputError):
    """``out_dir`` holds runs made with a different configuration."""


# ----------------------------------------------------------------------------- checks
def data_fingerprint(x: Any) -> str:
    """Short SHA-256 of a tensor / array / object (used in the resume fingerprint)."""
    return short_hash(x)


def check_disjoint(test: Any, other: Any, test_name: str, other_name: str) -> None:
    """Raise DataOverlapError if any row / sample of ``test`` equals (exactly) one of ``other``."""
    hits = check_row_keys_disjoint(test, other, test_name, other_name)
    if hits:
        raise DataOverlapError(
            f"{len(hits)} of {n_rows(test)} {test_name} rows also occur in {other_name} (first: {test_name} row "
            f"{hits[0]}); held-out loss would be contaminated. Remove them from {test_name} or from {other_name}."
        )


def _check_seeds(seeds: Any) -> list[int]:
    if seeds is None or isinstance(seeds, (str, bytes)):
        raise InvalidParameterError(f"seeds must be a non-empty list of integers, got {seeds!r}.")
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = [int(seeds)]
    seeds = list(seeds)
    if not seeds:
        raise InvalidParameterError("seeds is empty; pass at least one seed, e.g. seeds=[0, 1, 2].")
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise InvalidParameterError(f"seed {s!r} is not an integer.")
        out.append(int(s))
    if len(set(out)) != len(out):
        raise InvalidParameterError(f"seeds {out} contain duplicates.")
    return out


def _check_names(specs: Sequence[SelectorSpec]) -> None:
    names = [s.name for s in specs if s.fn is None]
    if not names:
        return
    from ..selectors import available_selectors

    known = available_selectors()
    bad = [n for n in names if n not in known]
    if bad:
        raise UnknownNameError(f"unknown selector(s) {bad}; known selectors: {known}.")
    # unknown options fail now, not after minutes of extraction and annealing
    from ..selectors.base import check_options

    for spec in specs:
        if spec.fn is None:
            check_options(spec.name, spec.options)


def _needs_stats(spec: SelectorSpec) -> bool:
    if spec.fn is not None:
        return bool(getattr(spec.fn, "needs_stats", False))
    from ..selectors.base import needs_stats

    return needs_stats(spec.name)


# ------------------------------------------------------------------------------- I/O
def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to ``path`` atomically (:func:`direct_opt.output.write_output`: temp file + fsync
    + rename, mode 0666 & ~umask, regular files only; never a half-written file)."""
    write_output(Path(path), json.dumps(_jsonable(obj), indent=1))


def _diff_keys(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += _diff_keys(va, vb, f"{prefix}{k}.")
        elif json.dumps(_jsonable(va), sort_keys=True) != json.dumps(_jsonable(vb), sort_keys=True):
            out.append(f"{prefix}{k}")
    return out


# ---------------------------------------------------------------------------- harness
def _program(stats: GradientStats, k: int, tau_rel: float | None) -> dict[str, Any]:
    """The DiReCT program at K (used to score every selection on the paper's objective)."""
    from ..certificates import upper_bound
    from ..problem import SelectionProblem

    prob = SelectionProblem.from_stats(stats, k=k, tau_rel=tau_rel)
    try:
        ub: float | None = float(upper_bound(prob))
    except InfeasibleProblemError:  # no K-subset fits the budget: selections are still scored, no bound
        ub = None
    return {"problem": prob, "upper_bound": ub, "tau": float(prob.tau), "tau_rel": tau_rel}


def _program_budget(spec: SelectorSpec, program: dict[str, Any] | None) -> dict[str, Any]:
    """A ``direct`` selector without its own budget solves the program its selection is scored on."""
    if spec.fn is not None or spec.name != "direct" or program is None or set(spec.options) & set(BUDGET_OPTIONS):
        return {}
    return {"tau_rel": program["tau_rel"]} if program["tau_rel"] is not None else {"tau": program["tau"]}


def _program_metrics(prog: dict[str, Any] | None, idx: np.ndarray) -> dict[str, Any] | None:
    if prog is None:
        return None
    prob = prog["problem"]
    obj = float(prob.selection_objective(idx))
    cost = float(prob.a[idx].sum())
    ub = prog["upper_bound"]
    ok = bool(cost <= prog["tau"] * (1 + 1e-9) + 1e-12)
    # UB bounds f over selections WITHIN the stiff budget only: no ratio for one outside it
    return {"objective": obj, "stiff_cost": cost, "tau": prog["tau"], "tau_rel": prog["tau_rel"],
            "budget_ok": ok, "upper_bound": ub,
            "certified_ratio": obj / ub if ok and ub is not None and ub > 0 and math.isfinite(ub) else None}


def _composition(groups: np.ndarray | None, idx: np.ndarray) -> dict[str, float] | None:
    if groups is None:
        return None
    sel = groups[idx]
    labels, counts = np.unique(sel, return_counts=True)
    return {str(g): float(c) / len(idx) for g, c in zip(labels, counts)}


def _run_selector(spec: SelectorSpec, *, k: int, stats: GradientStats | None, model: Any, loss_fn: Any,
                  pool: Any, reference: Any, seed: int, extra: Mapping[str, Any] | None = None
                  ) -> tuple[np.ndarray, dict[str, Any], float]:
    t0 = time.perf_counter()
    if spec.fn is None:
        from ..selectors import select

        sel = select(spec.name, k=k, stats=stats, model=model, loss_fn=loss_fn, pool=pool,
                     reference=reference, seed=seed, **dict(spec.options), **dict(extra or {}))
        return np.asarray(sel.indices, dtype=np.int64), dict(sel.diagnostics), float(sel.time_s)
    out = spec.fn(k=k, stats=stats, model=model, loss_fn=loss_fn, pool=pool, reference=reference, seed=seed,
                  **dict(spec.options))
    elapsed = time.perf_counter() - t0
    idx = np.asarray(getattr(out, "indices", out))
    diag = dict(getattr(out, "diagnostics", {}) or {})
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise InvalidInputError(f"selector {spec.label!r} returned {idx.shape} {idx.dtype}; expected 1-D integer indices.")
    idx = np.sort(idx.astype(np.int64))
    n = n_rows(pool)
    if idx.size != k or np.unique(idx).size != k or (idx.size and (idx[0] < 0 or idx[-1] >= n)):
        raise InvalidInputError(f"selector {spec.label!r} must return {k} distinct indices in [0, {n}); "
                                f"got {idx.size} ({np.unique(idx).size} distinct).")
    return idx, diag, float(getattr(out, "time_s", elapsed))


@dataclass
class EvalData:
    """The data of an evaluation, in the annealer's form: candidates, validation, held-out test."""

    pool: Any
    val: Any
    test: Any
    groups: np.ndarray | None = None

    @property
    def n(self) -> int:
        return n_rows(self.pool)


@dataclass
class EvalPlan:
    """Everything :func:`evaluate` runs on, validated (phase 1); the later phases only read it."""

    annealer: Annealer
    loss_fn: Callable[..., torch.Tensor]
    data: EvalData
    specs: list[SelectorSpec]
    seeds: list[int]
    k: int
    schedule: AnnealSchedule
    peak_lr: float
    extract_config: Any
    stats: GradientStats | None = None
    reference: Any = None
    reference_source: str | None = None
    out: Path | None = None
    baseline: str | None = "random"
    target_group: str | None = None
    program_tau_rel: float = DEFAULT_PROGRAM_TAU_REL
    eval_batch_size: int = 256
    level: float = 0.95
    progress: bool = True
    plot: bool = True
    overwrite: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    schedule_gain: dict[str, Any] | None = None


@reproducible
def evaluate(
    model: Any,
    loss_fn: Callable[..., torch.Tensor],
    pool: Any,
    val: Any,
    test: Any,
    selectors: Sequence[Any],
    k: int,
    seeds: Sequence[int],
    schedule: AnnealSchedule | Mapping[str, Any] | None = None,
    *,
    extract_config: Any = None,
    reference: Any = None,
    pool_groups: Sequence[str] | np.ndarray | None = None,
    target_group: str | None = None,
    out_dir: str | Path | None = None,
    baseline: str | None = "random",
    optim_state: dict | None = None,
    stats: GradientStats | None = None,
    program_tau_rel: float = DEFAULT_PROGRAM_TAU_REL,
    eval_batch_size: int = 256,
    level: float = 0.95,
    progress: bool = True,
    plot: bool = True,
    overwrite: bool = False,
    meta: Mapping[str, Any] | None = None,
    schedule_gain: Mapping[str, Any] | None = None,
) -> EvalReport:
    """Anneal the same checkpoint on each selector's K samples, for every seed, and compare.

    Runs in phases: :func:`validate` (every input, before any work) → :func:`plan_runs`
    (configuration fingerprint, finished runs resumed from ``out_dir``) → :func:`extract_phase`
    (gradient statistics once, when a pending selector needs them) → :func:`anneal_phase`
    (select + anneal every pending (selector, seed)) → :func:`report_phase`.

    Args:
        model: the checkpoint θ_s: a :class:`~direct_opt.lm.TrainState` (weights, AdamW
            state, EMA, stable LR) or a :class:`~direct_opt.lm.TinyGPT` (then pass
            ``optim_state`` or use ``schedule.optimizer_state="reset"``); a Hugging Face
            causal LM (any torch model whose forward takes ``labels`` and returns ``.loss``:
            annealed by :class:`~direct_opt.evaluate.hf_annealer.HFAnnealer`); or any
            :class:`~direct_opt.evaluate.annealer.Annealer`.
        loss_fn: ``loss_fn(model, batch) -> (B,)`` per-sample losses (extraction and the
            loss-based selectors; e.g. ``hf_causal_lm_loss()`` for a Hugging Face model;
            annealing itself uses the annealer's loss).
        pool: the candidates: (N, L) integer rows for TinyGPT; a sequence of token dicts
            (``input_ids``, optional ``attention_mask``) for a Hugging Face model.
        val: validation data, same form (curvature / targeting for the selectors; val curve).
        test: held-out data, same form (must share no row with pool or val).
        selectors: names, ``"name:key=value,..."`` strings, dicts, :class:`SelectorSpec`
            or callables (see :mod:`direct_opt.evaluate.spec`).
        k: K, samples per selection (1 <= K <= N).
        seeds: non-empty list of ints (selector randomness + annealing data order).
        schedule: :class:`AnnealSchedule` (or its dict); None → linear decay, 4 epochs
            over the K samples, from the checkpoint's LR, optimizer state restored.
        extract_config: :class:`~direct_opt.extract.ExtractConfig` for the ONE extraction
            (default: sjlt, k_sketch=512, batch 32); its ``out_dir`` defaults to
            ``out_dir/extract`` so extraction resumes too.
        reference: reference model for ``excess-loss``; None → the annealer's (the
            checkpoint's EMA when ``model`` is a TrainState).
        pool_groups: (N,) group label per pool row (e.g. ``clean:docstrings``,
            ``degraded:random``) → composition of each selection.
        target_group: the group the validation/test data come from (reported as a column).
        out_dir: where runs, ``results.json``, ``table.md`` and ``eval.png`` go (None: memory only).
        baseline: selector label the paired differences are taken against; added to the
            selectors when missing (None: no differences).
        optim_state: the optimizer state at the checkpoint when ``model`` is a bare model.
        stats: precomputed GradientStats of ``pool`` at this checkpoint (skips extraction).
        program_tau_rel: τ_rel (paper's budget) of the DiReCT program every selection is scored
            on; None: the always-feasible default budget. A ``direct`` selector without a budget
            option of its own solves this same program.
        level: confidence level of the paired t-intervals.
        progress: tqdm bars. plot: write ``eval.png`` (needs out_dir).
        overwrite: discard finished runs in ``out_dir`` instead of resuming.
        meta: extra JSON-safe provenance stored in the report (corpus info, ...).
        schedule_gain: how much the best LR schedule gains on this model (from
            :func:`~direct_opt.evaluate.schedule.schedule_gain`, or measured); the report then
            weighs it against the best selection's gain (one line under the table).
    Returns:
        :class:`EvalReport` (also written to ``out_dir/results.json``).
    Raises:
        InvalidParameterError (K, seeds, schedule), UnknownNameError (selector names),
        DataOverlapError (test rows in pool/val), ResumeMismatchError (out_dir from another config).
    """
    plan = validate(model, loss_fn, pool, val, test, selectors, k, seeds, schedule, extract_config=extract_config,
                    reference=reference, pool_groups=pool_groups, target_group=target_group, out_dir=out_dir,
                    baseline=baseline, optim_state=optim_state, stats=stats, program_tau_rel=program_tau_rel,
                    eval_batch_size=eval_batch_size, level=level, progress=progress, plot=plot, overwrite=overwrite,
                    meta=meta, schedule_gain=schedule_gain)
    core, records, pending = plan_runs(plan)
    stats_info, program = extract_phase(plan, pending)
    anneal_phase(plan, core, pending, records, program)
    return report_phase(plan, core, records, stats_info)


def validate(model: Any, loss_fn: Callable[..., torch.Tensor], pool: Any, val: Any, test: Any,
             selectors: Sequence[Any], k: int, seeds: Sequence[int],
             schedule: AnnealSchedule | Mapping[str, Any] | None = None, *, extract_config: Any = None,
             reference: Any = None, pool_groups: Any = None, optim_state: dict | None = None,
             out_dir: str | Path | None = None, baseline: str | None = "random", meta: Mapping[str, Any] | None = None,
             **settings: Any) -> EvalPlan:
    """Phase 1: check every input of :func:`evaluate` (same arguments) and return the :class:`EvalPlan`."""
    seeds = _check_seeds(seeds)
    specs = parse_selectors(selectors)
    if baseline is not None and baseline not in [s.label for s in specs]:
        specs = [*specs, parse_selectors([baseline])[0]]
    _check_names(specs)
    annealer = as_annealer(model, optim_state)
    data = EvalData(annealer.check_data(pool, "pool"), annealer.check_data(val, "val"),
                    annealer.check_data(test, "test"))
    n = data.n
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise InvalidParameterError(f"k={k!r} must be a positive integer (samples per selection).")
    if k > n:
        raise InvalidParameterError(f"k={k} exceeds the pool size N={n}; choose 1 <= k <= {n}.")
    check_disjoint(data.test, data.pool, "test", "the pool")
    check_disjoint(data.test, data.val, "test", "the validation set")
    if pool_groups is not None:
        data.groups = np.asarray(pool_groups).astype(str)
        if data.groups.shape != (n,):
            raise InvalidInputError(f"pool_groups has shape {data.groups.shape}; expected one label per pool row ({n},).")
    stats = settings.get("stats")
    if stats is not None and stats.n != n:
        raise InvalidInputError(f"stats describe N={stats.n} samples but the pool has {n} rows.")
    if schedule is None:
        schedule = AnnealSchedule()
    elif isinstance(schedule, Mapping):
        schedule = AnnealSchedule.from_dict(schedule)
    elif not isinstance(schedule, AnnealSchedule):
        raise InvalidParameterError(f"schedule must be an AnnealSchedule, a dict or None, got {type(schedule).__name__}.")
    if schedule.optimizer_state == "restore" and not annealer.has_optimizer_state():
        raise InvalidParameterError("schedule.optimizer_state='restore' needs the optimizer state: pass a TrainState, "
                                    "optim_state=..., or use optimizer_state='reset'.")
    peak_lr = (max(schedule.lrs(int(k), 1.0)) if schedule.lr_schedule is not None
               else (schedule.peak_lr or annealer.default_lr() or 3e-3))
    schedule_gain = check_schedule_gain(settings.pop("schedule_gain", None))
    ref_desc = "given" if reference is not None else None
    if reference is None:
        reference = annealer.reference()
        ref_desc = "checkpoint EMA" if reference is not None else None
    if reference is None and any(s.name == "excess-loss" for s in specs):
        raise InvalidInputError(
            "selector 'excess-loss' needs a reference model θ_ref (the model given has no EMA); pass "
            "reference=<model>, or a TrainState from direct_opt.lm.pretrain (its EMA is used), or drop 'excess-loss'."
        )
    progress = settings.get("progress", True)
    if extract_config is None:
        from ..extract import ExtractConfig

        extract_config = ExtractConfig(k_sketch=512, projector="sjlt", batch_size=32, verbose=progress)
    _check_less_features(specs, stats, with_optimizer_state(extract_config, _annealer_optimizer_state(annealer)))
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and extract_config.out_dir is None and stats is None:
        extract_config = dataclasses.replace(extract_config, out_dir=str(out / "extract"))
    return EvalPlan(annealer=annealer, loss_fn=loss_fn, data=data, specs=specs, seeds=seeds, k=int(k),
                    schedule=schedule, peak_lr=peak_lr, extract_config=extract_config, reference=reference,
                    reference_source=ref_desc, out=out, baseline=baseline, meta=dict(meta or {}),
                    schedule_gain=schedule_gain, **settings)


def plan_runs(plan: EvalPlan) -> tuple[dict[str, Any], dict[tuple[str, int], dict[str, Any]], list[tuple[SelectorSpec, int]]]:
    """Phase 2: the configuration fingerprint ``core`` (written to ``out/config.json``), the
    finished runs found in ``out/runs`` (checked against it) and the pending (selector, seed) runs."""
    d, stats, out = plan.data, plan.stats, plan.out
    core = {
        **plan.annealer.fingerprint(),
        "data": {"pool": data_fingerprint(d.pool), "val": data_fingerprint(d.val), "test": data_fingerprint(d.test),
                 "pool_groups": None if d.groups is None else data_fingerprint(d.groups),
                 "n_pool": d.n, "n_val": n_rows(d.val), "n_test": n_rows(d.test)},
        "k": plan.k,
        "schedule": {**plan.schedule.to_dict(), "peak_lr_used": plan.peak_lr, "n_steps": plan.schedule.n_steps(plan.k)},
        "extract": None if stats is not None else plan.extract_config.identity(),
        "stats": None if stats is None else stats.checksum(),
        "reference": None if plan.reference is None else {"source": plan.reference_source,
                                                           "fingerprint": data_fingerprint(plan.reference.state_dict())},
        "program_tau_rel": plan.program_tau_rel,
        "eval_batch_size": plan.eval_batch_size,
    }
    runs_dir = out / "runs" if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        cfg_path = out / "config.json"
        if cfg_path.exists() and not plan.overwrite:
            old = json.loads(cfg_path.read_text()).get("core", {})
            diff = _diff_keys(old, _jsonable(core))
            if diff:
                raise ResumeMismatchError(
                    f"{out} holds runs of a different configuration (differs in: {', '.join(diff)}); "
                    "use another out_dir or pass overwrite=True / --overwrite."
                )
        write_json_atomic(cfg_path, {"format": "direct_opt.eval_config", "core": core})
    records: dict[tuple[str, int], dict[str, Any]] = {}
    pending: list[tuple[SelectorSpec, int]] = []
    for spec in plan.specs:
        for seed in plan.seeds:
            fp = _run_fingerprint(core, spec, seed)
            path = runs_dir / f"{spec.file_stem}__seed{seed}.json" if runs_dir is not None else None
            if path is not None and path.exists() and not plan.overwrite:
                rec = json.loads(path.read_text())
                if rec.get("fingerprint") != fp:
                    raise ResumeMismatchError(
                        f"{path} was made with a different configuration (selector options, seed or config); "
                        "use another out_dir or pass overwrite=True / --overwrite."
                    )
                records[(spec.label, seed)] = rec
            else:
                pending.append((spec, seed))
    return core, records, pending


def _check_less_features(specs: Sequence[SelectorSpec], stats: Any, cfg: Any) -> None:
    """Stop before any work when a selector using Adam features (faithful ``less``, ...) cannot get them."""
    from ..selectors.aligned import ADAM_FEATURE_OPTION, wants_adam_features

    wants = [s for s in specs if wants_adam_features(s.name, dict(s.options))]
    has = stats.adam_coords is not None if stats is not None else cfg.optimizer_state is not None
    if wants and not has:
        where = ("the stats given have no adam_coords" if stats is not None else
                 "the checkpoint has no optimizer state" if cfg.projector not in ("kronecker", "paper") else
                 f"projector {cfg.projector!r} forms no per-sample gradients")
        first = wants[0]
        raise InvalidInputError(
            f"selector {first.label!r} uses the Adam update directions as features (faithful LESS), "
            f"but {where}. Pass the checkpoint's optimizer state (a TrainState, or optim_state=...) with a "
            f"'gaussian'/'sjlt' projector, or use '{first.name}:{ADAM_FEATURE_OPTION[first.name]}=sgd' (plain "
            "gradients) or 'less:variant=mean-gradient' (the simplified LESS).")


def _annealer_optimizer_state(annealer: Any) -> Mapping[str, Any] | None:
    """The annealer's checkpoint AdamW state (its optional ``optimizer_state()`` method), or None."""
    return getattr(annealer, "optimizer_state", lambda: None)()


def with_optimizer_state(cfg: Any, state: Mapping[str, Any] | None) -> Any:
    """``cfg`` (ExtractConfig) with the checkpoint's AdamW ``state`` (the features of faithful
    ``less``) when the config has none, ``state`` is not None and the projector forms per-sample
    gradients; else ``cfg`` unchanged."""
    if cfg.optimizer_state is not None or state is None or cfg.projector in ("kronecker", "paper"):
        return cfg
    return dataclasses.replace(cfg, optimizer_state=state)


def extract_phase(plan: EvalPlan, pending: Sequence[tuple[SelectorSpec, int]]
                  ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Phase 3: gradient statistics (once, when a pending selector needs them; stored in
    ``plan.stats``) and the DiReCT program every selection is scored on."""
    extract_time = 0.0
    if plan.stats is None and any(_needs_stats(s) for s, _ in pending):
        from ..extract import extract_stats

        t0 = time.perf_counter()
        plan.stats = extract_stats(plan.annealer.model(), plan.loss_fn, plan.data.pool, plan.data.val,
                                   with_optimizer_state(plan.extract_config, _annealer_optimizer_state(plan.annealer)))
        extract_time = time.perf_counter() - t0
    stats = plan.stats
    if stats is None:
        return None, None
    info = {"n": stats.n, "r": stats.r, "k_star": stats.k_star,
            "k": None if stats.eigvals is None else int(len(stats.eigvals)),
            "extract_time_s": extract_time, "checksum": stats.checksum()}
    return info, _program(stats, plan.k, plan.program_tau_rel)


def anneal_phase(plan: EvalPlan, core: Mapping[str, Any], pending: Sequence[tuple[SelectorSpec, int]],
                 records: dict[tuple[str, int], dict[str, Any]], program: dict[str, Any] | None) -> None:
    """Phase 4: select and anneal every pending run (each written to ``out/runs`` when done)."""
    runs_dir = plan.out / "runs" if plan.out is not None else None
    bar = tqdm(total=len(plan.specs) * len(plan.seeds), initial=len(records), desc="evaluate", unit="run",
               disable=not plan.progress, dynamic_ncols=True)
    try:
        for spec, seed in pending:
            bar.set_postfix_str(f"{spec.label} seed={seed}")
            rec = _one_run(plan, spec, seed, program)
            rec["fingerprint"] = _run_fingerprint(core, spec, seed)
            if runs_dir is not None:
                write_json_atomic(runs_dir / f"{spec.file_stem}__seed{seed}.json", {**rec, "config_core": core})
            records[(spec.label, seed)] = rec
            bar.update(1)
    finally:
        bar.close()


def report_phase(plan: EvalPlan, core: Mapping[str, Any], records: Mapping[tuple[str, int], dict[str, Any]],
                 stats_info: dict[str, Any] | None) -> EvalReport:
    """Phase 5: paired differences against the baseline, the report (saved to ``out``)."""
    runs = [dict(records[(s.label, seed)]) for s in plan.specs for seed in plan.seeds]
    for r in runs:
        r.pop("config_core", None)
    labels = [s.label for s in plan.specs]
    summary = build_summary(runs, labels, plan.seeds, plan.baseline, plan.target_group, plan.level)
    report = EvalReport(
        config={"core": core, "selectors": [s.describe() for s in plan.specs], "seeds": plan.seeds, "k": plan.k,
                "baseline": plan.baseline, "target_group": plan.target_group, "level": plan.level, "meta": plan.meta,
                "schedule_gain": plan.schedule_gain},
        runs=runs, labels=labels, seeds=plan.seeds, baseline=plan.baseline, summary=summary, stats_info=stats_info,
        target_group=plan.target_group, level=plan.level,
    )
    if plan.out is not None:
        report.save(plan.out, plot=plan.plot)
    return report


def _run_fingerprint(core: Mapping[str, Any], spec: SelectorSpec, seed: int) -> str:
    blob = json.dumps(_jsonable({"core": core, "selector": spec.describe(), "seed": seed}), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _one_run(plan: EvalPlan, spec: SelectorSpec, seed: int, program: dict[str, Any] | None) -> dict[str, Any]:
    d = plan.data
    model = plan.annealer.model()  # fresh copy: a selector can never touch the checkpoint
    idx, diag, sel_time = _run_selector(spec, k=plan.k, stats=plan.stats, model=model, loss_fn=plan.loss_fn,
                                        pool=d.pool, reference=plan.reference, seed=seed,
                                        extra=_program_budget(spec, program))
    t0 = time.perf_counter()
    res = plan.annealer.anneal(subset(d.pool, idx), schedule=plan.schedule, peak_lr=plan.peak_lr, seed=seed,
                               eval_sets={"val": d.val, "test": d.test}, eval_batch_size=plan.eval_batch_size)
    anneal_time = time.perf_counter() - t0
    return {
        "format": RUN_FORMAT,
        "label": spec.label,
        "selector": spec.describe(),
        "seed": seed,
        "k": plan.k,
        "indices": [int(i) for i in idx],
        "selection_time_s": sel_time,
        "diagnostics": _trim(diag),
        "program": _program_metrics(program, idx),
        "composition": _composition(d.groups, idx),
        "before": {name: c[0][1] for name, c in res.curves.items()},
        "final": dict(res.final),
        "curves": {name: [[int(s), float(v)] for s, v in c] for name, c in res.curves.items()},
        "anneal_steps": res.steps,
        "lrs": [float(v) for v in res.lrs],
        "anneal_time_s": anneal_time,
        "train_loss_last": res.train_losses[-1] if res.train_losses else None,
    }


def _trim(x: Any, max_len: int = 256) -> Any:
    """JSON-safe copy of diagnostics with long lists shortened (kept reproducible, not bloated)."""
    x = _jsonable(x)
    if isinstance(x, dict):
        return {k: _trim(v, max_len) for k, v in x.items()}
    if isinstance(x, list):
        if len(x) > max_len:
            return {"truncated_list": True, "len": len(x), "head": x[:16]}
        return [_trim(v, max_len) for v in x]
    return x
