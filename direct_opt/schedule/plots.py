"""Figures for loss laws (matplotlib, no pyplot): observed vs predicted curves, and the
predicted final loss against the annealing ratio per decay shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..plotting import _COLORS, _finish
from .curves import Curve
from .laws import LossLaw
from .optimize import ScheduleOptimum


def plot_fit(law: LossLaw, curves: Sequence[Curve], *, fitted: Sequence[str] = (), path: str | Path | None = None,
             title: str | None = None) -> Figure:
    """Observed losses (dots) and the law's predicted curves (lines; dashed for curves not in
    ``fitted``) with the learning rate of every run below."""
    fig = Figure(figsize=(8.0, 6.0), layout="constrained")
    ax, ax_lr = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    for i, c in enumerate(curves):
        col = _COLORS[i % len(_COLORS)]
        n = c.model_size if law.uses_model_size else None
        pred = law.predict(c.lrs, model_size=n)
        first = int(c.steps[0])
        ax.plot(c.steps, c.losses, "o", ms=2.5, color=col, alpha=0.7)
        ax.plot(np.arange(first, c.total_steps + 1), pred[first - 1:], "-" if c.name in fitted else "--", color=col,
                lw=1.2, label=c.name + (" (fit)" if c.name in fitted else ""))
        ax_lr.plot(np.arange(1, c.total_steps + 1), c.lrs, color=col, lw=1)
    lo = min(float(c.losses.min()) for c in curves)
    hi = float(np.median([np.quantile(c.losses, 0.7) for c in curves]))
    ax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi)
    ax.set_ylabel("loss")
    ax.set_title(title or f"{law.name}: observed (dots) vs predicted (solid: fitted, dashed: held out)")
    ax.legend(fontsize=6, ncol=2)
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("LR")
    return _finish(fig, path)


def plot_optimum(opt: ScheduleOptimum, *, measured: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
                 path: str | Path | None = None, title: str | None = None) -> Figure:
    """Predicted final loss vs decay ratio, one line per shape (at the best peak LR), the
    free-form optimum as a horizontal line, and ``measured`` {shape: (ratios, losses)} as crosses."""
    fig = Figure(figsize=(6.8, 4.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    p = opt.peak_lrs.index(opt.best_grid.peak_lr)
    for i, s in enumerate(opt.shapes):
        col = _COLORS[i % len(_COLORS)]
        ax.plot(opt.ratios, opt.grid[p, i], "-", color=col, label=f"{s} (predicted)")
        if measured and s in measured:
            r, v = measured[s]
            ax.plot(r, v, "x", color=col, ms=7, label=f"{s} (measured)")
    if opt.free_form_loss is not None:
        ax.axhline(opt.free_form_loss, color="k", ls=":", label="free-form (predicted)")
    ax.set_xlabel("annealing (decay) ratio")
    ax.set_ylabel("final loss")
    ax.set_title(title or f"{opt.law}: final loss vs annealing ratio, T={opt.total_steps}")
    ax.legend(fontsize=7)
    return _finish(fig, path)


def plot_predictions(law: LossLaw, schedules: Mapping[str, Any], *, model_size: float | None = None,
                     path: str | Path | None = None) -> Figure:
    """The law's predicted loss curve of each named schedule (first 5 % of steps left out) above its LR."""
    from .schedules import as_lrs

    fig = Figure(figsize=(7.0, 5.0), layout="constrained")
    ax, ax_lr = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    for i, (name, s) in enumerate(schedules.items()):
        lr = as_lrs(s)
        pred = law.predict(lr, model_size=model_size)
        x = np.arange(1, lr.size + 1)
        w = max(1, lr.size // 20)
        ax.plot(x[w:], pred[w:], color=_COLORS[i % len(_COLORS)], label=name)
        ax_lr.plot(x, lr, color=_COLORS[i % len(_COLORS)])
    ax.set_ylabel("predicted loss")
    ax.legend(fontsize=7)
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("LR")
    return _finish(fig, path)


def plot_curves(curves: Sequence[Curve], *, path: str | Path | None = None) -> Figure:
    """Observed loss against step, one line per curve (y range from the best loss to the
    worst loss a fifth of the way in, so the annealing differences are visible)."""
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for i, c in enumerate(curves):
        ax.plot(c.steps, c.losses, lw=1, color=_COLORS[i % len(_COLORS)], label=c.name)
    lo = min(float(c.losses.min()) for c in curves)
    hi = max(float(c.losses[len(c.losses) // 5]) for c in curves)
    ax.set_ylim(lo - 0.02, max(hi, lo + 0.05))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=6, ncol=2)
    return _finish(fig, path)


def plot_schedules(schedules: Mapping[str, Any], *, path: str | Path | None = None) -> Figure:
    """LR against step for named schedules (objects or per-step arrays)."""
    from .schedules import as_lrs

    fig = Figure(figsize=(6.4, 3.2), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, s) in enumerate(schedules.items()):
        lr = as_lrs(s)
        ax.plot(np.arange(1, lr.size + 1), lr, color=_COLORS[i % len(_COLORS)], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("LR")
    ax.legend(fontsize=7)
    return _finish(fig, path)
