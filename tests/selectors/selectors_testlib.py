"""Hand-built GradientStats from explicit sketches (independent of the extract package)."""

from __future__ import annotations

import math

import numpy as np
import torch

from direct_opt.stats import GradientStats


def stats_from_sketches(z_pool: np.ndarray, z_val: np.ndarray, k_star: int, z_adam: np.ndarray | None = None,
                        **extra) -> GradientStats:
    """GradientStats as in docs/math.md from sketches z_pool (N, k) and z_val (M, k) (and the
    Adam-direction sketches z_adam (N, k) when given: ``adam_coords``).

    H~ = z_valᵀ z_val / M = V Λ Vᵀ (descending), c_i = sqrt(k) Vᵀ z_i, val_grad = sqrt(k) Vᵀ mean(z_val),
    a_i = Σ_{j<k*} λ_j c_ij².
    """
    z_pool = np.asarray(z_pool, np.float64)
    z_val = np.asarray(z_val, np.float64)
    k = z_pool.shape[1]
    lam, vec = np.linalg.eigh(z_val.T @ z_val / z_val.shape[0])
    lam, vec = np.clip(lam[::-1], 0.0, None), vec[:, ::-1]
    coords = math.sqrt(k) * vec.T @ z_pool.T  # (k, N)
    val_grad = math.sqrt(k) * vec.T @ z_val.mean(0)
    a = lam[:k_star] @ coords[:k_star] ** 2
    if z_adam is not None:
        extra["adam_coords"] = math.sqrt(k) * vec.T @ np.asarray(z_adam, np.float64).T
    return GradientStats(
        G_flat=coords[k_star:], a_stiff=a, eigvals=lam, k_star=k_star, G_stiff=coords[:k_star],
        val_grad=val_grad, val_coords=math.sqrt(k) * vec.T @ z_val.T, **extra,
    )


def random_stats(n: int = 40, k: int = 10, m: int = 6, k_star: int = 3, seed: int = 0, **extra) -> tuple:
    """(stats, z_pool (N, k), z_val (M, k)) with random sketches, losses and grad norms."""
    rng = np.random.default_rng(seed)
    z_pool = rng.standard_normal((n, k))
    z_val = rng.standard_normal((m, k)) + 0.5
    extra.setdefault("losses", rng.random(n))
    extra.setdefault("grad_norms", np.linalg.norm(z_pool, axis=1) * (1 + 0.1 * rng.random(n)))
    z_adam = rng.standard_normal((n, k))  # stands in for the Adam update directions (faithful LESS)
    return stats_from_sketches(z_pool, z_val, k_star, z_adam, **extra), z_pool, z_val


def cosine_top_k(z_pool: np.ndarray, z_val: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted top-K indices, cosines) of cos(z_i, mean z_val), computed directly on the sketches."""
    v = z_val.mean(0)
    cos = z_pool @ v / (np.linalg.norm(z_pool, axis=1) * np.linalg.norm(v))
    return np.sort(np.argsort(-cos, kind="stable")[:k]), cos


class TinyReg(torch.nn.Module):
    """x (B, 3) -> (B,) : a small tanh MLP."""

    def __init__(self, seed: int = 0, hidden: int = 4, dtype=torch.float64) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc1 = torch.nn.Linear(3, hidden, dtype=dtype)
        self.fc2 = torch.nn.Linear(hidden, 1, dtype=dtype)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x))).squeeze(-1)


def mse(model: torch.nn.Module, batch) -> torch.Tensor:
    """Per-sample squared error; batch = (x (B, 3), y (B,))."""
    x, y = batch
    return (model(x) - y) ** 2


def make_pairs(n: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=dtype)
    y = torch.randn(n, generator=g, dtype=dtype)
    return [(x[i], y[i]) for i in range(n)]
