"""Stable-phase pretraining, WSD learning-rate decay and annealing runs for TinyGPT.

Determinism: every run seeds a *forked* global RNG (``torch.random.fork_rng``, so the
caller's RNG state is left untouched) and shuffles with a private ``torch.Generator``;
the same inputs and seed give bit-identical curves on the same machine / thread count.

Optimizer state across the stable -> anneal boundary (``anneal(optimizer_state=...)``):

* ``"restore"`` (default) — AdamW moments and step counters are restored exactly from
  the checkpoint (a deep copy: the caller's state dict is never mutated), as if the
  stable run simply continued with a decaying learning rate;
* ``"reset"`` — fresh AdamW moments (same betas / weight decay as the checkpoint when
  it is given), as when annealing starts from a released model without its optimizer.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import InvalidParameterError, UnknownNameError
from ..schedule.schedules import DECAY_SHAPES, decay_factor
from ..threads import reproducible
from .loss import lm_loss
from .model import GPTConfig, TinyGPT

StateDict = dict[str, Tensor]
WSD_SHAPES: tuple[str, ...] = DECAY_SHAPES
DEFAULT_BETAS = (0.9, 0.95)
DEFAULT_WEIGHT_DECAY = 0.1


@dataclass
class TrainState:
    """Result of :func:`pretrain`: an exact, detached checkpoint of the stable phase.

    Attributes:
        model_state: trained weights (cloned tensors).
        optim_state: AdamW ``state_dict()`` (deep copy).
        ema_state: EMA of the weights (the dynamic reference for excess-loss scores).
        config: architecture, to rebuild models (:meth:`model`, :meth:`ema_model`).
        losses: training loss (batch mean, nats/byte) at every step.
        steps: number of optimizer steps taken.
        lr: the constant (stable) learning rate.
    """

    model_state: StateDict
    optim_state: dict
    ema_state: StateDict
    config: GPTConfig
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    lr: float = 0.0

    def model(self) -> TinyGPT:
        """A fresh TinyGPT (eval mode) holding the trained weights."""
        return load_model(self.model_state, self.config)

    def ema_model(self) -> TinyGPT:
        """A fresh TinyGPT (eval mode) holding the EMA weights."""
        return load_model(self.ema_state, self.config)


@dataclass
class AnnealResult:
    """Result of :func:`anneal`.

    Attributes:
        curves: eval-set name -> [(step, mean loss)], step 0 = the restored checkpoint.
        final: eval-set name -> mean loss after the last step.
        steps: number of optimizer steps taken.
        train_losses: batch-mean training loss at every step.
        lrs: learning rate used at every step.
        model_state: the annealed weights (cloned tensors).
    """

    curves: dict[str, list[tuple[int, float]]]
    final: dict[str, float]
    steps: int
    train_losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    model_state: StateDict = field(default_factory=dict)



def train_step(model: nn.Module, opt: torch.optim.Optimizer, batch: Any, lr: float,
               params: list[nn.Parameter], grad_clip: float | None,
               loss_of: Callable[[nn.Module, Any], Tensor] | None = None) -> torch.Tensor:
    """One optimiser step at learning rate ``lr`` on the scalar ``loss_of(model, batch)``
    (default: the mean LM loss of a (B, T+1) batch); returns that (detached-able) loss."""
    for g in opt.param_groups:
        g["lr"] = lr
    loss = lm_loss(model, batch).mean() if loss_of is None else loss_of(model, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
    return loss

def load_model(state: Mapping[str, Tensor], config: GPTConfig) -> TinyGPT:
    """Build a TinyGPT from ``config`` and load ``state`` exactly (copied, eval mode)."""
    model = TinyGPT(config)
    model.load_state_dict(state)
    return model.eval()


def _clone_state(module: nn.Module) -> StateDict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def wsd_lr(step: int, total: int, peak_lr: float, shape: str = "linear") -> float:
    """Learning rate of the decay phase of a Warmup-Stable-Decay schedule.

    ``step`` in [0, total]; returns ``peak_lr`` at step 0, non-increasing after. With
    p = step/total: ``linear``: peak (1 - p); ``cosine``: peak (1 + cos(pi p)) / 2; ``1-sqrt``:
    peak (1 - sqrt(p)) (these reach 0 at step ``total``); ``exponential`` and ``step`` end at 1 %
    and 10 % of the peak (:func:`direct_opt.schedule.decay_factor`, the one implementation of
    the shapes). Steps outside [0, total] are clamped.
    """
    if total <= 0:
        raise InvalidParameterError(f"total={total} must be a positive number of decay steps.")
    if shape not in WSD_SHAPES:
        raise UnknownNameError(f"unknown WSD decay shape {shape!r}; known: {list(WSD_SHAPES)}")
    return float(peak_lr) * max(float(decay_factor(step / total, shape)), 0.0)


class _BatchStream:
    """Endless fixed-size minibatches: concatenated seeded permutations of the rows."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator) -> None:
        if n <= 0:
            raise InvalidParameterError("training data is empty; pass at least one sample.")
        if batch_size <= 0:
            raise InvalidParameterError(f"batch_size={batch_size} must be positive.")
        self.n, self.bs, self.gen = n, batch_size, gen
        self.buf = torch.empty(0, dtype=torch.long)

    def next(self) -> Tensor:
        while self.buf.numel() < self.bs:
            self.buf = torch.cat([self.buf, torch.randperm(self.n, generator=self.gen)])
        idx, self.buf = self.buf[: self.bs], self.buf[self.bs:]
        return idx


