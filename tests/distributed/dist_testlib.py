"""Shared pieces of the distributed tests: a solver instance, a small extraction, a launcher."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def instance(n: int = 3000, r: int = 12, seed: int = 4):
    """(G (r, N) float32, a (N,), K, tau) imitating gradient statistics (budget binding; seed 4 makes the 1-swap search swap once)."""
    rng = np.random.default_rng(seed)
    scale = rng.lognormal(0.0, 0.5, n)
    G = (rng.standard_normal((r, n)) + 2.0 * np.outer(rng.standard_normal(r), rng.normal(0.3, 0.3, n))) * scale
    a = ((rng.standard_normal((4, n)) * scale) ** 2).sum(0)
    k = n // 10
    return G.astype(np.float32), a, k, 0.1 * float(a.mean()) * k


def extract_small(run_dir: str | None = None, curvature: str = "fisher", seed: int = 5):
    """extract_stats of the tiny MLP on 37 pool / 13 validation samples (batch 4: uneven shards)."""
    import torch

    from direct_opt.extract import ExtractConfig, extract_stats
    from tests.extract.extract_testlib import TinyMLP, make_data, mse_loss

    torch.manual_seed(0)
    model = TinyMLP()
    cfg = ExtractConfig(k_sketch=16, batch_size=4, seed=seed, verbose=False, out_dir=run_dir, curvature=curvature)
    return extract_stats(model, mse_loss, make_data(37, seed=1), make_data(13, seed=2), cfg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(world: int, args: list[str], timeout: float = 90.0) -> None:
    """Run ``python -m tests.distributed._worker ARGS`` as ``world`` gloo ranks (torchrun's env)."""
    port = free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
               "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        procs.append(subprocess.Popen([sys.executable, "-m", "tests.distributed._worker", *args], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    errors = []
    for rank, proc in enumerate(procs):
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"rank {rank} did not finish within {timeout} s")
        if proc.returncode != 0:
            errors.append(f"rank {rank} exited {proc.returncode}:\n{err[-3000:]}")
    assert not errors, "\n".join(errors)
