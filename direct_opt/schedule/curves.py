"""Observed loss curves: where the loss was measured under which per-step LR schedule.

A :class:`Curve` holds ``lrs`` (T,) — the LR of every step 1..T — and the (usually
sparser) measurements ``steps`` (P,) / ``losses`` (P,). Curves come from arrays, from files
(:func:`load_curves`: CSV ``step,lr,loss``, JSON, JSON lines, or a curve set written by
:func:`save_curves` / ``direct-opt schedule collect``), or from :func:`direct_opt.schedule.collect`.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InvalidInputError, NonFiniteError
from ..stats import write_text_atomic
from .schedules import as_lrs, check_lrs

CURVES_FORMAT = "direct_opt.schedule_curves"
CURVES_VERSION = 1


@dataclass(frozen=True, eq=False)
class Curve:
    """One training run: the schedule it used and the losses measured along it.

    Attributes:
        lrs: (T,) LR of every step 1..T.
        steps: (P,) strictly increasing 1-based steps where the loss was measured, each <= T.
        losses: (P,) finite losses at those steps.
        name: label (e.g. ``wsd-linear-0.2``).
        model_size: parameter count N of the model (the forward-momentum law uses it).
        schedule: the schedule's ``to_dict()`` when known (provenance only).
    """

    lrs: np.ndarray
    steps: np.ndarray
    losses: np.ndarray
    name: str = "curve"
    model_size: float | None = None
    schedule: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        lrs = check_lrs(self.lrs, f"curve {self.name!r}: lrs")
        steps = np.asarray(self.steps)
        losses = np.asarray(self.losses, dtype=np.float64)
        if steps.ndim != 1 or losses.ndim != 1 or steps.shape != losses.shape:
            raise InvalidInputError(f"curve {self.name!r}: steps {steps.shape} and losses {losses.shape} must be "
                                    "1-D arrays of equal length.")
        if steps.size == 0:
            raise InvalidInputError(f"curve {self.name!r} is empty; give at least one (step, loss) measurement.")
        if not np.all(np.isfinite(steps.astype(np.float64))) or np.any(steps != np.round(steps)):
            raise InvalidInputError(f"curve {self.name!r}: steps must be integers (1-based optimizer steps).")
        steps = steps.astype(np.int64)
        if np.any(np.diff(steps) <= 0):
            i = int(np.flatnonzero(np.diff(steps) <= 0)[0])
            raise InvalidInputError(f"curve {self.name!r}: steps must be strictly increasing; step {steps[i + 1]} "
                                    f"follows {steps[i]} (sort the log and drop duplicates).")
        if steps[0] < 1 or steps[-1] > lrs.size:
            raise InvalidInputError(f"curve {self.name!r}: steps must lie in 1..T={lrs.size} (the schedule length), "
                                    f"got {steps[0]}..{steps[-1]}; give the LR of every step up to the last one.")
        if not np.all(np.isfinite(losses)):
            bad = steps[~np.isfinite(losses)][:5].tolist()
            raise NonFiniteError(f"curve {self.name!r}: loss is NaN/Inf at step(s) {bad}; drop those rows "
                                 "(a diverged run cannot be fitted).")
        if self.model_size is not None and not (math.isfinite(float(self.model_size)) and float(self.model_size) > 0):
            raise InvalidInputError(f"curve {self.name!r}: model_size={self.model_size!r} must be a positive count.")
        object.__setattr__(self, "lrs", lrs)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "losses", losses)
        object.__setattr__(self, "model_size", None if self.model_size is None else float(self.model_size))

    @property
    def total_steps(self) -> int:
        return int(self.lrs.size)

    @property
    def final_loss(self) -> float:
        """The last measured loss."""
        return float(self.losses[-1])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model_size": self.model_size, "schedule": self.schedule,
                "lrs": self.lrs.tolist(), "steps": self.steps.tolist(), "losses": self.losses.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Curve":
        missing = [k for k in ("lrs", "steps", "losses") if k not in d]
        if missing:
            raise InvalidInputError(f"a curve needs keys lrs, steps, losses; missing {missing}.")
        return cls(lrs=d["lrs"], steps=d["steps"], losses=d["losses"], name=str(d.get("name", "curve")),
                   model_size=d.get("model_size"), schedule=d.get("schedule"))


def as_curve(x: Any, name: str | None = None, model_size: float | None = None) -> Curve:
    """A :class:`Curve` from a Curve, a dict (``lrs``, ``steps``, ``losses``, optional ``name``,
    ``model_size``) or a file path (see :func:`load_curves`; the file must hold one curve)."""
    if isinstance(x, Curve):
        c = x
    elif isinstance(x, Mapping):
        c = Curve.from_dict(x)
    elif isinstance(x, (str, Path)):
        cs = load_curves(x)
        if len(cs) != 1:
            raise InvalidInputError(f"{x} holds {len(cs)} curves; load them with load_curves().")
        c = cs[0]
    else:
        raise InvalidInputError(f"expected a Curve, a dict with lrs/steps/losses or a file path, got {type(x).__name__}.")
    if name is not None or model_size is not None:
        c = Curve(c.lrs, c.steps, c.losses, name if name is not None else c.name,
                  model_size if model_size is not None else c.model_size, c.schedule)
    return c


def _num(v: Any) -> float | None:
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    return float(v)


def _from_records(records: Sequence[Mapping[str, Any]], where: str, schedule: Any, name: str,
                  model_size: float | None) -> Curve:
    """Rows with ``step``, ``lr`` and/or ``loss`` (either may be blank on a row) -> Curve."""
    lr_at: dict[int, float] = {}
    loss_at: dict[int, float] = {}
    for i, r in enumerate(records):
        if "step" not in r:
            raise InvalidInputError(f"{where}: row {i + 1} has no 'step' (columns/keys must include step, lr, loss).")
        try:
            step = int(float(r["step"]))
            lr, loss = _num(r.get("lr")), _num(r.get("loss"))
        except (TypeError, ValueError):
            raise InvalidInputError(f"{where}: row {i + 1} has a non-numeric step/lr/loss: {dict(r)!r}.") from None
        if step in loss_at and loss is not None:
            raise InvalidInputError(f"{where}: step {step} is logged twice; keep one row per step.")
        if lr is not None:
            lr_at[step] = lr
        if loss is not None:
            loss_at[step] = loss
    if not loss_at:
        raise InvalidInputError(f"{where} has no loss values; nothing to fit.")
    steps = np.array(sorted(loss_at))
    losses = np.array([loss_at[s] for s in steps])
    if schedule is not None:
        lrs = as_lrs(schedule) if not isinstance(schedule, (str, Path)) else load_lrs(schedule)
    else:
        last = max(max(lr_at, default=0), int(steps[-1]))
        missing = [s for s in range(1, last + 1) if s not in lr_at]
        if missing:
            raise InvalidInputError(
                f"{where}: the LR is missing at {len(missing)} step(s) (first {missing[:3]}); the laws need the LR of "
                "every step: log lr on every step (loss may be blank on those rows) or pass the per-step schedule "
                "(schedule=array/file, --schedule-file).")
        lrs = np.array([lr_at[s] for s in range(1, last + 1)])
    return Curve(lrs, steps, losses, name=name, model_size=model_size)


def load_lrs(path: str | Path) -> np.ndarray:
    """A per-step LR array from ``.npy`` (no pickle), ``.json`` (a list) or text (one LR per line / CSV column ``lr``)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"schedule file {p} does not exist.")
    if p.suffix == ".npy":
        return check_lrs(np.load(p, allow_pickle=False), str(p))
    if p.suffix == ".json":
        d = json.loads(p.read_text())
        return check_lrs(d["lrs"] if isinstance(d, Mapping) and "lrs" in d else d, str(p))
    rows = [r for r in p.read_text().splitlines() if r.strip()]
    if rows and "lr" in [c.strip() for c in rows[0].split(",")]:
        col = [c.strip() for c in rows[0].split(",")].index("lr")
        rows = [r.split(",")[col] for r in rows[1:]]
    try:
        return check_lrs([float(r) for r in rows], str(p))
    except ValueError:
        raise InvalidInputError(f"{p}: expected one learning rate per line (or a CSV with an 'lr' column).") from None