def _check_data(data: Tensor, config: GPTConfig, what: str) -> Tensor:
    if not isinstance(data, Tensor) or data.dim() != 2:
        raise InvalidParameterError(f"{what} must be a LongTensor (N, seq_len+1), got {type(data).__name__}.")
    if data.shape[1] - 1 > config.seq_len or data.shape[1] < 2:
        raise InvalidParameterError(
            f"{what} rows have {data.shape[1]} bytes but the model context is seq_len={config.seq_len} "
            f"(rows must have 2..{config.seq_len + 1} bytes)."
        )
    return data.long()


def _make_optimizer(model: nn.Module, lr: float, betas=DEFAULT_BETAS,
                    weight_decay: float = DEFAULT_WEIGHT_DECAY) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay,
                             foreach=False)


@reproducible
@torch.no_grad()
def evaluate_loss(model: nn.Module, data: Tensor, batch_size: int = 256) -> float:
    """Mean per-sample next-byte loss (nats/byte) of ``model`` on ``data`` (N, T+1).

    Runs in eval mode under ``no_grad`` and restores the model's previous mode.
    """
    if data.shape[0] == 0:
        raise InvalidParameterError("evaluate_loss got an empty data set.")
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64)
    for i in range(0, data.shape[0], batch_size):
        total += lm_loss(model, data[i:i + batch_size]).double().sum()
    model.train(was_training)
    return float(total / data.shape[0])


@reproducible
def pretrain(
    model: TinyGPT,
    data: Tensor,
    steps: int,
    lr: float = 3e-3,
    batch_size: int = 32,
    seed: int = 0,
    ema_decay: float = 0.99,
    *,
    warmup_steps: int = 0,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    grad_clip: float | None = 1.0,
    progress: bool = False,
) -> TrainState:
    """The stable phase: AdamW at constant ``lr`` (after an optional linear warmup).

    Trains ``model`` in place on minibatches of ``data`` (N, seq_len+1) and keeps an
    EMA of the weights, ema <- d*ema + (1-d)*theta after every step (``ema_decay`` = d).
    Returns a detached :class:`TrainState` checkpoint (model, optimizer, EMA).
    ``progress=True`` shows a progress bar with the running training loss.
    Runs at a fixed torch thread count (:mod:`direct_opt.threads`): the same bits on any machine.
    """
    cfg = model.config
    data = _check_data(data, cfg, "pretraining data")
    if steps < 0:
        raise InvalidParameterError(f"steps={steps} must be >= 0.")
    if not 0.0 <= ema_decay <= 1.0:
        raise InvalidParameterError(f"ema_decay={ema_decay} must lie in [0, 1].")
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        stream = _BatchStream(data.shape[0], batch_size, gen)
        model.train()
        opt = _make_optimizer(model, lr, weight_decay=weight_decay)
        params = [p for p in model.parameters()]
        ema = [p.detach().clone() for p in params]
        bar = tqdm(total=steps, desc="pretraining", unit="step", disable=not progress, dynamic_ncols=True)
        for step in range(steps):
            cur = lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else lr
            loss = train_step(model, opt, data[stream.next()], cur, params, grad_clip)
            with torch.no_grad():
                for e, p in zip(ema, params):
                    e.lerp_(p.detach(), 1.0 - ema_decay)
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
            bar.update()
        bar.close()
        for g in opt.param_groups:
            g["lr"] = lr
    model.eval()
    ema_model = copy.deepcopy(model)
    with torch.no_grad():
        for p, e in zip(ema_model.parameters(), ema):
            p.copy_(e)
    return TrainState(
        model_state=_clone_state(model), optim_state=copy.deepcopy(opt.state_dict()),
        ema_state=_clone_state(ema_model), config=cfg, losses=losses, steps=steps, lr=float(lr),
    )


def restore(model_state: Mapping[str, Tensor], optim_state: dict | None, config: GPTConfig, lr: float,
            optimizer_state: str = "restore") -> tuple[TinyGPT, torch.optim.AdamW]:
    """A fresh model and AdamW at the checkpoint: moments restored (deep copy) or reset (same betas
    / weight decay as the checkpoint's optimizer when it is given)."""
    model = load_model(model_state, config)
    group0 = (optim_state or {}).get("param_groups", [{}])[0]
    opt = _make_optimizer(model, lr, betas=tuple(group0.get("betas", DEFAULT_BETAS)),
                          weight_decay=group0.get("weight_decay", DEFAULT_WEIGHT_DECAY))
    if optimizer_state == "restore":
        opt.load_state_dict(copy.deepcopy(optim_state))  # deep copy: never alias the caller's moments
    return model, opt


