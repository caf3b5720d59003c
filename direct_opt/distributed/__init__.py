"""Multi-process extraction and solving over ``torch.distributed`` (gloo on CPU, NCCL on GPU).

* :class:`Comm`, :func:`init_from_env` — the few collectives everything uses;
* :class:`ShardedProblem`, :func:`solve_sharded` — ``sca-exact`` over column blocks of G;
* distributed extraction: ``extract_stats`` under ``torchrun`` (see docs/scaling.md).
"""

from .comm import Comm, init_from_env
from .solve import SUPPORTED_BACKENDS, ShardedProblem, dist_lmo, dist_top_k, shard_range, solve_sharded

__all__ = ["Comm", "SUPPORTED_BACKENDS", "ShardedProblem", "dist_lmo", "dist_top_k", "init_from_env",
           "shard_range", "solve_sharded"]
