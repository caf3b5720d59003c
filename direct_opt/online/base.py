"""The online-selector interface, its registry and the shared plumbing.

An online selector sees, at every training step, a candidate super-batch of B samples and
returns the b to train on::

    sel = make_online_selector("blade", model=model, loss_fn=loss_fn, val=val, b=16, seed=0)
    chosen = sel.select(candidates, step)   # (b,) sorted distinct indices into the B candidates
    sel.diagnostics                         # what the last step did (JSON-safe)
    sel.update(model, step)                 # after the optimiser step (dynamic references move here)

``loss_fn(model, batch) -> (n,)`` returns one loss per sample. Candidates are a tensor (B, ...),
a dict of tensors with the sample dimension first (e.g. Hugging Face ``input_ids``/``labels``),
or a sequence of B samples (collated with ``collate_fn``, default
``torch.utils.data.default_collate``).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_map

from ..errors import InvalidInputError, InvalidParameterError, UnsupportedConstraintError
from ..registry import Registry
from ..stats import int_scalar, real_scalar
from .features import check_losses
from .frank_wolfe import StepPolytope, quota_rows

#: name -> OnlineSelector subclass
ONLINE: Registry[type["OnlineSelector"]] = Registry("online selector")
#: options every online selector accepts, with their defaults
COMMON_OPTIONS: dict[str, Any] = {"batch_size": None, "collate_fn": None, "min_fraction": None,
                                  "max_fraction": None, "eta": 3e-3, "val_batch": 32}


def take(batch: Any, idx: Any) -> Any:
    """Rows ``idx`` (indices or a slice) of a batch: a tensor, or a dict/tuple of tensors (sample dim first)."""
    if isinstance(idx, np.ndarray):
        idx = torch.from_numpy(idx.astype(np.int64))
    return tree_map(lambda t: t[idx] if isinstance(t, torch.Tensor) else t, batch)


def batch_len(candidates: Any) -> int:
    """Number of samples in a batch / sequence of samples."""
    if isinstance(candidates, torch.Tensor):
        return int(candidates.shape[0]) if candidates.dim() else 0
    if isinstance(candidates, Mapping):
        sizes = {int(v.shape[0]) for v in candidates.values() if isinstance(v, torch.Tensor) and v.dim()}
        if len(sizes) != 1:
            raise InvalidInputError(f"a dict batch needs tensors with one common first dimension; got sizes {sizes}.")
        return sizes.pop()
    try:
        return len(candidates)
    except TypeError:
        raise InvalidInputError(f"candidates must be a tensor (B, ...), a dict of tensors or a sequence of samples; "
                                f"got {type(candidates).__name__}.") from None


def check_model_option(name: str, m: Any) -> nn.Module | None:
    if m is not None and not isinstance(m, nn.Module):
        raise InvalidParameterError(f"{name} must be a torch.nn.Module, got {type(m).__name__}.")
    return m


class OnlineSelector:
    """Base class: subclasses set ``name``/``options`` and implement :meth:`scores` (or :meth:`choose`).

    Attributes:
        b: samples chosen per step.
        cost: cumulative ``{"forward": n, "backward": n}`` samples the selector pushed through
            forward / backward passes of a model (selection + reference upkeep), excluding the
            training step itself; ``setup_cost`` the same for one-off work (e.g. training a
            static reference).
        diagnostics: JSON-safe record of the last :meth:`select` call.
    """

    name = "online"
    #: own options with their defaults (merged with :data:`COMMON_OPTIONS`)
    options: dict[str, Any] = {}
    needs_val = False
    supports_quotas = True

    def __init__(self, *, model: nn.Module, loss_fn: Callable[..., torch.Tensor], b: int, val: Any = None,
                 seed: int = 0, **options: Any) -> None:
        if not isinstance(model, nn.Module):
            raise InvalidInputError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        if not callable(loss_fn):
            raise InvalidInputError("loss_fn must be callable: loss_fn(model, batch) -> (n,) per-sample losses.")
        self.b = int_scalar("b", b, minimum=1)
        self.seed = int_scalar("seed", seed)
        self.opts = type(self).validate_options(options)
        if self.needs_val and (val is None or batch_len(val) == 0):
            raise InvalidInputError(f"online selector {self.name!r} needs validation/target data: pass val=<rows>.")
        self.model, self.loss_fn, self.val = model, loss_fn, val
        self.cost = {"forward": 0, "backward": 0}
        self.setup_cost = {"forward": 0, "backward": 0}
        self.diagnostics: dict[str, Any] = {}
        self.last_batch: Any = None
        self.batch_size = self.opts["batch_size"]
        self.val_batch = self.opts["val_batch"]
        self.setup()

    # ------------------------------------------------------------------ to override
    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """All options with defaults filled in, checked without a model (names, types, ranges).

        Subclasses extend :meth:`check_own` for their own options. Raises InvalidParameterError.
        """
        check_options(cls.name, options, cls, validate_values=False)
        o = {**COMMON_OPTIONS, **cls.options, **options}
        if o["batch_size"] is not None:
            o["batch_size"] = int_scalar("batch_size", o["batch_size"], minimum=1)
        o["val_batch"] = int_scalar("val_batch", o["val_batch"], minimum=1)
        if not callable(o["eta"]) and real_scalar("eta", o["eta"]) <= 0:
            raise InvalidParameterError(f"eta={o['eta']} must be > 0 (the learning rate of the training step).")
        for key in ("min_fraction", "max_fraction"):
            q = o[key]
            if q is None:
                continue
            if not cls.supports_quotas:
                able = [n for n in ONLINE.names() if ONLINE.get(n).supports_quotas]
                raise UnsupportedConstraintError(f"online selector {cls.name!r} cannot honour quotas ({key}); "
                                                 f"selectors that can: {able}.")
            if not isinstance(q, Mapping) or any(not 0.0 <= real_scalar(f"{key}[{g!r}]", v) <= 1.0 for g, v in q.items()):
                raise InvalidParameterError(f"{key} must be a dict {{group: fraction in [0, 1]}}, got {q!r}.")
        cls.check_own(o)
        return o

    @classmethod
    def check_own(cls, o: dict[str, Any]) -> None:
        """Check (and normalise in place) the subclass's own options; no model available here."""

    def setup(self) -> None:
        """Build references / feature extractors (called once by __init__, after the option checks)."""

    def scores(self, batch: Any, n: int, step: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        """(n,) scores (higher = better) and diagnostics; the choice is the top-b (under quotas)."""
        raise NotImplementedError(f"{type(self).__name__} must implement scores() or choose().")

    def choose(self, batch: Any, n: int, step: int, poly: StepPolytope, rng: np.random.Generator
               ) -> tuple[np.ndarray, dict[str, Any]]:
        """(b,) indices and diagnostics; default: the oracle vertex of :meth:`scores`."""
        s, diag = self.scores(batch, n, step, rng)
        return poly.vertex(s), diag

    def update(self, model: nn.Module, step: int) -> None:
        """Call after the optimiser step of ``step``; keeps dynamic references in lockstep."""
        self.model = model

    # --------------------------------------------------------------------- helpers
    def eta_at(self, step: int) -> float:
        """The training learning rate at ``step`` (option ``eta``: a number or a callable step -> lr)."""
        eta = self.opts["eta"]
        return float(eta(step) if callable(eta) else eta)

    def collate(self, samples: Any) -> Any:
        """A batch from candidates given as a tensor / dict (unchanged) or a sequence of samples."""
        if isinstance(samples, (torch.Tensor, Mapping)):
            return samples
        from torch.utils.data import default_collate

        return (self.opts["collate_fn"] or default_collate)(list(samples))

    def chunks(self, n: int) -> list[slice]:
        bs = self.batch_size or n
        return [slice(s, min(n, s + bs)) for s in range(0, n, bs)]

    @torch.no_grad()
    def losses(self, model: nn.Module, batch: Any, n: int) -> np.ndarray:
        """(n,) float64 per-sample losses, forward passes batched (eval mode, no_grad)."""
        was = model.training
        model.eval()
        try:
            out = [check_losses(self.loss_fn(model, take(batch, sl)), sl.stop - sl.start).double().cpu()
                   for sl in self.chunks(n)]
        finally:
            model.train(was)
        self.cost["forward"] += n
        return torch.cat(out).numpy()

    def val_rows(self, step: int) -> Any:
        """A validation minibatch of ``val_batch`` rows for ``step`` (seeded; all rows when fewer)."""
        m = batch_len(self.val)
        if m <= self.val_batch:
            return self.collate(self.val)
        idx = np.sort(np.random.default_rng([self.seed, int(step), 7]).choice(m, self.val_batch, replace=False))
        if isinstance(self.val, (torch.Tensor, Mapping)):
            return take(self.val, idx)
        return self.collate([self.val[int(i)] for i in idx])

    def train_reference(self, ref: nn.Module, opt: torch.optim.Optimizer, batches: Sequence[tuple[Any, float]],
                        lr: float, cost: dict[str, int]) -> float:
        """One optimiser step of ``ref`` on Σ weight · mean loss over (batch, weight) pairs."""
        for g in opt.param_groups:
            g["lr"] = lr
        ref.train()
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for batch, weight in batches:
            n = batch_len(batch)
            loss = weight * check_losses(self.loss_fn(ref, batch), n).mean()
            loss.backward()
            total += float(loss.detach())
            cost["forward"] += n
            cost["backward"] += n
        opt.step()
        ref.eval()
        return total

    def copy_model(self, m: nn.Module | None = None) -> nn.Module:
        """A detached deep copy (eval mode) of ``m`` (default: the model)."""
        ref = copy.deepcopy(m if m is not None else self.model)
        ref.eval()
        return ref

    # ------------------------------------------------------------------------ API
    def select(self, candidates: Any, step: int, groups: Sequence[Any] | None = None) -> np.ndarray:
        """(b,) sorted distinct indices into ``candidates`` (B samples) to train on at ``step``.

        Args:
            candidates: tensor (B, ...), dict of tensors, or a sequence of B samples.
            step: the training step (0-based); randomness is seeded by (seed, step).
            groups: optional (B,) source label per candidate (needed for quotas; composition
                of the choice is reported in diagnostics).
        Raises:
            InvalidInputError (empty super-batch, b > B, bad loss shape), InvalidParameterError.
        """
        step = int_scalar("step", step, minimum=0)
        n = batch_len(candidates)
        if n == 0:
            raise InvalidInputError("the candidate super-batch is empty; pass B >= b candidates.")
        if self.b > n:
            raise InvalidInputError(f"b={self.b} exceeds the super-batch size B={n}; draw at least b candidates "
                                    "per step (or lower b).")
        if groups is not None and len(groups) != n:
            raise InvalidInputError(f"groups has {len(groups)} labels for {n} candidates.")
        batch = self.collate(candidates)
        poly = StepPolytope(n, self.b, quota_rows(groups, self.b, self.opts["min_fraction"], self.opts["max_fraction"]))
        rng = np.random.default_rng([self.seed, step])
        idx, diag = self.choose(batch, n, step, poly, rng)
        idx = np.sort(np.asarray(idx, dtype=np.int64))
        if idx.shape != (self.b,) or np.unique(idx).size != self.b or idx[0] < 0 or idx[-1] >= n:
            raise InvalidInputError(f"online selector {self.name!r} returned {idx.tolist()}; expected {self.b} "
                                    f"distinct indices in [0, {n}).")
        self.last_batch = take(batch, idx)
        diag = {"step": step, "B": n, "b": self.b, **diag}
        if groups is not None:
            labels, counts = np.unique(np.asarray([str(g) for g in groups])[idx], return_counts=True)
            diag["composition"] = {str(g): int(c) for g, c in zip(labels, counts)}
        self.diagnostics = diag
        return idx


def check_options(name: str, options: Mapping[str, Any], cls: type[OnlineSelector] | None = None,
                  validate_values: bool = True) -> None:
    """Raise InvalidParameterError for options online selector ``name`` does not take or values it
    rejects (UnknownNameError for a bad name) — without a model, before any work."""
    cls = cls or ONLINE.get(name)
    known = set(COMMON_OPTIONS) | set(cls.options)
    bad = sorted(set(options) - known)
    if bad:
        raise InvalidParameterError(f"online selector {name!r} has no option(s) {bad}; its options are {sorted(known)}.")
    if validate_values:
        cls.validate_options(options)


def register_online_selector(name: str, *, description: str = "", overwrite: bool = False):
    """Class decorator: register an :class:`OnlineSelector` subclass under ``name``."""

    def deco(cls: type[OnlineSelector]) -> type[OnlineSelector]:
        if not (isinstance(cls, type) and issubclass(cls, OnlineSelector)):
            raise InvalidParameterError(f"{cls!r} is not an OnlineSelector subclass.")
        cls.name = name
        return ONLINE.add(name, cls, description=description, overwrite=overwrite,
                          capabilities={"quotas": cls.supports_quotas, "needs_val": cls.needs_val})

    return deco


def available_online_selectors() -> list[str]:
    """Registered online-selector names, sorted."""
    return ONLINE.names()


def make_online_selector(name: str, *, model: nn.Module, loss_fn: Callable[..., torch.Tensor], b: int,
                         val: Any = None, seed: int = 0, **options: Any) -> OnlineSelector:
    """Build the online selector ``name`` (see :func:`available_online_selectors`) for a training loop.

    Args:
        model: the model being trained (the selector reads it; it never steps it).
        loss_fn: ``loss_fn(model, batch) -> (n,)`` per-sample losses.
        b: samples to train on per step.
        val: validation/target rows (tensor, dict of tensors or sequence) for selectors that use them.
        seed: seed of every random choice (with the step number).
        **options: the selector's options (unknown ones are an error listing the known ones).
    """
    cls = ONLINE.get(name)
    return cls(model=model, loss_fn=loss_fn, b=b, val=val, seed=seed, **options)

