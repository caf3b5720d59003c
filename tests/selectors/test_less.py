"""LESS and grad-norm: stats-level scores equal the explicit computation on the sketches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from direct_opt.extract import ExtractConfig, extract_stats, make_projector
from direct_opt.selectors import cosine_scores, select

from .selectors_testlib import cosine_top_k, random_stats


@pytest.mark.parametrize("k_star", [0, 3, 9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_less_equals_cosine_on_explicit_sketches(k_star, seed):
    st, z_pool, z_val = random_stats(n=60, k=10, m=4, k_star=k_star, seed=seed)
    want, cos = cosine_top_k(z_pool, z_val, 11)
    np.testing.assert_allclose(cosine_scores(st), cos, rtol=1e-10, atol=1e-12)
    sel = select("less", k=11, stats=st, variant="mean-gradient")
    np.testing.assert_array_equal(sel.indices, want)
    np.testing.assert_allclose(sel.scores, cos, atol=1e-12)


def test_less_zero_gradient_sample_scores_zero():
    st, z_pool, z_val = random_stats(n=10, k=6, m=3, k_star=2)
    z_pool[4] = 0.0
    from .selectors_testlib import stats_from_sketches

    st = stats_from_sketches(z_pool, z_val, 2)
    assert cosine_scores(st)[4] == 0.0


def test_grad_norm_is_top_k_of_norms():
    st, _, _ = random_stats(n=30, seed=4)
    sel = select("grad-norm", k=5, stats=st)
    np.testing.assert_array_equal(sel.indices, np.sort(np.argsort(-st.grad_norms)[:5]))


def _tiny_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))


def _loss(model, batch):
    x, y = batch
    return (model(x).squeeze(-1) - y) ** 2


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 4, generator=g), torch.randn(n, generator=g)
    return [(x[i], y[i]) for i in range(n)]


def _explicit_grads(model, samples):
    """(n, d) per-sample gradients by plain autograd, parameters in named_parameters order."""
    rows = []
    params = [p for _, p in model.named_parameters()]
    for x, y in samples:
        loss = _loss(model, (x[None], y[None])).sum()
        gs = torch.autograd.grad(loss, params)
        rows.append(torch.cat([g.reshape(-1) for g in gs]).double())
    return torch.stack(rows).numpy()


def test_less_on_extracted_stats_matches_explicit_projected_gradients():
    model, pool, val = _tiny_mlp(), _data(40, 1), _data(9, 2)
    k = 12
    st = extract_stats(model, _loss, pool, val, ExtractConfig(k_sketch=k, batch_size=8, verbose=False, seed=5))
    d = sum(p.numel() for p in model.parameters())
    rt = make_projector("gaussian", k=k, seed=5, dim=d).matrix().double().numpy()  # (d, k) = Rᵀ
    z_pool, z_val = _explicit_grads(model, pool) @ rt, _explicit_grads(model, val) @ rt
    _, cos = cosine_top_k(z_pool, z_val, 1)
    np.testing.assert_allclose(cosine_scores(st), cos, atol=2e-4)
    K = 10
    order = np.argsort(-cos)
    assert cos[order[K - 1]] - cos[order[K]] > 1e-3  # a clear gap at the K-th place on this data
    np.testing.assert_array_equal(select("less", k=K, stats=st, variant="mean-gradient").indices, np.sort(order[:K]))
    np.testing.assert_allclose(st.grad_norms, np.linalg.norm(_explicit_grads(model, pool), axis=1), rtol=1e-4)
