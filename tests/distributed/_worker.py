"""One rank of the multi-process tests (launched like torchrun: RANK, WORLD_SIZE, MASTER_ADDR/PORT).

    python -m tests.distributed._worker solve OUT_DIR
    python -m tests.distributed._worker extract OUT_DIR [RUN_DIR]

Writes its results under OUT_DIR (.npy / .json, no pickle).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def solve_case(out: Path) -> None:
    from direct_opt.distributed import ShardedProblem, init_from_env, solve_sharded

    from .dist_testlib import instance

    comm = init_from_env("gloo")
    G, a, k, tau = instance()
    prob = ShardedProblem.from_arrays(G, a, k, tau, comm)
    res = solve_sharded(prob, "sca-exact")
    np.save(out / f"solve_rank{comm.rank}.npy", res.indices, allow_pickle=False)
    (out / f"solve_rank{comm.rank}.json").write_text(json.dumps(
        {"objective": res.objective, "upper_bound": res.upper_bound, "iterations": res.iterations,
         "feasible": res.feasible, "swaps": res.info["swaps"]}))
    try:
        solve_sharded(prob, "frank-wolfe")
    except ValueError as exc:
        (out / f"unsupported_rank{comm.rank}.txt").write_text(str(exc))


def extract_case(out: Path, run_dir: str | None) -> None:
    """With RUN_DIR: one extraction into it.  Without: in memory, fisher and hessian-lanczos."""
    from direct_opt.distributed import init_from_env

    from .dist_testlib import extract_small

    comm = init_from_env("gloo")
    cases = {"run": dict(run_dir=run_dir)} if run_dir else {"mem": {}, "hessian": dict(curvature="hessian-lanczos")}
    for name, kw in cases.items():
        stats = extract_small(**kw)
        np.savez(out / f"{name}_rank{comm.rank}.npz", **{k: np.asarray(v) for k, v in stats.arrays().items()})
        (out / f"{name}_checksum_rank{comm.rank}.txt").write_text(stats.checksum())
    if not run_dir:  # rank 1 with another seed: every rank must refuse
        try:
            extract_small(seed=5 + comm.rank)
        except ValueError as exc:
            (out / f"mismatch_rank{comm.rank}.txt").write_text(str(exc))


if __name__ == "__main__":
    mode, out = sys.argv[1], Path(sys.argv[2])
    if mode == "solve":
        solve_case(out)
    else:
        extract_case(out, sys.argv[3] if len(sys.argv) > 3 else None)
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
