"""AnnealSchedule: the decay phase every selection is annealed with.

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
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from ..errors import InvalidParameterError, UnknownNameError
from ..lm.train import WSD_SHAPES, wsd_lr

DEFAULT_EPOCHS = 4.0


@dataclass(frozen=True)
class AnnealSchedule:
    """Warmup-Stable-Decay *decay phase* used for every annealing run.

    Attributes:
        shape: LR decay from ``peak_lr`` to 0: ``linear`` | ``cosine`` | ``1-sqrt``.
        steps: decay length in optimizer steps (exclusive with ``epochs``).
        epochs: decay length in passes over the K selected samples:
            ceil(epochs · K / batch_size) steps. Neither given → 4 epochs.
        peak_lr: LR at the start of the decay; None → the checkpoint's stable LR
            (``TrainState.lr``, else the optimizer state's LR, else 3e-3).
        batch_size: samples per step (drawn from the selection by a seeded permutation).
        optimizer_state: ``restore`` | ``reset`` (see the module docstring).
        eval_every: evaluate val/test loss every this many steps (and at step 0 and the end).
        grad_clip: global gradient-norm clip (None: off).
    """

    shape: str = "linear"
    steps: int | None = None
    epochs: float | None = None
    peak_lr: float | None = None
    batch_size: int = 32
    optimizer_state: str = "restore"
    eval_every: int = 10
    grad_clip: float | None = 1.0

    def __post_init__(self) -> None:
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
        """The LR of every update of the decay, ``[lr(0), ..., lr(n_steps(k) - 1)]``."""
        return [self.lr(t, k, peak_lr) for t in range(self.n_steps(k))]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "AnnealSchedule":
        """Build from a dict (unknown keys are an error that lists the known ones)."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise InvalidParameterError(f"unknown schedule key(s) {bad}; known: {sorted(known)}.")
        return cls(**d)
