"""Loss curves from the embedded TinyGPT trained under several LR schedules (needs torch).

    from direct_opt.schedule import collect
    curves = collect(total_steps=600, out="curves.json")      # constant, WSD grid, cosine

Every schedule trains the same model from the same initialisation on the same batch order
(stdlib-source corpus, no downloads) and records the loss of a fixed held-out set (windows
of the pretraining distribution never trained on) every ``eval_every`` steps and after the
last step. Runs that share their first b steps (a WSD schedule and the constant run it
leaves, for instance) are not trained twice: the run is branched from an exact snapshot
(weights, AdamW state, batch-stream state) of an earlier run at step b, which gives the
same numbers as training it from scratch (tested).
"""

from __future__ import annotations

import copy
import functools
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import InvalidParameterError
from ..lm import GPTConfig, TinyGPT, stdlib_corpus
from ..lm.train import _BatchStream, _make_optimizer, evaluate_loss, train_step
from .curves import Curve, save_curves
from .schedules import WSD, Constant, Cosine, as_lrs

#: defaults sized for a few minutes on 2 CPU cores (see docs/schedule.md), not for any law
DEFAULT_STEPS = 600
DEFAULT_WARMUP = 30
DEFAULT_PEAK_LR = 3e-3
DEFAULT_COLLECT_RATIOS = (0.1, 0.2, 0.3, 0.5)
DEFAULT_COLLECT_SHAPES = ("linear", "cosine", "1-sqrt")


def default_schedules(total_steps: int = DEFAULT_STEPS, peak_lr: float = DEFAULT_PEAK_LR,
                      warmup_steps: int = DEFAULT_WARMUP, ratios: Sequence[float] = DEFAULT_COLLECT_RATIOS,
                      shapes: Sequence[str] = DEFAULT_COLLECT_SHAPES) -> list[Any]:
    """Constant, WSD at every ``shapes × ratios`` and cosine, all with the same warmup and peak."""
    return ([Constant(total_steps, peak_lr, warmup_steps)]
            + [WSD(total_steps, peak_lr, r, s, warmup_steps) for s in shapes for r in ratios]
            + [Cosine(total_steps, peak_lr, warmup_steps)])


@functools.lru_cache(maxsize=2)
def _windows(data_seed: int, n: int) -> torch.Tensor:
    """``n`` clean stdlib-source windows (65 bytes) of the pretraining distribution (cached per process)."""
    return stdlib_corpus(seed=data_seed, n_pool=16, n_val=16, n_test=16, n_pretrain=n).pretrain


