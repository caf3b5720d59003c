"""A training-loop wrapper for any torch model: iterate over the chosen sub-batches.

    sel = make_online_selector("blade", model=model, loss_fn=loss_fn, val=val, b=16)
    for batch in OnlineBatches(sel, data, super_batch=64, steps=200, seed=0):
        loss = loss_fn(model, batch.data).mean()
        opt.zero_grad(); loss.backward(); opt.step()

Each step draws a super-batch of B rows from ``data`` (seeded permutations: every row once
per pass), scores all B in batched forward passes, and yields the b chosen rows. Before it
draws the next super-batch it calls ``selector.update(model, step)`` — i.e. after your
optimiser step — so dynamic references stay in lockstep (``auto_update=False`` to call it
yourself).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from ..errors import InvalidInputError
from ..lm.train import _BatchStream
from ..stats import int_scalar
from .base import OnlineSelector, batch_len, take


@dataclass
class OnlineBatch:
    """One training step's data.

    Attributes:
        step: 0-based step.
        data: the b chosen samples, batched like the candidates (tensor / dict of tensors).
        indices: (b,) their row indices in ``data`` of :class:`OnlineBatches`.
        candidates: (B,) row indices of the super-batch they were chosen from.
        diagnostics: the selector's record of this step (+ ``select_time_s``).
    """

    step: int
    data: Any
    indices: np.ndarray
    candidates: np.ndarray
    diagnostics: dict[str, Any] = field(default_factory=dict)


class OnlineBatches:
    """Iterator of :class:`OnlineBatch` chosen online by ``selector`` from ``data``.

    Args:
        selector: an :class:`~direct_opt.online.OnlineSelector` (from ``make_online_selector``).
        data: the candidate rows: a tensor (N, ...), a dict of tensors (N first), or a
            sequence / map-style dataset of N samples (collated with the selector's ``collate_fn``).
        super_batch: B, candidates per step (b <= B <= N).
        steps: number of steps to yield.
        seed: seed of the super-batch draws.
        groups: optional (N,) source label per row (quotas, composition diagnostics).
        auto_update: call ``selector.update(selector.model, step)`` before drawing the next step.
    """

    def __init__(self, selector: OnlineSelector, data: Any, super_batch: int, steps: int, *, seed: int = 0,
                 groups: Sequence[Any] | None = None, auto_update: bool = True) -> None:
        if not isinstance(selector, OnlineSelector):
            raise InvalidInputError(f"selector must be an OnlineSelector (make_online_selector(...)), "
                                    f"got {type(selector).__name__}.")
        self.selector, self.data = selector, data
        self.n = batch_len(data)
        if self.n == 0:
            raise InvalidInputError("data is empty; pass at least b rows to select from.")
        self.B = int_scalar("super_batch", super_batch, minimum=1)
        if selector.b > self.B:
            raise InvalidInputError(f"b={selector.b} exceeds super_batch B={self.B}; choose b <= B.")
        if self.B > self.n:
            raise InvalidInputError(f"super_batch B={self.B} exceeds the {self.n} rows of data.")
        self.steps = int_scalar("steps", steps, minimum=0)
        self.seed = int_scalar("seed", seed)
        if groups is not None and len(groups) != self.n:
            raise InvalidInputError(f"groups has {len(groups)} labels for {self.n} rows of data.")
        self.groups = None if groups is None else np.asarray([str(g) for g in groups])
        self.auto_update = bool(auto_update)

    def rows(self, idx: np.ndarray) -> Any:
        """The rows ``idx`` of ``data`` as one batch."""
        if isinstance(self.data, (torch.Tensor, Mapping)):
            return take(self.data, idx)
        return self.selector.collate([self.data[int(i)] for i in idx])

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[OnlineBatch]:
        stream = _BatchStream(self.n, self.B, torch.Generator().manual_seed(self.seed))
        for step in range(self.steps):
            if step and self.auto_update:
                self.selector.update(self.selector.model, step - 1)
            cand = stream.next().numpy()
            batch = self.rows(cand)
            t0 = time.perf_counter()
            chosen = self.selector.select(batch, step, None if self.groups is None else self.groups[cand])
            diag = {**self.selector.diagnostics, "select_time_s": time.perf_counter() - t0}
            yield OnlineBatch(step, self.selector.last_batch, cand[chosen], cand, diag)
        if self.steps and self.auto_update:
            self.selector.update(self.selector.model, self.steps - 1)