@reproducible
def anneal(
    model_state: Mapping[str, Tensor],
    optim_state: dict | None,
    data: Tensor,
    steps: int | None = None,
    *,
    epochs: float | None = None,
    peak_lr: float = 3e-3,
    shape: str = "linear",
    batch_size: int = 32,
    seed: int = 0,
    eval_sets: Mapping[str, Tensor] | None = None,
    eval_every: int = 10,
    config: GPTConfig | None = None,
    optimizer_state: str = "restore",
    grad_clip: float | None = 1.0,
    eval_batch_size: int = 256,
    lrs: Sequence[float] | None = None,
) -> AnnealResult:
    """Anneal a checkpoint on ``data`` (e.g. a selection of pool rows) with WSD decay.

    Args:
        model_state, optim_state: the checkpoint (e.g. ``TrainState.model_state`` /
            ``.optim_state``); both are copied, never mutated. ``optim_state`` may be
            None only with ``optimizer_state="reset"``.
        data: LongTensor (n, seq_len+1) to anneal on.
        steps / epochs: exactly one; ``epochs`` gives ceil(epochs * n / batch_size) steps.
        peak_lr, shape: the decay :func:`wsd_lr`; update t (0-based) uses
            ``wsd_lr(t, steps, peak_lr, shape)``, so the LR reaches 0 at the end.
        lrs: instead of steps/epochs/peak_lr/shape, the LR of every update (any schedule,
            e.g. ``direct_opt.schedule.WSD(...).lrs()``); its length is the number of steps.
        eval_sets: name -> LongTensor (m, seq_len+1); mean loss recorded at step 0
            (the restored checkpoint), every ``eval_every`` steps, and at the end.
        config: architecture of the checkpoint (default ``GPTConfig()``).
        optimizer_state: ``"restore"`` or ``"reset"`` (see module docstring).
    Returns:
        :class:`AnnealResult`. Deterministic given the inputs and ``seed``.
    """
    cfg = config if config is not None else GPTConfig()
    data = _check_data(data, cfg, "annealing data")
    eval_sets = {k: _check_data(v, cfg, f"eval set {k!r}") for k, v in (eval_sets or {}).items()}
    lrs_given = None
    if lrs is not None:
        from ..schedule.schedules import check_lrs

        lrs_given = check_lrs(lrs, "anneal lrs")
        if steps is not None and int(steps) != lrs_given.size or epochs is not None:
            raise InvalidParameterError("lrs= fixes the number of steps (its length); do not pass epochs= or another steps=.")
        steps, peak_lr = lrs_given.size, float(lrs_given.max())
    if (steps is None) == (epochs is None):
        raise InvalidParameterError("pass exactly one of steps= or epochs=.")
    n_steps = int(steps) if steps is not None else int(math.ceil(float(epochs) * data.shape[0] / batch_size))
    if n_steps <= 0:
        raise InvalidParameterError(f"the anneal needs at least one step (got {n_steps}).")
    if eval_every <= 0:
        raise InvalidParameterError(f"eval_every={eval_every} must be positive.")
    if optimizer_state not in ("restore", "reset"):
        raise UnknownNameError(f"optimizer_state={optimizer_state!r}; known: 'restore', 'reset'.")
    if optimizer_state == "restore" and optim_state is None:
        raise InvalidParameterError("optimizer_state='restore' needs optim_state; pass it or use 'reset'.")
    wsd_lr(0, n_steps, peak_lr, shape)  # validates the shape name early

    model, opt = restore(model_state, optim_state, cfg, peak_lr, optimizer_state)
    curves: dict[str, list[tuple[int, float]]] = {k: [] for k in eval_sets}

    def record(step: int) -> None:
        for k, v in eval_sets.items():
            curves[k].append((step, evaluate_loss(model, v, eval_batch_size)))

    train_losses: list[float] = []
    used_lrs: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        stream = _BatchStream(data.shape[0], batch_size, torch.Generator().manual_seed(seed))
        record(0)
        params = list(model.parameters())
        for t in range(n_steps):
            model.train()
            lr = float(lrs_given[t]) if lrs_given is not None else wsd_lr(t, n_steps, peak_lr, shape)
            loss = train_step(model, opt, data[stream.next()], lr, params, grad_clip)
            train_losses.append(float(loss.detach()))
            used_lrs.append(lr)
            if (t + 1) % eval_every == 0 or t + 1 == n_steps:
                record(t + 1)
    model.eval()
    final = {k: c[-1][1] for k, c in curves.items()}
    return AnnealResult(curves=curves, final=final, steps=n_steps, train_losses=train_losses,
                        lrs=used_lrs, model_state=_clone_state(model))
