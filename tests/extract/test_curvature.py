import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from direct_opt.extract import (
    ExtractConfig, GaussianProjector, energy_elbow, extract_stats, fisher_eigen, lanczos, log_gap_elbow,
)
from direct_opt.extract.elbow import choose_k_star
from direct_opt.errors import UnknownNameError

from .extract_testlib import TinyMLP, make_data, mse_loss


def test_lanczos_on_explicit_matrix():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((40, 40))
    a = a + a.T
    lam, vec = lanczos(lambda v: a @ v, 40, 5, steps=40, seed=1)
    ref = np.sort(np.linalg.eigvalsh(a))[::-1][:5]
    np.testing.assert_allclose(lam, ref, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(a @ vec, vec * lam, atol=1e-7)


def test_lanczos_low_rank_breakdown():
    u = np.linalg.qr(np.random.default_rng(1).standard_normal((30, 3)))[0]
    a = u @ np.diag([5.0, 2.0, 1.0]) @ u.T  # rank 3: Krylov space breaks down early
    lam, _ = lanczos(lambda v: a @ v, 30, 4, steps=30)
    np.testing.assert_allclose(lam, [5, 2, 1, 0], atol=1e-8)


def test_hessian_lanczos_matches_autograd_hessian():
    torch.manual_seed(0)
    model = TinyMLP(d_in=3, hidden=4).double()
    pool, val = make_data(8, d_in=3, seed=1, dtype=torch.float64), make_data(10, d_in=3, seed=2, dtype=torch.float64)
    st = extract_stats(model, mse_loss, pool, val,
                       ExtractConfig(k_sketch=6, curvature="hessian-lanczos", batch_size=4, verbose=False))
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    x = torch.stack([s[0] for s in val]); y = torch.stack([s[1] for s in val])

    def f(flat):
        out, off = {}, 0
        for n, s in zip(names, shapes):
            out[n] = flat[off : off + math.prod(s)].reshape(s)
            off += math.prod(s)
        return ((functional_call(model, out, (x,)) - y) ** 2).mean()

    h = torch.autograd.functional.hessian(f, flat0)
    ref = np.sort(np.linalg.eigvalsh(h.numpy()))[::-1][:6]
    assert st.eigvals.shape == (6,)
    np.testing.assert_allclose(st.eigvals, ref, rtol=1e-4, atol=1e-5)
    assert st.config["curvature"]["kind"] == "hessian-lanczos"


def test_fisher_eigen_matches_numpy():
    z = np.random.default_rng(0).standard_normal((7, 5))
    lam, v = fisher_eigen(z)
    ref = np.sort(np.linalg.eigvalsh(z.T @ z / 7))[::-1]
    np.testing.assert_allclose(lam, np.clip(ref, 0, None), atol=1e-12)
    np.testing.assert_allclose(v.T @ v, np.eye(5), atol=1e-10)
    assert np.all(np.diff(lam) <= 1e-12)


def test_elbow_rules():
    lam = np.array([50.0, 30.0, 10.0, 5.0, 3.0, 2.0])  # cumulative energy .5 .8 .9 .95 .98 1
    assert energy_elbow(lam, 0.945) == 4
    assert energy_elbow(lam, 0.5) == 1
    assert energy_elbow(lam, 1.0) == 6
    assert energy_elbow(np.zeros(4), 0.9) == 0
    assert log_gap_elbow(np.array([100.0, 90.0, 1.0, 0.9, 0.0])) == 2
    with pytest.raises(UnknownNameError, match="energy.*log-gap"):
        choose_k_star("knee", lam)


def test_fisher_stats_follow_the_formulas(mlp, pool, val):
    """G, a, val_grad recomputed by hand from explicit gradients and the explicit matrix."""
    k = 16
    st = extract_stats(mlp, mse_loss, pool, val, ExtractConfig(k_sketch=k, batch_size=8, verbose=False))
    names = [n for n, _ in mlp.named_parameters()]
    params = dict(mlp.named_parameters())

    def grads(samples):
        rows = []
        for x, y in samples:
            loss = mse_loss(mlp, (x[None], y[None])).sum()
            rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, [params[n] for n in names])]))
        return torch.stack(rows).double().numpy()

    dim = sum(p.numel() for p in mlp.parameters())
    r = GaussianProjector(dim, k, seed=0).matrix().double().numpy()  # R^T (d, k)
    zv, zp = grads(val) @ r, grads(pool) @ r
    lam, v = fisher_eigen(zv)
    ks = energy_elbow(lam, 0.945)
    coords = math.sqrt(k) * zp @ v
    assert st.k_star == ks and st.config["split"]["k_star"] == ks
    np.testing.assert_allclose(st.eigvals, lam, rtol=1e-4, atol=1e-6)
    # eigenvector signs are fixed the same way, so coordinates agree up to float32 error on the
    # non-degenerate directions; the null space (k > M) is compared through its projection norm
    live = lam > 1e-6 * lam[0]
    flat_live = live[ks:]
    np.testing.assert_allclose(st.G_flat[flat_live], coords[:, ks:][:, flat_live].T, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose((st.G_flat[~flat_live] ** 2).sum(0), (coords[:, ks:][:, ~flat_live] ** 2).sum(1),
                               rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(st.G_stiff, coords[:, :ks].T, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(st.a_stiff, (coords[:, :ks] ** 2) @ lam[:ks], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(st.val_grad, math.sqrt(k) * zv.mean(0) @ v, rtol=1e-3, atol=1e-3)
