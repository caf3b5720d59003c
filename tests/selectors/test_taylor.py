"""Taylor (GREATS-style): the estimate, the greedy, and the stats path with an identity sketch."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from direct_opt.errors import InvalidParameterError
from direct_opt.selectors import greedy_taylor, select, taylor_gain

from .selectors_testlib import TinyReg, make_pairs, random_stats, stats_from_sketches


def _flat_problem(seed=0):
    """Tiny tanh MLP (d = 21), float64.

    Returns (val_loss(theta_flat), theta0 (d,), pool per-sample grads (N, d), mean val grad (d,),
    val Hessian (d, d), val per-sample grads (M, d)).
    """
    model = TinyReg(seed)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def unflat(t):
        out, off = {}, 0
        for n, s in zip(names, shapes):
            size = math.prod(s)
            out[n] = t[off: off + size].reshape(s)
            off += size
        return out

    def losses(t, samples):
        x = torch.stack([s[0] for s in samples])
        y = torch.stack([s[1] for s in samples])
        return (functional_call(model, unflat(t), (x,)) - y) ** 2

    pool, val = make_pairs(12, 1), make_pairs(8, 2)
    val_loss = lambda t: losses(t, val).mean()  # noqa: E731
    def per_sample(samples):
        return torch.stack([torch.autograd.functional.jacobian(lambda t: losses(t, [s])[0], theta0) for s in samples])

    g_val = torch.autograd.functional.jacobian(val_loss, theta0)
    h_val = torch.autograd.functional.hessian(val_loss, theta0)
    return val_loss, theta0, per_sample(pool).numpy(), g_val.numpy(), h_val.numpy(), per_sample(val).numpy()


def test_taylor_gain_matches_sgd_step_to_second_order():
    val_loss, theta0, g_pool, g_val, h_val, _ = _flat_problem()
    S = [0, 3, 5, 8]
    s = g_pool[S].sum(0)
    errs, errs1, rel = [], [], []
    for eta in (1e-2, 5e-3, 2.5e-3, 1.25e-3):
        actual = float(val_loss(theta0) - val_loss(theta0 - eta * torch.from_numpy(s)))
        pred = taylor_gain(g_pool[S].T, g_val, h_val, eta, normalize="sum")
        errs.append(abs(actual - pred))
        errs1.append(abs(actual - eta * g_val @ s))
        rel.append(abs(actual - pred) / abs(actual))
    ratios = np.array(errs[1:]) / np.array(errs[:-1])
    ratios1 = np.array(errs1[1:]) / np.array(errs1[:-1])
    assert np.all(ratios < 0.16), ratios      # O(eta^3): halving eta divides the error by ~8
    assert np.all(ratios1 > 0.2), ratios1     # first order alone is only O(eta^2) (~4x)
    assert errs[-1] < 1e-2 * errs1[-1] and rel[-1] < 1e-3


def test_taylor_gain_normalisations():
    rng = np.random.default_rng(0)
    g, gv, H = rng.standard_normal((5, 3)), rng.standard_normal(5), np.diag(rng.random(5))
    s = g.sum(1)
    assert taylor_gain(g, gv, H, 0.1, "sum") == pytest.approx(0.1 * gv @ s - 0.005 * s @ H @ s)
    assert taylor_gain(g, gv, H, 0.3, "mean") == pytest.approx(taylor_gain(g, gv, H, 0.1, "sum"))
    assert taylor_gain(g, gv, np.diag(H), 0.1, "sum") == pytest.approx(taylor_gain(g, gv, H, 0.1, "sum"))
    u = g / np.linalg.norm(g, axis=0)
    assert taylor_gain(g, gv, H, 0.1, "unit") == pytest.approx(taylor_gain(u, gv, H, 0.1, "mean"))
    with pytest.raises(InvalidParameterError):
        taylor_gain(g, gv, H, -1.0)
    with pytest.raises(InvalidParameterError):
        taylor_gain(g, gv, H, 0.1, "max")


@pytest.mark.parametrize("normalize", ["sum", "mean", "unit"])
@pytest.mark.parametrize("full_h", [False, True])
def test_greedy_picks_best_marginal_gain_each_step(normalize, full_h):
    rng = np.random.default_rng(3)
    d, n, K = 4, 9, 5
    C, gv = rng.standard_normal((d, n)), rng.standard_normal(d)
    A = rng.standard_normal((d, d))
    H = A @ A.T if full_h else rng.random(d) * 3
    eta = 0.7
    order, gains, total = greedy_taylor(C, gv, H, eta, K, normalize)
    # the objective greedy optimises is that of the final K-set: "mean"/"unit" == "sum" with eta/K
    cols = C / np.linalg.norm(C, axis=0) if normalize == "unit" else C
    e = eta / K if normalize != "sum" else eta

    def f(S):
        return taylor_gain(cols[:, list(S)], gv, H, e, "sum") if S else 0.0

    chosen: list[int] = []
    for t in range(K):
        best = max((f(chosen + [j]) - f(chosen), -j) for j in range(n) if j not in chosen)
        assert order[t] == -best[1]
        assert gains[t] == pytest.approx(best[0], rel=1e-9, abs=1e-12)
        chosen.append(int(order[t]))
    assert total == pytest.approx(taylor_gain(C[:, order], gv, H, eta, normalize), rel=1e-9)
    # greedy is a heuristic: it is never better than the best K-subset
    assert total <= max(f(list(S)) for S in itertools.combinations(range(n), K)) + 1e-12


def test_stats_path_equals_explicit_path_with_identity_sketch():
    """k = d, R = I: the stats carry sqrt(d) Vᵀ g with V the Fisher eigenvectors; Δ must be exact."""
    _, _, g_pool, g_val, _, g_vals = _flat_problem(1)
    F = g_vals.T @ g_vals / g_vals.shape[0]  # exact validation Fisher (d x d), rank M = 8 < d = 21
    gbar = g_vals.mean(0)
    np.testing.assert_allclose(gbar, g_val, atol=1e-12)
    st = stats_from_sketches(g_pool, g_vals, k_star=3)
    for normalize in ("sum", "mean", "unit"):
        eta = 0.05
        sel = select("taylor", k=4, stats=st, eta=eta, normalize=normalize)
        order, gains, total = greedy_taylor(g_pool.T, gbar, F, eta, 4, normalize)
        np.testing.assert_array_equal(sel.indices, np.sort(order))
        assert sel.diagnostics["predicted_decrease"] == pytest.approx(total, rel=1e-8)
        assert sel.diagnostics["predicted_decrease"] == pytest.approx(
            taylor_gain(g_pool[sel.indices].T, gbar, F, eta, normalize), rel=1e-8)
        lin, curv = sel.diagnostics["linear_term"], sel.diagnostics["curvature_term"]
        assert lin - curv == pytest.approx(total, rel=1e-8)
        single = [taylor_gain(g_pool[[i]].T, gbar, F, eta / (4 if normalize != "sum" else 1),
                              "unit" if normalize == "unit" else "sum") for i in range(len(g_pool))]
        np.testing.assert_allclose(sel.scores, single, rtol=1e-8, atol=1e-14)


def test_taylor_eta_controls_the_curvature_penalty():
    st, _, _ = random_stats(n=50, k=8, m=5, k_star=2, seed=7)
    small = select("taylor", k=6, stats=st, eta=1e-6)
    less_like = np.sort(np.argsort(-(st.val_grad @ st.eigen_coords()), kind="stable")[:6])
    np.testing.assert_array_equal(small.indices, less_like)  # tiny eta: linear term ḡᵀg_i only
    big = select("taylor", k=6, stats=st, eta=10.0)
    assert big.diagnostics["curvature_term"] / big.diagnostics["linear_term"] > \
        small.diagnostics["curvature_term"] / small.diagnostics["linear_term"]
    with pytest.raises(InvalidParameterError, match="eta"):
        select("taylor", k=2, stats=st, eta=0.0)