def _lcp(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the common prefix of two LR arrays (bit-equal values)."""
    n = min(a.size, b.size)
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


def collect(schedules: Sequence[Any] | None = None, *, total_steps: int = DEFAULT_STEPS,
            peak_lr: float = DEFAULT_PEAK_LR, warmup_steps: int = DEFAULT_WARMUP, model: dict[str, Any] | None = None,
            batch_size: int = 16, eval_every: int = 10, n_eval: int = 128, n_train: int = 8192, data_seed: int = 0,
            seed: int = 0, weight_decay: float = 0.1, grad_clip: float | None = 1.0, out: Any = None,
            log: Callable[[str], None] | None = None) -> list[Curve]:
    """Train TinyGPT under each schedule; returns one :class:`Curve` per schedule (same order).

    Args:
        schedules: schedule objects / per-step arrays (default :func:`default_schedules` from
            ``total_steps``, ``peak_lr``, ``warmup_steps``).
        model: :class:`~direct_opt.lm.GPTConfig` fields (default 2 layers, d=64, 4 heads).
        batch_size: rows (65 bytes each) per step. eval_every: loss measured every this many steps.
        n_eval: held-out windows the loss is measured on. n_train: training windows.
        data_seed: corpus split. seed: model initialisation and batch order (shared by all runs).
        out: optional path: the curves and their settings are saved there (JSON).
        log: callable(str) for progress lines.
    """
    say = log or (lambda s: None)
    if schedules is None:
        schedules = default_schedules(total_steps, peak_lr, warmup_steps)
    scheds = list(schedules)
    if not scheds:
        raise InvalidParameterError("collect() needs at least one schedule.")
    lrs = [as_lrs(s) for s in scheds]
    names = [getattr(s, "label", f"schedule-{i}") for i, s in enumerate(scheds)]
    names = [n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names)]
    for name, v in (("batch_size", batch_size), ("eval_every", eval_every), ("n_eval", n_eval), ("n_train", n_train)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise InvalidParameterError(f"{name}={v!r} must be a positive integer.")
    cfg = GPTConfig(**{**(model or {}), "seq_len": 64})
    t0 = time.perf_counter()
    windows = _windows(data_seed, n_train + n_eval)
    train, held_out = windows[:n_train], windows[n_train:]
    n_params = TinyGPT(cfg).num_parameters()
    say(f"collect: TinyGPT {n_params} parameters, {len(scheds)} schedules, train {tuple(train.shape)}, "
        f"held-out {tuple(held_out.shape)} ({time.perf_counter() - t0:.1f}s)")

    # plan: visit in descending lexicographic order (longest plateaus first) and branch each run
    # from the earliest earlier run sharing its longest prefix
    order = sorted(range(len(scheds)), key=lambda i: lrs[i].tolist(), reverse=True)
    plan: dict[int, tuple[int | None, int]] = {}
    wanted: dict[int, set[int]] = {i: set() for i in order}
    for pos, i in enumerate(order):
        best: tuple[int | None, int] = (None, 0)
        for j in order[:pos]:
            b = min(_lcp(lrs[i], lrs[j]), lrs[i].size - 1)
            if b > best[1]:
                best = (j, b)
        plan[i] = best
        if best[0] is not None:
            wanted[best[0]].add(best[1])

    uses: dict[tuple[int, int], int] = {}
    for parent, b in plan.values():
        if parent is not None:
            uses[(parent, b)] = uses.get((parent, b), 0) + 1
    snaps: dict[tuple[int, int], dict[str, Any]] = {}
    curves: dict[int, Curve] = {}
    trained = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in order:
            parent, b = plan[i]
            t1 = time.perf_counter()
            state = None
            if parent is not None:
                state = snaps[(parent, b)]
                uses[(parent, b)] -= 1
                if not uses[(parent, b)]:
                    del snaps[(parent, b)]
            evals = _run(lrs[i], state, wanted[i], cfg, train, held_out, batch_size, eval_every, seed,
                         weight_decay, grad_clip, snaps, i)
            trained += lrs[i].size - b
            steps = np.array([s for s, _ in evals])
            curves[i] = Curve(lrs[i], steps, np.array([v for _, v in evals]), name=names[i], model_size=n_params,
                              schedule=scheds[i].to_dict() if hasattr(scheds[i], "to_dict") else None)
            src = f" (branched at step {b} from {names[parent]})" if parent is not None else ""
            say(f"  {names[i]}: final loss {evals[-1][1]:.4f} after {lrs[i].size} steps{src} "
                f"({time.perf_counter() - t1:.1f}s)")
    out_curves = [curves[i] for i in range(len(scheds))]
    total = int(sum(x.size for x in lrs))
    meta = {"model": cfg.to_dict(), "n_parameters": n_params, "batch_size": batch_size, "eval_every": eval_every,
            "n_eval": n_eval, "n_train": n_train, "data_seed": data_seed, "seed": seed, "weight_decay": weight_decay,
            "grad_clip": grad_clip, "corpus": "stdlib", "steps_trained": trained, "steps_without_branching": total,
            "time_s": time.perf_counter() - t0}
    say(f"collect: trained {trained} steps instead of {total} ({meta['time_s']:.1f}s)")
    if out is not None:
        save_curves(out, out_curves, meta)
    return out_curves


def _run(lrs: np.ndarray, state: dict[str, Any] | None, snap_at: set[int], cfg: GPTConfig, train: torch.Tensor,
         held_out: torch.Tensor, batch_size: int, eval_every: int, seed: int, weight_decay: float,
         grad_clip: float | None, snaps: dict[tuple[int, int], dict[str, Any]], run_id: int) -> list[tuple[int, float]]:
    """Train from scratch (``state`` None) or from a snapshot to the end of ``lrs``; snapshots
    are stored in ``snaps[(run_id, step)]`` for every step in ``snap_at``. Returns [(step, held-out loss)]."""
    model = TinyGPT(cfg, seed=seed)
    opt = _make_optimizer(model, float(lrs[0]), weight_decay=weight_decay)
    stream = _BatchStream(train.shape[0], batch_size, torch.Generator().manual_seed(seed))
    evals: list[tuple[int, float]] = []
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(copy.deepcopy(state["optim"]))
        stream.gen.set_state(state["gen"])
        stream.buf = state["buf"].clone()
        evals = list(state["evals"])
        start = state["step"]
    params = list(model.parameters())
    model.train()
    for t in range(start, lrs.size):
        train_step(model, opt, train[stream.next()], float(lrs[t]), params, grad_clip)
        step = t + 1
        if step % eval_every == 0 or step == lrs.size:
            evals.append((step, evaluate_loss(model, held_out)))
            model.train()
        if step in snap_at:
            snaps[(run_id, step)] = {"model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                                     "optim": copy.deepcopy(opt.state_dict()), "gen": stream.gen.get_state(),
                                     "buf": stream.buf.clone(), "evals": list(evals), "step": step}
    return evals
