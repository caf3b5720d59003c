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

import copy
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

from ..defaults import TAU_REL
from ..errors import InfeasibleProblemError, InvalidInputError, InvalidParameterError, UnknownNameError
from ..threads import reproducible
from ..lm.model import GPTConfig, TinyGPT
from ..lm.train import TrainState, anneal, load_model
from ..output import write_output
from ..result import _jsonable
from ..stats import GradientStats
from .report import EvalReport, build_summary
from .schedule import AnnealSchedule, check_schedule_gain
from .spec import SelectorSpec, parse_selectors

REPORT_FORMAT = "direct_opt.eval_report"
REPORT_VERSION = 1
RUN_FORMAT = "direct_opt.eval_run"
#: selectors that work without gradient statistics (everything else triggers extraction)
DEFAULT_PROGRAM_TAU_REL = TAU_REL


class DataOverlapError(InvalidInputError):
    """The held-out test set shares rows with the pool or the validation set."""


class ResumeMismatchError(InvalidInputError):
    """``out_dir`` holds runs made with a different configuration."""


# --------------------------------------------------------------------------- checkpoint
@dataclass
class Checkpoint:
    """The annealing start point θ_s: weights, AdamW state, architecture, stable LR, EMA."""

    model_state: dict[str, torch.Tensor]
    optim_state: dict | None
    config: GPTConfig
    lr: float | None = None
    ema_state: dict[str, torch.Tensor] | None = None

    @classmethod
    def from_any(cls, model: Any, optim_state: dict | None = None) -> "Checkpoint":
        """From a :class:`TrainState`, a :class:`Checkpoint`, or a TinyGPT (+ optional optimizer state)."""
        if isinstance(model, Checkpoint):
            return model
        if isinstance(model, TrainState):
            return cls({k: v.detach().clone() for k, v in model.model_state.items()},
                       copy.deepcopy(model.optim_state if optim_state is None else optim_state),
                       model.config, float(model.lr) if model.lr else None,
                       {k: v.detach().clone() for k, v in model.ema_state.items()} if model.ema_state else None)
        if isinstance(model, TinyGPT):
            lr = None
            if optim_state:
                lr = float(optim_state.get("param_groups", [{}])[0].get("lr") or 0) or None
            return cls({k: v.detach().clone() for k, v in model.state_dict().items()},
                       copy.deepcopy(optim_state), model.config, lr)
        raise InvalidInputError(
            f"model must be a direct_opt.lm TrainState (from pretrain) or a TinyGPT, got {type(model).__name__}; "
            "the harness anneals with direct_opt.lm.train.anneal."
        )

    def model(self) -> TinyGPT:
        """A fresh TinyGPT (eval mode) holding the checkpoint weights."""
        return load_model(self.model_state, self.config)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        _hash_obj(h, {"model": self.model_state, "optim": self.optim_state, "config": self.config.to_dict()})
        return h.hexdigest()[:16]


