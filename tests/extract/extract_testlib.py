"""Tiny models and data shared by the extraction tests."""

from __future__ import annotations

import torch


class TinyMLP(torch.nn.Module):
    """x (B, 5) -> scalar regression output (B,)."""

    def __init__(self, d_in: int = 5, hidden: int = 7) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(d_in, hidden)
        self.fc2 = torch.nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x))).squeeze(-1)


def mse_loss(model: torch.nn.Module, batch) -> torch.Tensor:
    """Per-sample squared error; batch = (x (B, 5), y (B,))."""
    x, y = batch
    return (model(x) - y) ** 2


def make_data(n: int, d_in: int = 5, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g, dtype=dtype)
    y = torch.randn(n, generator=g, dtype=dtype)
    return [(x[i], y[i]) for i in range(n)]


def load_stats(path):
    """GradientStats.load (checksums verified)."""
    from direct_opt.stats import GradientStats

    return GradientStats.load(path)
