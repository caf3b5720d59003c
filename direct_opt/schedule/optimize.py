"""The best annealing schedule for a step budget, according to a fitted loss law.

    opt = optimize(law, total_steps=10_000, warmup_steps=200)
    opt.best_grid              # WSD with the best (shape, decay ratio) of the grid
    opt.free_form              # a monotone per-step schedule optimised against the law
    opt.best, opt.best_loss    # whichever of the two has the lower predicted final loss

The grid is every WSD shape × decay ratio at the given peak LR; the free-form schedule keeps
the warmup and the peak and optimises a non-increasing LR curve through ``knots`` points
(linear between them, each knot a fraction s_j ∈ [0, 1] of the previous one) by L-BFGS-B on
the law's predicted final loss, starting from the best grid schedule (as the multi-power-law
paper does with its law). ``best`` is never worse than any grid point by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import minimize

from ..errors import InvalidParameterError
from .laws import LAWS, LossLaw
from .schedules import DECAY_SHAPES, WSD, PerStep

DEFAULT_RATIOS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))


@dataclass
class ScheduleOptimum:
    """Result of :func:`optimize`.

    Attributes:
        law: law name. total_steps, warmup_steps, final_lr: the budget and fixed settings.
        peak_lrs: peak LRs searched (one unless the law supports peak-LR search).
        shapes, ratios: the WSD grid axes.
        grid: (n_peaks, n_shapes, n_ratios) predicted final loss of every grid schedule
            (NaN where a ratio leaves too few steps after the warmup).
        best_grid, best_grid_loss: the best grid schedule and its predicted final loss.
        free_form, free_form_loss: the optimised monotone schedule (None if not asked for).
        best, best_loss: the better of the two.
    """

    law: str
    total_steps: int
    warmup_steps: int
    final_lr: float
    peak_lrs: list[float]
    shapes: list[str]
    ratios: list[float]
    grid: np.ndarray
    best_grid: WSD
    best_grid_loss: float
    free_form: PerStep | None = None
    free_form_loss: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> WSD | PerStep:
        return self.free_form if self._free_wins else self.best_grid

    @property
    def best_loss(self) -> float:
        return float(self.free_form_loss) if self._free_wins else self.best_grid_loss

    @property
    def _free_wins(self) -> bool:
        return self.free_form_loss is not None and self.free_form_loss < self.best_grid_loss

    def best_ratio(self, shape: str, peak_lr: float | None = None) -> tuple[float, float]:
        """(decay ratio, predicted final loss) of the best grid point of one shape."""
        p = 0 if peak_lr is None else self.peak_lrs.index(peak_lr)
        row = self.grid[p, self.shapes.index(shape)]
        j = int(np.nanargmin(row))
        return self.ratios[j], float(row[j])

    def summary(self) -> str:
        lines = [f"{self.law}: best WSD {self.best_grid.shape} decay ratio {self.best_grid.decay_ratio:g} "
                 f"(peak {self.best_grid.peak_lr:g}) -> predicted final loss {self.best_grid_loss:.4f}"]
        for s in self.shapes:
            r, v = self.best_ratio(s, self.best_grid.peak_lr)
            lines.append(f"  {s:12s} best ratio {r:<5g} predicted {v:.4f}")
        if self.free_form_loss is not None:
            lines.append(f"  free-form monotone schedule: predicted {self.free_form_loss:.4f} "
                         f"({self.free_form_loss - self.best_grid_loss:+.4f} vs the best grid point)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"format": "direct_opt.schedule_optimum", "version": 1, "law": self.law,
                "total_steps": self.total_steps, "warmup_steps": self.warmup_steps, "final_lr": self.final_lr,
                "peak_lrs": self.peak_lrs, "shapes": self.shapes, "ratios": self.ratios,
                "grid": [[[None if math.isnan(v) else float(v) for v in row] for row in g] for g in self.grid],
                "best_grid": self.best_grid.to_dict(), "best_grid_loss": self.best_grid_loss,
                "free_form": None if self.free_form is None else self.free_form.to_dict(),
                "free_form_loss": self.free_form_loss, "best": self.best.to_dict(), "best_loss": self.best_loss,
                "info": self.info}


def optimize(law: LossLaw, total_steps: int, *, peak_lr: float | Sequence[float] | None = None,
             warmup_steps: int = 0, final_lr: float = 0.0, shapes: Sequence[str] = DECAY_SHAPES,
             ratios: Sequence[float] = DEFAULT_RATIOS, model_size: float | None = None, free_form: bool = True,
             knots: int = 64, maxiter: int = 200) -> ScheduleOptimum:
    """Best WSD (shape, decay ratio[, peak LR]) and a free-form monotone schedule for ``total_steps``.

    Args:
        law: a fitted :class:`LossLaw`.
        total_steps: the step budget T (warmup included).
        peak_lr: the peak LR (default: the largest LR the law was fitted on). Several values
            only for laws registered with the ``peak_lr`` capability: none of the built-in laws
            has an interior optimum in the peak LR (more LR area always lowers their forward
            term), so searching it would just return the largest value.
        warmup_steps, final_lr: fixed parts of every schedule.
        shapes, ratios: the WSD grid (ratios are fractions of all steps, in (0, 1]).
        model_size: N for laws that use it.
        free_form: also optimise a free-form monotone schedule.
        knots: free-form resolution (LR knots after the warmup, linear in between).
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 2:
        raise InvalidParameterError(f"total_steps={total_steps!r} must be an integer >= 2.")
    peaks = [law.lr_scale] if peak_lr is None else (
        [float(peak_lr)] if np.isscalar(peak_lr) else [float(p) for p in peak_lr])
    if not peaks or any(not (math.isfinite(p) and p > 0) for p in peaks):
        raise InvalidParameterError(f"peak_lr={peak_lr!r} must be one or more positive LRs.")
    if len(peaks) > 1 and not LAWS.entry(law.name).capabilities.get("peak_lr", False):
        raise InvalidParameterError(
            f"the {law.name!r} law cannot choose a peak LR (its predicted loss keeps falling as the LR grows); "
            "pass a single peak_lr, or fit a law with the peak_lr capability.")
    shapes = list(shapes)
    bad = [s for s in shapes if s not in DECAY_SHAPES]
    if not shapes or bad:
        raise InvalidParameterError(f"shapes {bad or shapes} not understood; known: {list(DECAY_SHAPES)}.")
    ratios = [float(r) for r in ratios]
    if not ratios or any(not (0 < r <= 1) for r in ratios):
        raise InvalidParameterError(f"ratios={ratios} must be fractions of the steps in (0, 1].")
    if not isinstance(knots, int) or knots < 2:
        raise InvalidParameterError(f"knots={knots!r} must be an integer >= 2.")
    grid = np.full((len(peaks), len(shapes), len(ratios)), np.nan)
    scheds: dict[tuple[int, int, int], WSD] = {}
    for a, pk in enumerate(peaks):
        for b, s in enumerate(shapes):
            for c, r in enumerate(ratios):
                if round(r * total_steps) > total_steps - warmup_steps:
                    continue
                w = WSD(int(total_steps), pk, r, s, int(warmup_steps), float(final_lr))
                scheds[(a, b, c)] = w
                grid[a, b, c] = law.final_loss(w, model_size=model_size)
    if not scheds:
        raise InvalidParameterError(f"no ratio in {ratios} fits after warmup_steps={warmup_steps} of {total_steps}.")
    best_key = min(scheds, key=lambda k: grid[k])
    best_grid = scheds[best_key]
    res = ScheduleOptimum(law.name, int(total_steps), int(warmup_steps), float(final_lr), peaks, shapes, ratios,
                          grid, best_grid, float(grid[best_key]))
    if free_form:
        ff, loss, info = _free_form(law, best_grid, knots, maxiter, model_size)
        res.free_form, res.free_form_loss, res.info = ff, loss, info
    return res


