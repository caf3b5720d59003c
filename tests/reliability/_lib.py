"""Shared pieces of the reliability tests: a tiny deterministic torch model, an
extraction configuration, stats builders and the subprocess helpers.

Kept free of pytest so that ``_extract_worker.py`` (run in a child process) can import it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_extract_worker.py")
N_POOL, N_VAL, BATCH, K_SKETCH = 40, 12, 4, 12
N_SHARDS = N_POOL // BATCH


def child_env(**extra: str) -> dict[str, str]:
    """Environment of a child python: repo importable, deterministic hashing, no stray threads."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONHASHSEED"] = "0"
    env.update(extra)
    return env


# ---------------------------------------------------------------- torch side
def tiny_model():
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = torch.nn.Linear(5, 6)
            self.fc2 = torch.nn.Linear(6, 1)

        def forward(self, x):
            return self.fc2(torch.tanh(self.fc1(x))).squeeze(-1)

    torch.manual_seed(0)
    return Tiny()


def mse(model, batch):
    x, y = batch
    return (model(x) - y) ** 2


def data(n: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = torch.randn(n, generator=g)
    return [(x[i], y[i]) for i in range(n)]


def config(out_dir: str | None, **kw):
    from direct_opt.extract import ExtractConfig

    return ExtractConfig(k_sketch=K_SKETCH, batch_size=BATCH, verbose=False, seed=0, out_dir=out_dir, **kw)


def extract(out_dir: str | None, pool=None):
    """extract_stats on the tiny model (the same arguments every time)."""
    from direct_opt.extract import extract_stats

    return extract_stats(tiny_model(), mse, pool if pool is not None else data(N_POOL, 1), data(N_VAL, 2),
                         config(out_dir))


def npy_bytes(d: Path) -> dict[str, bytes]:
    """{relative name: bytes} of every .npy under ``d``."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(Path(d).rglob("*.npy"))}


def manifest_without_out_dir(d: Path) -> dict:
    m = json.loads((Path(d) / "manifest.json").read_text())
    m["config"]["extract"].pop("out_dir", None)
    return m


# ---------------------------------------------------------------- solver side
def random_stats(n: int = 200, r: int = 6, k: int = 10, seed: int = 0):
    """Synthetic GradientStats with eigvals/k_star/G_stiff so every field is exercised."""
    from direct_opt import GradientStats

    rng = np.random.default_rng(seed)
    k_star = k - r
    lam = np.sort(rng.random(k) * 10)[::-1].astype(np.float32)
    gs = rng.standard_normal((k_star, n)).astype(np.float32)
    a = ((gs.astype(np.float64) ** 2).T @ lam[:k_star]).astype(np.float32)
    return GradientStats(G_flat=rng.standard_normal((r, n)).astype(np.float32), a_stiff=a, eigvals=lam,
                         k_star=k_star, G_stiff=gs, losses=rng.random(n).astype(np.float32),
                         config={"source": "random_stats", "seed": seed})


def run_cli(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """``direct-opt ARGS`` in a child process (the console script's own python)."""
    cmd = [sys.executable, "-c", "import sys; from direct_opt.cli import main; sys.exit(main())", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env(), **kw)


# ---------------------------------------------------------------- child extraction processes
def spawn_worker(out_dir: Path, *args: str, **popen_kw) -> subprocess.Popen:
    """Start ``_extract_worker.py OUT_DIR ARGS`` (stdout/stderr piped, text mode)."""
    return subprocess.Popen([sys.executable, str(WORKER), str(out_dir), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=popen_kw.pop("env", None) or child_env(), **popen_kw)


def wait_for(proc: subprocess.Popen, ready, timeout: float = 240.0, what: str = "the child") -> None:
    """Poll until ``ready()`` is true; fail with the child's output if it exits or times out first."""
    import time

    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"{what} exited with {proc.returncode} first:\n{out}\n{err[-3000:]}")
        if time.monotonic() > deadline:
            sigkill(proc)
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def sigkill(proc: subprocess.Popen) -> None:
    """SIGKILL the child and reap it (a reaped pid is dead, so its lock file is stale)."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
