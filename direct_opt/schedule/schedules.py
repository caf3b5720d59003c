"""Learning-rate schedules as small immutable objects: ``lrs()`` gives the LR of every step.

    Constant(total_steps=1000, peak_lr=3e-3, warmup_steps=50)
    Cosine(total_steps=1000, peak_lr=3e-3, warmup_steps=50, final_lr=0.0)
    WSD(total_steps=1000, peak_lr=3e-3, decay_ratio=0.2, shape="1-sqrt", warmup_steps=50)
    PerStep([3e-3, 3e-3, 2e-3, 1e-3])          # any per-step array (e.g. a free-form optimum)

Conventions (shared by every loss law): ``lrs()[t-1]`` is the LR used by optimizer step
``t`` (1-based, t = 1..T). Warmup is linear, ``peak · i / W`` for i = 1..W. A WSD decay of
D = round(decay_ratio · T) steps (the *annealing ratio* is a fraction of all T steps) uses
``final + (peak - final) · f(j / D)`` at its j-th step, j = 1..D, so the last step is at the
end of the decay; ``f`` is one of :data:`DECAY_SHAPES` (see :func:`decay_factor`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence, Union

import numpy as np

from ..errors import InvalidInputError, InvalidParameterError, NonFiniteError, UnknownNameError

#: decay shapes f(p), p in [0, 1] the position in the decay; f(0) = 1
DECAY_SHAPES: tuple[str, ...] = ("linear", "cosine", "1-sqrt", "exponential", "step")
#: ``exponential`` ends at this fraction of the peak (an exponential never reaches 0)
EXP_FLOOR = 0.01
#: ``step`` decays in this many equal stages, each x0.1**(1/STEP_STAGES), ending at 0.1 · peak
STEP_STAGES = 3


def decay_factor(p: float | np.ndarray, shape: str) -> np.ndarray:
    """f(p) for a decay position p in [0, 1] (clipped): 1 at p = 0, non-increasing.

    ``linear`` 1 - p; ``cosine`` (1 + cos πp) / 2; ``1-sqrt`` 1 - √p (these three reach 0);
    ``exponential`` 0.01^p (ends at 1 % of the peak); ``step`` 0.1^(⌈3p⌉ / 3), three equal
    stages ending at 10 % of the peak.
    """
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    if shape == "linear":
        return 1.0 - p
    if shape == "cosine":
        return 0.5 * (1.0 + np.cos(np.pi * p))
    if shape == "1-sqrt":
        return 1.0 - np.sqrt(p)
    if shape == "exponential":
        return EXP_FLOOR ** p
    if shape == "step":
        return 0.1 ** (np.ceil(p * STEP_STAGES - 1e-12) / STEP_STAGES)
    raise UnknownNameError(f"unknown decay shape {shape!r}; known: {list(DECAY_SHAPES)}.")


def _int(name: str, v: Any, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) and not (isinstance(v, float) and v.is_integer()):
        raise InvalidParameterError(f"{name}={v!r} must be an integer >= {minimum}.")
    if int(v) < minimum:
        raise InvalidParameterError(f"{name}={v!r} must be an integer >= {minimum}.")
    return int(v)


def _lr(name: str, v: Any, positive: bool = True) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name}={v!r} must be a number.") from None
    if not math.isfinite(x):
        raise NonFiniteError(f"{name}={v!r} must be finite.")
    if x < 0 or (positive and x == 0):
        raise InvalidParameterError(f"{name}={v!r} must be {'> 0' if positive else '>= 0'} (a learning rate).")
    return x


class _Base:
    """Shared behaviour: length, dict round trip, label."""

    kind: str = ""

    def lrs(self) -> np.ndarray:  # pragma: no cover - every schedule overrides
        raise NotImplementedError

    def __len__(self) -> int:
        return int(self.total_steps)  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}  # type: ignore[call-overload]

    def _warm(self, peak: float) -> np.ndarray:
        w = self.warmup_steps  # type: ignore[attr-defined]
        return peak * np.arange(1, w + 1, dtype=np.float64) / max(w, 1)

    def _check_common(self, peak: float) -> None:
        _int("total_steps", self.total_steps, 1)  # type: ignore[attr-defined]
        _int("warmup_steps", self.warmup_steps, 0)  # type: ignore[attr-defined]
        if self.warmup_steps >= self.total_steps:  # type: ignore[attr-defined]
            raise InvalidParameterError(
                f"warmup_steps={self.warmup_steps} must be < total_steps={self.total_steps}.")  # type: ignore[attr-defined]
        _lr("peak_lr", peak)


@dataclass(frozen=True)
class Constant(_Base):
    """Warmup, then ``peak_lr`` until the end (the stable phase alone)."""

    total_steps: int
    peak_lr: float
    warmup_steps: int = 0
    kind = "constant"

    def __post_init__(self) -> None:
        self._check_common(self.peak_lr)

    def lrs(self) -> np.ndarray:
        """(T,) LR of every step."""
        return np.concatenate([self._warm(self.peak_lr), np.full(self.total_steps - self.warmup_steps, self.peak_lr)])

    @property
    def label(self) -> str:
        return "constant"


@dataclass(frozen=True)
class Cosine(_Base):
    """Warmup, then a cosine decay from ``peak_lr`` to ``final_lr`` over the remaining steps."""

    total_steps: int
    peak_lr: float
    warmup_steps: int = 0
    final_lr: float = 0.0
    kind = "cosine"

    def __post_init__(self) -> None:
        self._check_common(self.peak_lr)
        if _lr("final_lr", self.final_lr, positive=False) > self.peak_lr:
            raise InvalidParameterError(f"final_lr={self.final_lr} must be <= peak_lr={self.peak_lr}.")

    def lrs(self) -> np.ndarray:
        """(T,) LR of every step."""
        d = self.total_steps - self.warmup_steps
        f = decay_factor(np.arange(1, d + 1) / d, "cosine")
        return np.concatenate([self._warm(self.peak_lr), self.final_lr + (self.peak_lr - self.final_lr) * f])

    @property
    def label(self) -> str:
        return "cosine"


@dataclass(frozen=True)
class WSD(_Base):
    """Warmup-Stable-Decay: warmup, ``peak_lr`` plateau, then a decay of round(decay_ratio · T) steps."""

    total_steps: int
    peak_lr: float
    decay_ratio: float = 0.2
    shape: str = "linear"
    warmup_steps: int = 0
    final_lr: float = 0.0
    kind = "wsd"

    def __post_init__(self) -> None:
        self._check_common(self.peak_lr)
        if self.shape not in DECAY_SHAPES:
            raise UnknownNameError(f"unknown decay shape {self.shape!r}; known: {list(DECAY_SHAPES)}.")
        r = float(self.decay_ratio)
        if not (math.isfinite(r) and 0.0 <= r <= 1.0):
            raise InvalidParameterError(f"decay_ratio={self.decay_ratio!r} must lie in [0, 1] (a fraction of all steps).")
        if self.decay_steps > self.total_steps - self.warmup_steps:
            raise InvalidParameterError(
                f"decay_ratio={r} gives {self.decay_steps} decay steps but only "
                f"{self.total_steps - self.warmup_steps} steps follow the warmup; lower decay_ratio or warmup_steps.")
        if _lr("final_lr", self.final_lr, positive=False) > self.peak_lr:
            raise InvalidParameterError(f"final_lr={self.final_lr} must be <= peak_lr={self.peak_lr}.")

    @property
    def decay_steps(self) -> int:
        """D = round(decay_ratio · total_steps)."""
        return int(round(float(self.decay_ratio) * self.total_steps))

    def lrs(self) -> np.ndarray:
        """(T,) LR of every step."""
        d = self.decay_steps
        stable = np.full(self.total_steps - self.warmup_steps - d, self.peak_lr)
        f = decay_factor(np.arange(1, d + 1) / max(d, 1), self.shape)
        return np.concatenate([self._warm(self.peak_lr), stable, self.final_lr + (self.peak_lr - self.final_lr) * f])

    @property
    def label(self) -> str:
        return f"wsd-{self.shape}-{self.decay_ratio:g}"


@dataclass(frozen=True)
class PerStep(_Base):
    """An arbitrary per-step schedule: ``lrs[t-1]`` is the LR of step t (finite, >= 0, not all 0)."""

    values: tuple[float, ...] = field(default_factory=tuple)
    name: str = "per-step"
    kind = "per-step"

    def __init__(self, values: Any, name: str = "per-step") -> None:
        arr = check_lrs(values)
        object.__setattr__(self, "values", tuple(float(v) for v in arr))
        object.__setattr__(self, "name", str(name))

    @property
    def total_steps(self) -> int:
        return len(self.values)

    def lrs(self) -> np.ndarray:
        """(T,) LR of every step."""
        return np.asarray(self.values, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "values": list(self.values), "name": self.name}

    @property
    def label(self) -> str:
        return self.name


Schedule = Union[Constant, Cosine, WSD, PerStep]
KINDS: dict[str, type] = {"constant": Constant, "cosine": Cosine, "wsd": WSD, "per-step": PerStep}


def check_lrs(values: Any, name: str = "lrs") -> np.ndarray:
    """``values`` as a validated (T,) float64 array: 1-D, non-empty, finite, >= 0, not all zero."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a 1-D array of learning rates, got {type(values).__name__}.") from None
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be 1-D (one LR per step), got shape {arr.shape}.")
    if arr.size == 0:
        raise InvalidInputError(f"{name} is empty; give the learning rate of every step 1..T.")
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"{name} has NaN/Inf at step(s) {(np.flatnonzero(~np.isfinite(arr)) + 1)[:5].tolist()}.")
    if np.any(arr < 0):
        i = int(np.flatnonzero(arr < 0)[0])
        raise InvalidInputError(f"{name} has a negative learning rate {arr[i]:g} at step {i + 1}; LRs must be >= 0.")
    if not np.any(arr > 0):
        raise InvalidInputError(f"{name} is zero at every step; nothing would be learned.")
    return arr


