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


# ---------------------------------------------------------------- reproducibility
REPRO_N, REPRO_K = 1500, 60
# iteration caps keep the slow backends short; reproducibility does not depend on them
REPRO_SOLVE_KW = {"frank-wolfe": {"max_iter": 5}, "pga-dykstra": {"max_iter": 3}, "sca-osqp": {"max_iter": 2}}


def wide_model():
    """A model wide enough (d = 8449) that torch's intra-op threads take part in its products."""
    import torch

    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, 1), torch.nn.Flatten(0))


def wide_data(n: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 64, generator=g), torch.randn(n, generator=g)
    return [(x[i], y[i]) for i in range(n)]


def wide_extract(device: str = "cpu", projector: str = "gaussian"):
    """GradientStats of the wide model (64 pool samples, 32 validation samples, k = 64)."""
    from direct_opt.extract import ExtractConfig, extract_stats

    cfg = ExtractConfig(k_sketch=64, batch_size=16, verbose=False, seed=0, device=device, projector=projector)
    return extract_stats(wide_model(), mse, wide_data(64, 3), wide_data(32, 4), cfg)


def repro_record(stats_dir: str) -> dict:
    """What must not depend on the process or the thread count: an extraction checksum and the
    indices + objective (exact bits) of every backend on the stats in ``stats_dir``."""
    import torch

    from direct_opt import GradientStats, SelectionProblem, available_backends, solve

    problem = SelectionProblem.from_stats(GradientStats.load(stats_dir), k=REPRO_K, tau_rel=0.5)
    solves = {}
    for backend in available_backends():
        res = solve(problem, backend=backend, seed=7, **REPRO_SOLVE_KW.get(backend, {}))
        solves[backend] = {"indices": [int(i) for i in res.indices], "objective": float(res.objective).hex()}
    return {"torch_threads": torch.get_num_threads(), "extract": wide_extract().checksum(), "solves": solves}


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), 1e-30)) if a.size else 0.0


def cpu_cuda_differences(device: str = "cuda") -> dict:
    """Measured CPU-vs-``device`` differences (max relative to the largest magnitude).

    Extraction: the wide model on CPU and on ``device`` (same seed; the Gaussian projector is
    drawn on the host, so both use the same matrix).  The flat block is compared through its
    Gram matrix G_flat^T G_flat, which is what the objective sees (it does not depend on the
    basis chosen inside the flat eigenspace).  Solvers: the same stats solved with the products
    on CPU (numpy) and on ``device`` (torch); both selections are scored on the CPU.
    """
    from direct_opt import SelectionProblem, solve
    from direct_opt.linop import use_device

    cpu, dev = wide_extract("cpu"), wide_extract(device)
    out: dict = {"k_star_equal": cpu.k_star == dev.k_star, "k_star": [cpu.k_star, dev.k_star]}
    for key in ("losses", "grad_norms", "eigvals", "a_stiff"):
        out[key] = _rel(getattr(cpu, key), getattr(dev, key))
    if cpu.k_star == dev.k_star:
        gram = [np.asarray(s.G_flat, np.float64).T @ np.asarray(s.G_flat, np.float64) for s in (cpu, dev)]
        out["flat_gram"] = _rel(*gram)
    stats = random_stats(n=REPRO_N, r=16, k=24, seed=0)
    out["solvers"] = {}
    for backend in ("sca-exact", "frank-wolfe", "fw-block", "greedy", "random"):
        kw = dict(seed=7, **REPRO_SOLVE_KW.get(backend, {}))
        on_cpu = SelectionProblem.from_stats(stats, k=REPRO_K, tau_rel=0.5)
        on_dev = use_device(SelectionProblem.from_stats(stats, k=REPRO_K, tau_rel=0.5), device)
        a, b = solve(on_cpu, backend=backend, **kw), solve(on_dev, backend=backend, **kw)
        fa, fb = on_cpu.selection_objective(a.indices), on_cpu.selection_objective(b.indices)
        x = np.zeros(on_cpu.n)
        x[b.indices] = 1
        out["solvers"][backend] = {
            "identical_indices": bool(np.array_equal(a.indices, b.indices)),
            "jaccard": len(set(a.indices) & set(b.indices)) / max(1, len(set(a.indices) | set(b.indices))),
            "objective_rel": abs(fa - fb) / max(abs(fa), 1e-30),
            "feasible": bool(b.feasible and len(b.indices) == REPRO_K and on_cpu.is_feasible(x)),
        }
    return out