def load_curves(path: str | Path, *, schedule: Any = None, name: str | None = None,
                model_size: float | None = None) -> list[Curve]:
    """Curves from a file.

    * ``.csv`` with a header containing ``step``, ``lr``, ``loss`` (one run per file). Either the
      LR is on every step 1..T (rows of unlogged steps may leave ``loss`` blank), or pass the
      per-step ``schedule`` (array, schedule object or file).
    * ``.jsonl``: one JSON record per line with the same keys (other keys ignored).
    * ``.json``: a curve set written by :func:`save_curves`, one curve ``{"lrs", "steps",
      "losses"}``, or a list of ``{"step", "lr", "loss"}`` records.

    ``name`` defaults to the file stem; ``model_size`` sets N for single-run files.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"curve file {p} does not exist.")
    label = name or p.stem
    text = p.read_text()
    if p.suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        cols = [c.strip() for c in (reader.fieldnames or [])]
        if "step" not in cols or "loss" not in cols or ("lr" not in cols and schedule is None):
            raise InvalidInputError(f"{p}: the CSV header must name columns step, lr, loss (got {cols}).")
        rows = [{k.strip(): v for k, v in r.items() if k is not None} for r in reader]
        return [_from_records(rows, str(p), schedule, label, model_size)]
    if p.suffix == ".jsonl":
        try:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{p}: not JSON lines ({exc}).") from None
        return [_from_records(rows, str(p), schedule, label, model_size)]
    if p.suffix == ".json":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{p}: not JSON ({exc}).") from None
        if isinstance(d, Mapping) and d.get("format") == CURVES_FORMAT:
            if int(d.get("version", 0)) > CURVES_VERSION:
                raise InvalidInputError(f"{p} has curve-set version {d.get('version')}; this direct_opt reads "
                                        f"<= {CURVES_VERSION}. Upgrade direct_opt.")
            return [Curve.from_dict(c) for c in d["curves"]]
        if isinstance(d, Mapping):
            return [as_curve({**d, "name": d.get("name", label),
                              "model_size": model_size if model_size is not None else d.get("model_size")})]
        if isinstance(d, list):
            return [_from_records(d, str(p), schedule, label, model_size)]
    raise InvalidInputError(f"{p}: unknown curve file type {p.suffix!r}; use .csv, .json or .jsonl.")


def save_curves(path: str | Path, curves: Sequence[Curve], meta: Mapping[str, Any] | None = None) -> Path:
    """Write a curve set (JSON, atomically); :func:`load_curves` reads it back."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": CURVES_FORMAT, "version": CURVES_VERSION, "meta": dict(meta or {}),
            "curves": [c.to_dict() for c in curves]}
    write_text_atomic(p, json.dumps(blob))
    return p
