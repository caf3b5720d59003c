"""The annealer protocol: how the harness anneals a checkpoint on a selection.

The harness (:func:`direct_opt.evaluate.evaluate`) never touches a model's training code;
it asks an :class:`Annealer` for

* ``check_data(data, what)`` — the pool / validation / test data in the annealer's form
  (checked: a clear error before any work);
* ``fingerprint()`` — what identifies the checkpoint and the annealer's settings (resume);
* ``model()`` — a fresh copy of the checkpoint model (selectors, gradient extraction);
* ``reference()`` — a reference model for ``excess-loss`` (None when there is none);
* ``default_lr()`` / ``has_optimizer_state()`` — the stable-phase LR and whether an
  optimiser state can be restored;
* ``anneal(data, schedule=, peak_lr=, seed=, eval_sets=, eval_batch_size=)`` — one run from
  the checkpoint (never from another run's weights or moments) on ``data`` with the WSD
  decay of ``schedule``; returns a :class:`~direct_opt.lm.train.AnnealResult` (curves of
  ``eval_sets`` at step 0, every ``schedule.eval_every`` steps and at the end).

Implementations: :class:`TinyGPTAnnealer` (the embedded TinyGPT; rows are (N, T+1) byte
tensors) and :class:`direct_opt.evaluate.hf_annealer.HFAnnealer` (any ``transformers``
causal LM, or a torch module whose ``forward(input_ids, attention_mask, labels)`` returns
``.loss``; samples are token dicts). :func:`as_annealer` picks one for a model object.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import InvalidInputError
from ..lm.model import GPTConfig, TinyGPT
from ..lm.train import AnnealResult, TrainState, anneal, load_model
from .samples import hash_obj, samples_of, short_hash  # noqa: F401 - used here and re-exported
from .schedule import AnnealSchedule


@runtime_checkable
class Annealer(Protocol):
    """What the evaluation harness needs from a model to anneal it (see the module docstring)."""

    def check_data(self, data: Any, what: str) -> Any: ...

    def fingerprint(self) -> dict[str, Any]: ...

    def model(self) -> torch.nn.Module: ...

    def reference(self) -> torch.nn.Module | None: ...

    def default_lr(self) -> float | None: ...

    def has_optimizer_state(self) -> bool: ...

    def anneal(self, data: Any, *, schedule: AnnealSchedule, peak_lr: float, seed: int,
               eval_sets: Mapping[str, Any], eval_batch_size: int) -> AnnealResult: ...


# ----------------------------------------------------------------------------- helpers
def subset(data: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of a tensor (N, ...) or items of a sequence of samples."""
    if isinstance(data, torch.Tensor):
        return data[torch.from_numpy(np.asarray(idx, dtype=np.int64))]
    return [data[int(i)] for i in idx]


def row_keys(data: Any) -> list[bytes]:
    """One bytes key per row / sample (its token ids; padding excluded) for overlap checks."""
    if isinstance(data, torch.Tensor):
        arr = np.ascontiguousarray(data.numpy().astype(np.int64))
        return [r.tobytes() for r in arr]
    out = []
    for s in data:
        ids = torch.as_tensor(s["input_ids"]).long()
        mask = s.get("attention_mask")
        if mask is not None:
            ids = ids[torch.as_tensor(mask).bool()]
        out.append(ids.numpy().tobytes())
    return out


def n_rows(data: Any) -> int:
    return int(data.shape[0]) if isinstance(data, torch.Tensor) else len(data)


# -------------------------------------------------------------------------- TinyGPT
def token_rows(x: Any, what: str) -> torch.Tensor:
    """``x`` as a non-empty int64 tensor (n, seq_len+1) of token/byte ids (TinyGPT rows); numpy accepted."""
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


@dataclass
class Checkpoint:
    """The annealing start point θ_s of a TinyGPT: weights, AdamW state, architecture, stable LR, EMA."""

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
            f"model must be a direct_opt.lm TrainState, a TinyGPT, an Annealer or a torch model with a "
            f"Hugging Face style forward; got {type(model).__name__}."
        )

    def model(self) -> TinyGPT:
        """A fresh TinyGPT (eval mode) holding the checkpoint weights."""
        return load_model(self.model_state, self.config)

    def fingerprint(self) -> str:
        return short_hash({"model": self.model_state, "optim": self.optim_state, "config": self.config.to_dict()})


class TinyGPTAnnealer:
    """:class:`Annealer` of the embedded TinyGPT (:func:`direct_opt.lm.train.anneal`)."""

    def __init__(self, model: Any, optim_state: dict | None = None) -> None:
        self.ckpt = Checkpoint.from_any(model, optim_state)

    def check_data(self, data: Any, what: str) -> torch.Tensor:
        return token_rows(data, what)

    def fingerprint(self) -> dict[str, Any]:
        return {"checkpoint": self.ckpt.fingerprint(), "model_config": self.ckpt.config.to_dict()}

    def model(self) -> TinyGPT:
        return self.ckpt.model()

    def reference(self) -> TinyGPT | None:
        return load_model(self.ckpt.ema_state, self.ckpt.config) if self.ckpt.ema_state is not None else None

    def default_lr(self) -> float | None:
        return self.ckpt.lr

    def has_optimizer_state(self) -> bool:
        return self.ckpt.optim_state is not None

    def optimizer_state(self) -> dict | None:
        """The checkpoint's AdamW ``state_dict()`` (LESS's Adam features), or None."""
        return self.ckpt.optim_state

    def anneal(self, data: torch.Tensor, *, schedule: AnnealSchedule, peak_lr: float, seed: int,
               eval_sets: Mapping[str, torch.Tensor], eval_batch_size: int) -> AnnealResult:
        return anneal(self.ckpt.model_state, self.ckpt.optim_state, data, lrs=schedule.lrs(n_rows(data), peak_lr),
                      batch_size=schedule.batch_size, seed=seed,
                      eval_sets=dict(eval_sets), eval_every=schedule.eval_every, config=self.ckpt.config,
                      optimizer_state=schedule.optimizer_state, grad_clip=schedule.grad_clip,
                      eval_batch_size=eval_batch_size)


def as_annealer(model: Any, optim_state: dict | None = None) -> Annealer:
    """An :class:`Annealer` for ``model``: itself if it is one; TinyGPT / TrainState / Checkpoint →
    :class:`TinyGPTAnnealer`; any other ``torch.nn.Module`` → ``HFAnnealer`` (its own loss)."""
    if isinstance(model, Annealer) and not isinstance(model, torch.nn.Module):
        return model
    if isinstance(model, (TrainState, TinyGPT, Checkpoint)):
        return TinyGPTAnnealer(model, optim_state)
    if isinstance(model, torch.nn.Module):
        from .hf_annealer import HFAnnealer

        return HFAnnealer(model, optim_state=optim_state)
    raise InvalidInputError(
        f"model must be a TrainState / TinyGPT, a torch model (Hugging Face style), or an Annealer; got "
        f"{type(model).__name__}.")


def check_row_keys_disjoint(test: Any, other: Any, test_name: str, other_name: str) -> list[int]:
    """Indices of ``test`` rows equal to some row of ``other`` (token ids, padding excluded)."""
    if isinstance(test, torch.Tensor) and isinstance(other, torch.Tensor) and test.shape[1] != other.shape[1]:
        return []
    seen = set(row_keys(other))
    return [i for i, key in enumerate(row_keys(test)) if key in seen]