def _free_form(law: LossLaw, start: WSD, knots: int, maxiter: int,
               model_size: float | None) -> tuple[PerStep, float, dict[str, Any]]:
    """Monotone per-step schedule minimising the predicted final loss, started at ``start``."""
    base = start.lrs()
    w, T, peak = start.warmup_steps, start.total_steps, start.peak_lr
    d0 = T - start.decay_steps  # first decay step (0-based)
    pos = np.unique(np.concatenate([np.linspace(w, T - 1, min(knots, T - w)).round().astype(int),
                                    [w, max(w, d0 - 1), T - 1]]))
    steps = np.arange(w, T)
    v0 = base[pos].copy()
    v0[0] = peak
    s0 = np.ones(pos.size - 1)
    for j in range(1, pos.size):
        s0[j - 1] = v0[j] / v0[j - 1] if v0[j - 1] > 0 else 0.0
    s0 = np.clip(s0, 0.0, 1.0)
    n = law._n(model_size)
    theta = law.theta
    last = np.array([T - 1])

    def lrs_of(s: np.ndarray) -> np.ndarray:
        v = peak * np.concatenate([[1.0], np.cumprod(s)])
        return np.concatenate([base[:w], np.interp(steps, pos, v)])

    def objective(s: np.ndarray) -> float:
        eta = lrs_of(s) / law.lr_scale
        if not np.any(eta > 0):
            return 1e30
        with np.errstate(all="ignore"):
            val = float(law.curve(theta, eta, last, n)[0])
        return val if math.isfinite(val) else 1e30

    f0 = objective(s0)
    r = minimize(objective, s0, method="L-BFGS-B", bounds=[(0.0, 1.0)] * s0.size, options={"maxiter": maxiter})
    s = r.x if r.fun <= f0 else s0
    lrs = lrs_of(s)
    ff = PerStep(lrs, name=f"free-form ({law.name})")
    return ff, law.final_loss(ff, model_size=model_size), {
        "knots": int(pos.size), "start": start.to_dict(), "start_loss_on_knots": f0, "iterations": int(r.nit),
        "message": str(r.message)}

