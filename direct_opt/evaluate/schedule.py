"""AnnealSchedule: the decay phase every selection is annealed with, and how much a better
schedule would gain (:func:`schedule_gain`, :func:`decision_line`).

The decay is a WSD shape from the checkpoint's LR to 0 over ``steps``/``epochs``, or any
schedule object of :mod:`direct_opt.schedule` (``lr_schedule=``: WSD, cosine, constant or a
per-step array, e.g. the free-form optimum of a loss law), whose length is the number of
annealing steps.

Optimizer state across the stable → decay boundary (``optimizer_state``):

* ``"restore"`` (default): AdamW moments and step counters are restored exactly from the
  checkpoint for every run, as if the stable phase simply went on with a decaying LR;
* ``"reset"``: fresh AdamW moments (same betas / weight decay) for every run, as when
  annealing a released model whose optimizer state is unknown.

Either way every (selector, seed) run starts from the *same* checkpoint: weights and
optimizer state are deep-copied, never shared between runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping, Sequence

from ..errors import InvalidInputError, InvalidParameterError, UnknownNameError
from ..lm.train import WSD_SHAPES, wsd_lr

DEFAULT_EPOCHS = 4.0


@dataclass(frozen=True)
class AnnealSchedule:
    """Warmup-Stable-Decay *decay phase* used for every annealing run.

    Attributes:
        shape: LR decay from ``peak_lr``: ``linear`` | ``cosine`` | ``1-sqrt`` (to 0), ``exponential``
            (to 1 % of the peak) | ``step`` (three stages, to 10 %); see
            :func:`direct_opt.schedule.decay_factor`.
        steps: decay length in optimizer steps (exclusive with ``epochs``).
        epochs: decay length in passes over the K selected samples:
            ceil(epochs · K / batch_size) steps. Neither given → 4 epochs.
        peak_lr: LR at the start of the decay; None → the checkpoint's stable LR
            (``TrainState.lr``, else the optimizer state's LR, else 3e-3).
        batch_size: samples per step (drawn from the selection by a seeded permutation).
        optimizer_state: ``restore`` | ``reset`` (see the module docstring).
        eval_every: evaluate val/test loss every this many steps (and at step 0 and the end).
        grad_clip: global gradient-norm clip (None: off).
        lr_schedule: a :mod:`direct_opt.schedule` schedule object (or its dict) giving the LR of
            every annealing step; replaces ``shape``/``steps``/``epochs``/``peak_lr``.
    """

    shape: str = "linear"
    steps: int | None = None
    epochs: float | None = None
    peak_lr: float | None = None
    batch_size: int = 32
    optimizer_state: str = "restore"
    eval_every: int = 10
    grad_clip: float | None = 1.0
    lr_schedule: Any = None

    def __post_init__(self) -> None:
        if self.lr_schedule is not None:
            from ..schedule import as_lrs, schedule_from_dict

            sched = self.lr_schedule
            if isinstance(sched, Mapping):
                sched = schedule_from_dict(sched)
                object.__setattr__(self, "lr_schedule", sched)
            if not hasattr(sched, "lrs") or not hasattr(sched, "to_dict"):
                raise InvalidParameterError(f"lr_schedule must be a direct_opt.schedule schedule (WSD, Cosine, Constant, "
                                            f"PerStep) or its dict, got {type(sched).__name__}.")
            as_lrs(sched)
            if (self.steps, self.epochs, self.peak_lr, self.shape) != (None, None, None, "linear"):
                raise InvalidParameterError("lr_schedule gives every annealing step's LR; leave shape, steps, epochs "
                                            "and peak_lr at their defaults.")
        if self.shape not in WSD_SHAPES:
            raise UnknownNameError(f"unknown decay shape {self.shape!r}; known: {list(WSD_SHAPES)}.")
        if self.steps is not None and self.epochs is not None:
            raise InvalidParameterError("give the decay length as steps= or epochs=, not both.")
        if self.steps is not None and (isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps <= 0):
            raise InvalidParameterError(f"steps={self.steps!r} must be a positive integer.")
        if self.epochs is not None and not (math.isfinite(self.epochs) and self.epochs > 0):
            raise InvalidParameterError(f"epochs={self.epochs!r} must be > 0.")
        if self.peak_lr is not None and not (math.isfinite(self.peak_lr) and self.peak_lr > 0):
            raise InvalidParameterError(f"peak_lr={self.peak_lr!r} must be > 0.")
        if int(self.batch_size) <= 0 or int(self.eval_every) <= 0:
            raise InvalidParameterError("batch_size and eval_every must be positive integers.")
        if self.optimizer_state not in ("restore", "reset"):
            raise UnknownNameError(f"optimizer_state={self.optimizer_state!r}; known: 'restore', 'reset'.")

    def n_steps(self, k: int) -> int:
        """Number of decay steps when annealing on ``k`` samples."""
        if self.lr_schedule is not None:
            return len(self.lr_schedule.lrs())
        if self.steps is not None:
            return int(self.steps)
        ep = DEFAULT_EPOCHS if self.epochs is None else float(self.epochs)
        return max(1, int(math.ceil(ep * k / int(self.batch_size))))

    def lr(self, step: int, k: int, peak_lr: float) -> float:
        """LR of update ``step`` (0-based) when annealing on ``k`` samples from ``peak_lr``.

        Equals ``peak_lr`` at step 0 and 0 at step ``n_steps(k)``; non-increasing in between
        (``direct_opt.lm.train.wsd_lr``, the function the annealing runs use).
        """
        return wsd_lr(step, self.n_steps(k), peak_lr, self.shape)

    def lrs(self, k: int, peak_lr: float) -> list[float]:
        """The LR of every update of the decay, ``[lr(0), ..., lr(n_steps(k) - 1)]`` (``lr_schedule``'s
        own LRs when it is set; ``peak_lr`` is then ignored)."""
        if self.lr_schedule is not None:
            return [float(v) for v in self.lr_schedule.lrs()]
        return [self.lr(t, k, peak_lr) for t in range(self.n_steps(k))]

    def to_dict(self) -> dict[str, Any]:
        if self.lr_schedule is None:  # no key: records made before lr_schedule existed still resume
            return {k: v for k, v in asdict(self).items() if k != "lr_schedule"}
        return {**asdict(replace(self, lr_schedule=None)), "lr_schedule": self.lr_schedule.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "AnnealSchedule":
        """Build from a dict (unknown keys are an error that lists the known ones)."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise InvalidParameterError(f"unknown schedule key(s) {bad}; known: {sorted(known)}.")
        return cls(**d)


def schedule_gain(law: Any, run_lrs: Sequence[float], *, warmup_steps: int = 0, shapes: Sequence[str] | None = None,
                  ratios: Sequence[float] | None = None, model_size: float | None = None) -> dict[str, Any]:
    """How much the best WSD schedule of the same length and peak would lower the final loss of a
    run whose per-step LRs were ``run_lrs`` (e.g. the stable phase followed by the anneal), as
    predicted by a fitted loss law (:func:`direct_opt.schedule.fit`). Pass the result to
    ``evaluate(..., schedule_gain=...)`` to see it next to the gain of selection.

    Returns ``{"gain", "current", "best", "best_schedule", "law", "source"}`` (gain >= 0 in loss units).
    """
    from ..schedule import DECAY_SHAPES, DEFAULT_RATIOS, as_lrs, optimize

    lrs = as_lrs(run_lrs)
    current = law.final_loss(lrs, model_size=model_size)
    opt = optimize(law, int(lrs.size), peak_lr=float(lrs.max()), warmup_steps=warmup_steps,
                   shapes=shapes or DECAY_SHAPES, ratios=ratios or DEFAULT_RATIOS, model_size=model_size,
                   free_form=False)
    best = min(opt.best_grid_loss, current)
    return {"gain": current - best, "current": current, "best": best, "best_schedule": opt.best_grid.label,
            "law": law.name, "source": "predicted"}


def check_schedule_gain(gain: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Validate a schedule-gain record (from :func:`schedule_gain`, or measured: ``{"gain": g,
    "best_schedule": "...", "source": "measured"}``)."""
    if gain is None:
        return None
    if not isinstance(gain, Mapping) or "gain" not in gain:
        raise InvalidInputError("schedule_gain must be a dict with at least 'gain' (from "
                                "direct_opt.evaluate.schedule_gain or measured); got " + type(gain).__name__ + ".")
    g = float(gain["gain"])
    if not math.isfinite(g):
        raise InvalidInputError(f"schedule_gain['gain']={gain['gain']!r} must be finite.")
    return {**dict(gain), "gain": g}


def decision_line(summary: Mapping[str, Any], baseline: str | None, gain: Mapping[str, Any]) -> str:
    """One line: the best selection's paired gain over the baseline vs the best schedule's gain."""
    diffs = {lab: s.get("diff_test_vs_baseline") for lab, s in summary.items() if lab != baseline}
    diffs = {lab: d for lab, d in diffs.items() if d}
    how = f"{gain.get('source', 'given')}" + (f" by the {gain['law']} law" if gain.get("law") else "")
    sched = (f"the best schedule ({gain.get('best_schedule', '?')}, {how}) gains {gain['gain']:.4f} nats/byte over "
             "this anneal's schedule")
    if not diffs:
        return f"Selection vs schedule: {sched}; no selection was compared with a baseline."
    lab = min(diffs, key=lambda k: diffs[k]["mean"])
    sel = -float(diffs[lab]["mean"])
    more = "selection" if sel > gain["gain"] else "the schedule"
    return (f"Selection vs schedule: the best selection ({lab}) gains {sel:+.4f} nats/byte test loss over {baseline}; "
            f"{sched} -> on this model {more} matters more.")