def _hash_obj(h: "hashlib._Hash", obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        h.update(f"A{obj.shape}{obj.dtype}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, Mapping):
        h.update(b"{")
        for k in sorted(obj, key=str):
            h.update(str(k).encode() + b":")
            _hash_obj(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for v in obj:
            _hash_obj(h, v)
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def data_fingerprint(x: Any) -> str:
    """Short SHA-256 of a tensor / array / object (used in the resume fingerprint)."""
    h = hashlib.sha256()
    _hash_obj(h, x)
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- checks
def _as_rows(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise InvalidInputError(f"{what} must be an integer tensor (n, seq_len+1), got {type(x).__name__} "
                                f"{tuple(getattr(x, 'shape', ()))}.")
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        raise InvalidInputError(f"{what} must hold integer token/byte ids, got dtype {x.dtype}.")
    if x.shape[0] == 0:
        raise InvalidInputError(f"{what} is empty; pass at least one row.")
    return x.long()


def _row_set(x: torch.Tensor) -> set[bytes]:
    arr = np.ascontiguousarray(x.numpy().astype(np.int64))
    return {r.tobytes() for r in arr}


def check_disjoint(test: torch.Tensor, other: torch.Tensor, test_name: str, other_name: str) -> None:
    """Raise DataOverlapError if any row of ``test`` equals (exactly) a row of ``other``."""
    if test.shape[1] != other.shape[1]:
        return
    other_rows = _row_set(other)
    arr = np.ascontiguousarray(test.numpy().astype(np.int64))
    hits = [i for i, r in enumerate(arr) if r.tobytes() in other_rows]
    if hits:
        raise DataOverlapError(
            f"{len(hits)} of {len(arr)} {test_name} rows also occur in {other_name} (first: {test_name} row "
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
def _program(stats: GradientStats, k: int, tau_rel: float) -> dict[str, Any]:
    """The DiReCT program at K (used to score every selection on the paper's objective)."""
    from ..certificates import upper_bound
    from ..problem import SelectionProblem

    prob = SelectionProblem.from_stats(stats, k=k, tau_rel=tau_rel)
    try:
        ub: float | None = float(upper_bound(prob))
    except InfeasibleProblemError:  # no K-subset fits the budget: selections are still scored, no bound
        ub = None
    return {"problem": prob, "upper_bound": ub, "tau": float(prob.tau), "tau_rel": tau_rel}


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
                  pool: torch.Tensor, reference: Any, seed: int) -> tuple[np.ndarray, dict[str, Any], float]:
    t0 = time.perf_counter()
    if spec.fn is None:
        from ..selectors import select

        sel = select(spec.name, k=k, stats=stats, model=model, loss_fn=loss_fn, pool=pool,
                     reference=reference, seed=seed, **dict(spec.options))
        return np.asarray(sel.indices, dtype=np.int64), dict(sel.diagnostics), float(sel.time_s)
    out = spec.fn(k=k, stats=stats, model=model, loss_fn=loss_fn, pool=pool, reference=reference, seed=seed,
                  **dict(spec.options))
    elapsed = time.perf_counter() - t0
    idx = np.asarray(getattr(out, "indices", out))
    diag = dict(getattr(out, "diagnostics", {}) or {})
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise InvalidInputError(f"selector {spec.label!r} returned {idx.shape} {idx.dtype}; expected 1-D integer indices.")
    idx = np.sort(idx.astype(np.int64))
    n = int(pool.shape[0])
    if idx.size != k or np.unique(idx).size != k or (idx.size and (idx[0] < 0 or idx[-1] >= n)):
        raise InvalidInputError(f"selector {spec.label!r} must return {k} distinct indices in [0, {n}); "
                                f"got {idx.size} ({np.unique(idx).size} distinct).")
    return idx, diag, float(getattr(out, "time_s", elapsed))


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

    Args:
        model: the checkpoint θ_s: a :class:`~direct_opt.lm.TrainState` (weights, AdamW
            state, EMA, stable LR) or a :class:`~direct_opt.lm.TinyGPT` (then pass
            ``optim_state`` or use ``schedule.optimizer_state="reset"``).
        loss_fn: ``loss_fn(model, batch) -> (B,)`` per-sample losses (extraction and the
            loss-based selectors; annealing itself uses next-byte cross-entropy).
        pool: (N, L) integer rows, the candidates.
        val: (M, L) validation rows (curvature / targeting for the selectors; val curve).
        test: (T, L) held-out rows (must share no row with pool or val).
        selectors: names, ``"name:key=value,..."`` strings, dicts, :class:`SelectorSpec`
            or callables (see :mod:`direct_opt.evaluate.spec`).
        k: K, samples per selection (1 <= K <= N).
        seeds: non-empty list of ints (selector randomness + annealing data order).
        schedule: :class:`AnnealSchedule` (or its dict); None → linear decay, 4 epochs
            over the K samples, from the checkpoint's LR, optimizer state restored.
        extract_config: :class:`~direct_opt.extract.ExtractConfig` for the ONE extraction
            (default: sjlt, k_sketch=512, batch 32); its ``out_dir`` defaults to
            ``out_dir/extract`` so extraction resumes too.
        reference: reference model for ``excess-loss``; None → the checkpoint's EMA when
            ``model`` is a TrainState.
        pool_groups: (N,) group label per pool row (e.g. ``clean:docstrings``,
            ``degraded:random``) → composition of each selection.
        target_group: the group the validation/test data come from (reported as a column).
        out_dir: where runs, ``results.json``, ``table.md`` and ``eval.png`` go (None: memory only).
        baseline: selector label the paired differences are taken against; added to the
            selectors when missing (None: no differences).
        stats: precomputed GradientStats of ``pool`` at this checkpoint (skips extraction).
        program_tau_rel: τ_rel of the DiReCT program every selection is scored on.
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
    # ---------------------------------------------------------------- validate inputs
    seeds = _check_seeds(seeds)
    specs = parse_selectors(selectors)
    if baseline is not None and baseline not in [s.label for s in specs]:
        specs = [*specs, parse_selectors([baseline])[0]]
    _check_names(specs)
    pool_t = _as_rows(pool, "pool")
    val_t = _as_rows(val, "val")
    test_t = _as_rows(test, "test")
    n = int(pool_t.shape[0])
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise InvalidParameterError(f"k={k!r} must be a positive integer (samples per selection).")
    if k > n:
        raise InvalidParameterError(f"k={k} exceeds the pool size N={n}; choose 1 <= k <= {n}.")
    k = int(k)
    check_disjoint(test_t, pool_t, "test", "the pool")
    check_disjoint(test_t, val_t, "test", "the validation set")
    groups = None
    if pool_groups is not None:
        groups = np.asarray(pool_groups).astype(str)
        if groups.shape != (n,):
            raise InvalidInputError(f"pool_groups has shape {groups.shape}; expected one label per pool row ({n},).")
    if stats is not None and stats.n != n:
        raise InvalidInputError(f"stats describe N={stats.n} samples but the pool has {n} rows.")
    if schedule is None:
        schedule = AnnealSchedule()
    elif isinstance(schedule, Mapping):
        schedule = AnnealSchedule.from_dict(schedule)
    elif not isinstance(schedule, AnnealSchedule):
        raise InvalidParameterError(f"schedule must be an AnnealSchedule, a dict or None, got {type(schedule).__name__}.")
    ckpt = Checkpoint.from_any(model, optim_state)
    if schedule.optimizer_state == "restore" and ckpt.optim_state is None:
        raise InvalidParameterError("schedule.optimizer_state='restore' needs the optimizer state: pass a TrainState, "
                                    "optim_state=..., or use optimizer_state='reset'.")
    peak_lr = max(schedule.lrs(k, 1.0)) if schedule.lr_schedule is not None else (schedule.peak_lr or ckpt.lr or 3e-3)
    schedule_gain = check_schedule_gain(schedule_gain)
    ref_desc = "given" if reference is not None else None
    if reference is None and ckpt.ema_state is not None:
        reference = load_model(ckpt.ema_state, ckpt.config)
        ref_desc = "checkpoint EMA"
    if reference is None and any(s.name == "excess-loss" for s in specs):
        raise InvalidInputError(
            "selector 'excess-loss' needs a reference model θ_ref (the model given has no EMA); pass "
            "reference=<model>, or a TrainState from direct_opt.lm.pretrain (its EMA is used), or drop 'excess-loss'."
        )
    if extract_config is None:
        from ..extract import ExtractConfig

        extract_config = ExtractConfig(k_sketch=512, projector="sjlt", batch_size=32, verbose=progress)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and extract_config.out_dir is None and stats is None:
        extract_config = dataclasses.replace(extract_config, out_dir=str(out / "extract"))

    # ------------------------------------------------------------- configuration
    n_steps = schedule.n_steps(k)
    core = {
        "checkpoint": ckpt.fingerprint(),
        "model_config": ckpt.config.to_dict(),
        "data": {"pool": data_fingerprint(pool_t), "val": data_fingerprint(val_t), "test": data_fingerprint(test_t),
                 "pool_groups": None if groups is None else data_fingerprint(groups),
                 "n_pool": n, "n_val": int(val_t.shape[0]), "n_test": int(test_t.shape[0])},
        "k": k,
        "schedule": {**schedule.to_dict(), "peak_lr_used": peak_lr, "n_steps": n_steps},
        "extract": None if stats is not None else extract_config.identity(),
        "stats": None if stats is None else stats.checksum(),
        "reference": None if reference is None else {"source": ref_desc,
                                                      "fingerprint": data_fingerprint(reference.state_dict())},
        "program_tau_rel": program_tau_rel,
        "eval_batch_size": eval_batch_size,
    }
    runs_dir = out / "runs" if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        cfg_path = out / "config.json"
        if cfg_path.exists() and not overwrite:
            old = json.loads(cfg_path.read_text()).get("core", {})
            diff = _diff_keys(old, _jsonable(core))
            if diff:
                raise ResumeMismatchError(
                    f"{out} holds runs of a different configuration (differs in: {', '.join(diff)}); "
                    "use another out_dir or pass overwrite=True / --overwrite."
                )
        write_json_atomic(cfg_path, {"format": "direct_opt.eval_config", "core": core})

    # ----------------------------------------------------------------------- runs
    records: dict[tuple[str, int], dict[str, Any]] = {}
    pending: list[tuple[SelectorSpec, int]] = []
    for spec in specs:
        for seed in seeds:
            fp = _run_fingerprint(core, spec, seed)
            path = runs_dir / f"{spec.file_stem}__seed{seed}.json" if runs_dir is not None else None
            if path is not None and path.exists() and not overwrite:
                rec = json.loads(path.read_text())
                if rec.get("fingerprint") != fp:
                    raise ResumeMismatchError(
                        f"{path} was made with a different configuration (selector options, seed or config); "
                        "use another out_dir or pass overwrite=True / --overwrite."
                    )
                records[(spec.label, seed)] = rec
            else:
                pending.append((spec, seed))

    stats_info: dict[str, Any] | None = None
    program = None
    extract_time = 0.0
    if stats is None and any(_needs_stats(s) for s, _ in pending):
        from ..extract import extract_stats

        t0 = time.perf_counter()
        stats = extract_stats(ckpt.model(), loss_fn, pool_t, val_t, extract_config)
        extract_time = time.perf_counter() - t0
    if stats is not None:
        stats_info = {"n": stats.n, "r": stats.r, "k_star": stats.k_star,
                      "k": None if stats.eigvals is None else int(len(stats.eigvals)),
                      "extract_time_s": extract_time, "checksum": stats.checksum()}
        program = _program(stats, k, program_tau_rel)

    bar = tqdm(total=len(specs) * len(seeds), initial=len(records), desc="evaluate", unit="run",
               disable=not progress, dynamic_ncols=True)
    try:
        for spec, seed in pending:
            bar.set_postfix_str(f"{spec.label} seed={seed}")
            rec = _one_run(spec, seed, ckpt=ckpt, loss_fn=loss_fn, pool=pool_t, val=val_t, test=test_t, k=k,
                           stats=stats, reference=reference,
                           schedule=schedule, peak_lr=peak_lr, groups=groups, program=program,
                           eval_batch_size=eval_batch_size)
            rec["fingerprint"] = _run_fingerprint(core, spec, seed)
            rec["config_core"] = core
            if runs_dir is not None:
                write_json_atomic(runs_dir / f"{spec.file_stem}__seed{seed}.json", rec)
            records[(spec.label, seed)] = rec
            bar.update(1)
    finally:
        bar.close()

    runs = [records[(s.label, seed)] for s in specs for seed in seeds]
    for r in runs:
        r.pop("config_core", None)
    labels = [s.label for s in specs]
    summary = build_summary(runs, labels, seeds, baseline, target_group, level)
    report = EvalReport(
        config={"core": core, "selectors": [s.describe() for s in specs], "seeds": seeds, "k": k,
                "baseline": baseline, "target_group": target_group, "level": level, "meta": dict(meta or {}),
                "schedule_gain": schedule_gain},
        runs=runs, labels=labels, seeds=seeds, baseline=baseline, summary=summary, stats_info=stats_info,
        target_group=target_group, level=level,
    )
    if out is not None:
        report.save(out, plot=plot)
    return report


def _run_fingerprint(core: Mapping[str, Any], spec: SelectorSpec, seed: int) -> str:
    blob = json.dumps(_jsonable({"core": core, "selector": spec.describe(), "seed": seed}), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _one_run(spec: SelectorSpec, seed: int, *, ckpt: Checkpoint, loss_fn: Any, pool: torch.Tensor,
             val: torch.Tensor, test: torch.Tensor, k: int, stats: GradientStats | None, reference: Any,
             schedule: AnnealSchedule, peak_lr: float, groups: np.ndarray | None,
             program: dict[str, Any] | None, eval_batch_size: int) -> dict[str, Any]:
    model = ckpt.model()  # fresh copy: a selector can never touch the checkpoint
    idx, diag, sel_time = _run_selector(spec, k=k, stats=stats, model=model, loss_fn=loss_fn, pool=pool,
                                        reference=reference, seed=seed)
    t0 = time.perf_counter()
    res = anneal(ckpt.model_state, ckpt.optim_state, pool[torch.from_numpy(idx)], lrs=schedule.lrs(k, peak_lr),
                 batch_size=schedule.batch_size, seed=seed,
                 eval_sets={"val": val, "test": test}, eval_every=schedule.eval_every, config=ckpt.config,
                 optimizer_state=schedule.optimizer_state, grad_clip=schedule.grad_clip,
                 eval_batch_size=eval_batch_size)
    anneal_time = time.perf_counter() - t0
    return {
        "format": RUN_FORMAT,
        "label": spec.label,
        "selector": spec.describe(),
        "seed": seed,
        "k": k,
        "indices": [int(i) for i in idx],
        "selection_time_s": sel_time,
        "diagnostics": _trim(diag),
        "program": _program_metrics(program, idx),
        "composition": _composition(groups, idx),
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
