"""A small collective-communication layer over ``torch.distributed`` (or one process).

Everything the distributed solver and the distributed extraction exchange is a handful
of float64 / int64 numbers or short vectors, so one wrapper with a few verbs suffices:
``sum``, ``max``, ``min``, ``allgather`` (variable-length 1-D arrays) and ``broadcast``.
With ``torch.distributed`` not initialised (or world size 1) the same object works in a
single process, so every distributed code path also runs — and is tested — serially.

NCCL needs CUDA tensors: the wrapper keeps its tensors on ``device`` (``cuda:<local
rank>`` under NCCL, CPU under gloo).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..reduction import Reduction


def init_from_env(backend: str | None = None) -> "Comm":
    """Initialise ``torch.distributed`` from torchrun's environment (RANK, WORLD_SIZE, ...)
    if it is not initialised yet, and return a :class:`Comm`.  Without torchrun's variables
    it returns a single-process Comm.  ``backend``: "nccl" | "gloo" | None (NCCL when CUDA
    is available, else gloo)."""
    import torch
    import torch.distributed as dist

    if not dist.is_available() or "WORLD_SIZE" not in os.environ:
        return Comm()
    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return Comm.from_torch()


class Comm(Reduction):
    """Collectives over a process group (or a single process when ``group`` is None): the
    ``torch.distributed`` :class:`~direct_opt.reduction.Reduction`.

    Args:
        rank, world: this process's rank and the number of processes.
        group: a ``torch.distributed`` process group, or None for the default one
            (ignored when ``world == 1``).
        device: where the communication tensors live (CUDA for NCCL).
    """

    def __init__(self, rank: int = 0, world: int = 1, group: Any = None, device: Any = "cpu") -> None:
        self.rank, self.world, self.group, self.device = int(rank), int(world), group, device

    @classmethod
    def from_torch(cls, group: Any = None) -> "Comm":
        """A Comm over an initialised ``torch.distributed`` group (default group if None)."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        device = "cpu"
        if dist.get_backend(group) == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        return cls(dist.get_rank(group), dist.get_world_size(group), group, device)

    # ------------------------------------------------------------ reductions
    def _reduce(self, x: Any, op: str) -> np.ndarray:
        arr = np.asarray(x)
        if not self.distributed:
            return arr.copy() if arr.ndim else arr[()]
        import torch
        import torch.distributed as dist

        dtype = torch.int64 if arr.dtype.kind in "biu" else torch.float64
        t = torch.as_tensor(np.ascontiguousarray(arr), dtype=dtype).to(self.device)
        dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op],
                        group=self.group)
        out = t.cpu().numpy().reshape(arr.shape)  # (np.ascontiguousarray makes 0-d arrays 1-d)
        return out if arr.ndim else out[()]

    def sum(self, x: Any) -> Any:
        """Element-wise sum over ranks (float64, or int64 for integer input)."""
        return self._reduce(x, "sum")

    def max(self, x: Any) -> Any:
        return self._reduce(x, "max")

    def min(self, x: Any) -> Any:
        return self._reduce(x, "min")

    # -------------------------------------------------------------- gathers
    def allgather(self, x: np.ndarray) -> list[np.ndarray]:
        """Every rank's 1-D array (lengths may differ), in rank order (float64 or int64)."""
        x = np.asarray(x).ravel()
        if not self.distributed:
            return [x.copy()]
        import torch
        import torch.distributed as dist

        sizes = self.allgather_fixed(np.array([x.size], dtype=np.int64)).reshape(-1)
        m = int(sizes.max())
        dtype = torch.int64 if x.dtype.kind in "biu" else torch.float64
        buf = torch.zeros(m, dtype=dtype)
        buf[: x.size] = torch.as_tensor(x, dtype=dtype)
        out = [torch.empty(m, dtype=dtype, device=self.device) for _ in range(self.world)]
        dist.all_gather(out, buf.to(self.device), group=self.group)
        return [o[: int(s)].cpu().numpy() for o, s in zip(out, sizes)]

    def allgather_fixed(self, x: np.ndarray) -> np.ndarray:
        """(world, *x.shape) stack of an equally-shaped array from every rank."""
        x = np.asarray(x)
        if not self.distributed:
            return x[None].copy()
        import torch
        import torch.distributed as dist

        dtype = torch.int64 if x.dtype.kind in "biu" else torch.float64
        t = torch.as_tensor(np.ascontiguousarray(x), dtype=dtype).to(self.device)
        out = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(out, t, group=self.group)
        return np.stack([o.cpu().numpy() for o in out])

    def broadcast(self, x: np.ndarray | None, src: int = 0, shape: tuple[int, ...] | None = None,
                  dtype: Any = np.float64) -> np.ndarray:
        """Rank ``src``'s array on every rank (others pass None plus ``shape``, or the shape is sent too)."""
        if not self.distributed:
            return np.asarray(x)
        import torch
        import torch.distributed as dist

        if shape is None:
            nd = self.broadcast(np.array([np.asarray(x).ndim]) if self.rank == src else None, src, (1,), np.int64)
            shp = self.broadcast(np.array(np.asarray(x).shape, dtype=np.int64) if self.rank == src else None,
                                 src, (int(nd[0]),), np.int64)
            shape = tuple(int(s) for s in shp)
        tdt = torch.int64 if np.dtype(dtype).kind in "biu" else torch.float64
        if self.rank == src:
            t = torch.as_tensor(np.ascontiguousarray(x), dtype=tdt).to(self.device)
        else:
            t = torch.empty(shape, dtype=tdt, device=self.device)
        dist.broadcast(t, src=src, group=self.group)
        return t.cpu().numpy()

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier(group=self.group)