def as_lrs(schedule: Any) -> np.ndarray:
    """(T,) LR of every step of a schedule object, its dict, or an array-like."""
    if isinstance(schedule, Mapping):
        schedule = schedule_from_dict(schedule)
    if hasattr(schedule, "lrs") and callable(schedule.lrs):
        return check_lrs(schedule.lrs())
    return check_lrs(schedule)


def schedule_from_dict(d: Mapping[str, Any]) -> Schedule:
    """Rebuild a schedule from :meth:`to_dict` output (``kind`` picks the class)."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in KINDS:
        raise UnknownNameError(f"unknown schedule kind {kind!r}; known: {sorted(KINDS)}.")
    try:
        return KINDS[kind](**d)
    except TypeError as exc:
        raise InvalidParameterError(f"bad fields for a {kind!r} schedule: {exc}.") from None


def parse_schedule(spec: str, *, total_steps: int | None = None, peak_lr: float | None = None,
                   warmup_steps: int = 0) -> Schedule:
    """A schedule from a short text spec (the CLI's ``--schedule``).

    ``constant``, ``cosine``, ``wsd:ratio=0.2,shape=1-sqrt`` (``final_lr=`` too); ``total``,
    ``peak`` and ``warmup`` may be given in the spec or come from the keyword defaults.
    """
    kind, _, rest = str(spec).strip().partition(":")
    opts: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, val = part.partition("=")
        if not eq:
            raise InvalidParameterError(f"schedule option {part!r} in {spec!r} must look like key=value.")
        opts[key.strip()] = val.strip()
    alias = {"total": "total_steps", "peak": "peak_lr", "warmup": "warmup_steps", "ratio": "decay_ratio"}
    opts = {alias.get(k, k): v for k, v in opts.items()}
    kw: dict[str, Any] = {"total_steps": total_steps, "peak_lr": peak_lr, "warmup_steps": warmup_steps}
    known = {"constant": {"total_steps", "peak_lr", "warmup_steps"},
             "cosine": {"total_steps", "peak_lr", "warmup_steps", "final_lr"},
             "wsd": {"total_steps", "peak_lr", "warmup_steps", "final_lr", "decay_ratio", "shape"}}
    if kind not in known:
        raise UnknownNameError(f"unknown schedule {kind!r} in {spec!r}; known: {sorted(known)} "
                               "(or a file with one LR per step).")
    bad = sorted(set(opts) - known[kind])
    if bad:
        raise InvalidParameterError(f"unknown option(s) {bad} for schedule {kind!r}; known: {sorted(known[kind])}.")
    for k, v in opts.items():
        if k == "shape":
            kw[k] = v
        elif k in ("total_steps", "warmup_steps"):
            try:
                kw[k] = int(v)
            except ValueError:
                raise InvalidParameterError(f"{k}={v!r} in {spec!r} must be an integer.") from None
        else:
            try:
                kw[k] = float(v)
            except ValueError:
                raise InvalidParameterError(f"{k}={v!r} in {spec!r} must be a number.") from None
    if kw["total_steps"] is None or kw["peak_lr"] is None:
        raise InvalidParameterError(f"schedule {spec!r} needs total steps and a peak LR (total=..., peak=... "
                                    "or --total-steps / --peak-lr).")
    return KINDS[kind](**kw)


def wsd_grid(total_steps: int, peak_lr: float, ratios: Sequence[float], shapes: Sequence[str] = DECAY_SHAPES,
             warmup_steps: int = 0, final_lr: float = 0.0) -> list[WSD]:
    """Every WSD schedule of the grid ``shapes × ratios`` (shape-major)."""
    return [WSD(total_steps, peak_lr, float(r), s, warmup_steps, final_lr) for s in shapes for r in ratios]
