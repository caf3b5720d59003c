"""loss and excess-loss selectors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from direct_opt.errors import InvalidInputError, NonFiniteError
from direct_opt.selectors import pool_losses, select

from .selectors_testlib import TinyReg, make_pairs, mse, random_stats


class Shift(torch.nn.Module):
    """f(x) = x[:, 0] + b: the per-sample loss (x0 + b - y)^2 is explicit."""

    def __init__(self, b: float) -> None:
        super().__init__()
        self.b = torch.nn.Parameter(torch.tensor(float(b), dtype=torch.float64))

    def forward(self, x):
        return x[:, 0] + self.b


def test_pool_losses_tensor_and_sequence_pools_agree():
    model, pairs = TinyReg(0), make_pairs(23, 5)
    x = torch.stack([p[0] for p in pairs])
    seq = pool_losses(model, mse, pairs, batch_size=4)
    want = mse(model, (x, torch.stack([p[1] for p in pairs]))).detach().numpy()
    np.testing.assert_allclose(seq, want, rtol=1e-12)
    tensor_loss = lambda m, xb: (m(xb) - 1.0) ** 2  # noqa: E731  (a tensor pool: batches are slices)
    np.testing.assert_allclose(pool_losses(model, tensor_loss, x, batch_size=5),
                               tensor_loss(model, x).detach().numpy(), rtol=1e-12)


def test_pool_losses_restores_mode_and_checks_shape():
    model = TinyReg(0).train()
    pool_losses(model, mse, make_pairs(3, 0))
    assert model.training
    with pytest.raises(InvalidInputError, match=r"shape \(B,\)"):
        pool_losses(model, lambda m, b: mse(m, b).sum(), make_pairs(3, 0))
    with pytest.raises(NonFiniteError, match="sample 0"):
        pool_losses(model, lambda m, b: mse(m, b) * float("nan"), make_pairs(3, 0))


def test_loss_selector_model_and_stats_paths():
    model, pairs = TinyReg(0), make_pairs(20, 5)
    losses = pool_losses(model, mse, pairs)
    a = select("loss", k=4, model=model, loss_fn=mse, pool=pairs)
    np.testing.assert_array_equal(a.indices, np.sort(np.argsort(-losses)[:4]))
    st, _, _ = random_stats(n=20, losses=losses)
    b = select("loss", k=4, stats=st)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.diagnostics["source"] == "model" and b.diagnostics["source"] == "stats.losses"


def test_excess_loss_reference_equal_to_model_gives_zero_scores():
    model, pairs = TinyReg(0), make_pairs(15, 2)
    sel = select("excess-loss", k=5, model=model, loss_fn=mse, pool=pairs, reference=copy.deepcopy(model))
    np.testing.assert_array_equal(sel.scores, np.zeros(15))
    np.testing.assert_array_equal(sel.indices, np.arange(5))  # ties -> lowest indices
    same = select("excess-loss", k=5, model=model, loss_fn=mse, pool=pairs, reference=model)
    np.testing.assert_array_equal(same.indices, np.arange(5))


def test_excess_loss_constructed_ordering():
    # y = 0; model b = 0: loss = x0^2; reference b = 1: loss = (x0 + 1)^2; excess = -(2 x0 + 1),
    # so the largest excess loss belongs to the most negative x0.
    x0 = torch.tensor([0.5, -2.0, 1.5, -0.5, 3.0, -1.0], dtype=torch.float64)
    pairs = [(torch.stack([v, torch.tensor(0.0, dtype=torch.float64)]), torch.tensor(0.0, dtype=torch.float64))
             for v in x0]
    sel = select("excess-loss", k=3, model=Shift(0.0), loss_fn=mse, pool=pairs, reference=Shift(1.0), batch_size=4)
    np.testing.assert_allclose(sel.scores, -(2 * x0.numpy() + 1))
    np.testing.assert_array_equal(sel.indices, [1, 3, 5])
    # the plain loss picks the largest |x0| instead
    np.testing.assert_array_equal(select("loss", k=3, model=Shift(0.0), loss_fn=mse, pool=pairs).indices, [1, 2, 4])


def test_excess_loss_runs_in_eval_mode_without_grad():
    seen = []

    def loss_fn(m, batch):
        seen.append((m.training, torch.is_grad_enabled()))
        return mse(m, batch)

    model, ref = TinyReg(0).train(), TinyReg(1).train()
    select("excess-loss", k=2, model=model, loss_fn=loss_fn, pool=make_pairs(5, 0), reference=ref)
    assert seen and all(s == (False, False) for s in seen)
    assert model.training and ref.training
