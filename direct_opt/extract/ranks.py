"""The pieces :func:`direct_opt.extract.extract_stats` uses when it runs on several ranks.

Under ``torchrun --nproc-per-node P`` (or any initialised ``torch.distributed`` group):

* validation: rank ``r`` sketches validation batches r, r+P, ...; the (M, k) sketches are
  gathered in batch order and the Fisher H̃ = ZᵀZ/M and its eigenbasis are formed from
  them exactly as one process would (then broadcast from rank 0, so every rank uses the
  same bytes).  Gathering the sketches instead of all-reducing partial k×k Fishers keeps
  the result bitwise identical to a single process: a different summation order changes
  the last bits of H̃, and when k > M the eigenvectors of its null space — most of the
  flat directions — are then arbitrary.  (M·k numbers are sent; for M < k that is less
  than one k×k all-reduce.)  ``hessian-lanczos`` curvature is computed by rank 0 and
  broadcast.
* pool: rank ``r`` sketches pool batches r, r+P, ... and writes them as ordinary shards
  ``shards/pool_NNNNNN.npy`` of the shared run directory (resumable per batch: a relaunch
  skips the shards on disk); then every rank reads all shards (or, without a run
  directory, receives them by all-gather) and forms the same GradientStats; rank 0 saves
  them and writes ``progress.json``; only rank 0 takes the directory lock.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import ExtractionError
from ..distributed.comm import Comm, init_from_env


def resolve_comm(comm: Comm | None) -> Comm | None:
    """The Comm to extract with: ``comm`` if given, else torch.distributed's default group when
    it is (or, under torchrun, can be) initialised with more than one rank; None for one process."""
    if comm is not None:
        return comm if comm.distributed else None
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return None
    if not dist.is_available():
        return None
    if dist.is_initialized():
        c = Comm.from_torch()
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        c = init_from_env()
    else:
        return None
    return c if c.distributed else None


def check_same_header(header: Mapping[str, Any], comm: Comm | None) -> None:
    """Raise ExtractionError on every rank unless all ranks pass the same config, model and data."""
    if comm is None:
        return
    import hashlib

    digest = hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode()).digest()
    words = np.frombuffer(digest, dtype=">i8").astype(np.int64)
    table = comm.allgather_fixed(words)
    differ = [r for r in range(comm.world) if not np.array_equal(table[r], table[0])]
    if differ:
        raise ExtractionError(
            f"ranks {differ} pass a different config, model or data than rank 0 (run header fingerprints "
            "differ); under torchrun every rank must pass the same model, samples and ExtractConfig."
        )


def my_batches(n_batches: int, comm: Comm | None) -> list[int]:
    """Batch indices this rank computes (round robin: b % world == rank)."""
    if comm is None:
        return list(range(n_batches))
    return [b for b in range(n_batches) if b % comm.world == comm.rank]


def gather_batches(parts: Mapping[int, np.ndarray], n_batches: int, comm: Comm | None,
                   dtype: Any = np.float32) -> np.ndarray:
    """Concatenate the per-batch row blocks (B_b, c) of every rank in batch order, as ``dtype``
    (values travel as float64, so float32 rows arrive bit for bit)."""
    if comm is None:
        return np.concatenate([parts[b] for b in range(n_batches)]).astype(dtype, copy=False)
    mine = my_batches(n_batches, comm)
    cols = int(comm.max(np.int64(max([parts[b].shape[1] for b in mine], default=0))))
    flat = np.concatenate([parts[b].reshape(-1) for b in mine]) if mine else np.zeros(0)
    all_sizes = comm.allgather(np.array([parts[b].shape[0] for b in mine], dtype=np.int64))
    all_rows = comm.allgather(flat.astype(np.float64))
    blocks: dict[int, np.ndarray] = {}
    for r in range(comm.world):
        pos = 0
        for b, nb in zip(my_batches(n_batches, Comm(r, comm.world)), all_sizes[r]):
            blocks[b] = all_rows[r][pos : pos + nb * cols].reshape(nb, cols)
            pos += nb * cols
    return np.concatenate([blocks[b] for b in range(n_batches)]).astype(dtype)


def broadcast_text(text: str | None, comm: Comm) -> str:
    """Rank 0's string on every rank (others pass None)."""
    code = None if comm.rank != 0 else np.frombuffer((text or "").encode(), dtype=np.uint8).astype(np.int64)
    n = int(comm.broadcast(np.array([0 if code is None else code.size]), 0, (1,), np.int64)[0])
    if n == 0:
        return ""
    return comm.broadcast(code, 0, (n,), np.int64).astype(np.uint8).tobytes().decode()


def share_arrays(arrays: dict[str, np.ndarray] | None, info: dict[str, Any] | None, comm: Comm
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Rank 0's (arrays, JSON info) on every rank (dtypes kept; others pass None)."""
    meta_text = None
    if comm.rank == 0:
        assert arrays is not None and info is not None
        meta_text = json.dumps({"info": info, "arrays": {k: np.asarray(v).dtype.str for k, v in arrays.items()}},
                               default=str)
    meta = json.loads(broadcast_text(meta_text, comm))
    out = {}
    for name, dt in sorted(meta["arrays"].items()):
        src = None if arrays is None else np.asarray(arrays[name])
        out[name] = comm.broadcast(src, 0).astype(np.dtype(dt))
    return out, meta["info"]


def compute_on_rank0(fn: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]], comm: Comm
                     ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Run ``fn`` on rank 0 only and share its result with every rank."""
    if comm.rank == 0:
        arrays, info = fn()
        return share_arrays(arrays, info, comm)
    return share_arrays(None, None, comm)


def read_pool(out: Any, ranges: Sequence[tuple[int, int]], cols: int, comm: Comm) -> np.ndarray:
    """After every rank wrote its shards: the whole (N, cols) pool table read from the run directory."""
    comm.barrier()
    return np.concatenate([out.load_shard(b, e - s, cols) for b, (s, e) in enumerate(ranges)])


def make_output_dir(path: str | os.PathLike, header: Mapping[str, Any], comm: Comm | None) -> Any:
    """An OutputDir (one process) or a RankOutputDir (several ranks sharing ``path``)."""
    from .shards import OutputDir

    if comm is None:
        return OutputDir(path, header)
    return _rank_output_dir_class()(path, header, comm)


def _rank_output_dir_class() -> type:
    from .shards import OutputDir

    class RankOutputDir(OutputDir):
        """The run directory seen by one rank: rank 0 locks it, checks/writes the header and
        progress and saves the curvature; every rank writes its own pool shards."""

        def __init__(self, path: str | os.PathLike, header: Mapping[str, Any], comm: Comm) -> None:
            super().__init__(path, header)
            self.comm = comm

        def __enter__(self) -> "RankOutputDir":
            err: Exception | None = None
            if self.comm.rank == 0:
                try:
                    super().__enter__()
                except Exception as exc:  # tell the other ranks, then raise here
                    err = exc
            msg = broadcast_text(f"{type(err).__name__}: {err}" if err is not None else "", self.comm)
            if err is not None:
                raise err
            if msg:
                raise ExtractionError(f"rank 0 could not open the run directory {self.path}: {msg}")
            return self

        def __exit__(self, *exc: Any) -> None:
            if self.comm.rank == 0:
                super().__exit__(*exc)

        def write_progress(self, **fields: Any) -> None:
            if self.comm.rank == 0:
                super().write_progress(**fields, world=self.comm.world)

        def save_curvature(self, arrays: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> None:
            if self.comm.rank == 0:
                super().save_curvature(arrays, info)

    return RankOutputDir
