"""ColumnOperator: products with the flat-coordinate matrix G (r, N), wherever G lives.

Every solver touches G only through this object, so the same solver code runs on an
in-memory numpy array, a read-only memory map streamed in column blocks (float16 /
float32 on disk), or a torch tensor on CPU or CUDA.  Inputs and outputs are float64
numpy vectors; the heavy products run in G's own precision (at least float32).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

# Stream a memory-mapped / half-precision G in blocks of about this many bytes (as float32).
DEFAULT_BLOCK_BYTES = 256 << 20
# A weight vector with fewer nonzeros than this fraction of N is applied by gathering columns.
SPARSE_FRACTION = 0.05


def read_only_tensor(arr: np.ndarray) -> Any:
    """A CPU torch tensor sharing ``arr``'s memory, for reading only.

    A read-only memory map (``GradientStats.load(mmap=True)``) gives non-writable arrays; torch
    shares them but warns ("The given NumPy array is not writable"). Every caller here only
    reads the tensor, so that one warning is silenced; arrays with negative strides are copied.
    """
    import torch

    if not all(st >= 0 for st in arr.strides):
        arr = np.ascontiguousarray(arr)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        return torch.from_numpy(arr)


def _upcast(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """block (a memmap slice, possibly half precision) as a contiguous array of ``dtype``.

    numpy's float16 -> float32 conversion is scalar (about 0.6 GB/s); torch's is vectorised
    (~10x faster), so it is used when torch is importable.  Same values either way.
    """
    if block.dtype == np.float16 and dtype == np.float32:
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is optional for the solvers
            return np.asarray(block, dtype=dtype)
        src = read_only_tensor(block)
        return src.to(torch.float32, memory_format=torch.contiguous_format).numpy()
    return np.ascontiguousarray(block, dtype=dtype)


def to_device(G: Any, device: Any, chunk_bytes: int = DEFAULT_BLOCK_BYTES) -> Any:
    """Copy an (r, N) numpy array / memory map to a torch tensor on ``device`` in column chunks.

    The storage dtype is kept (float16 stays float16), so the device holds one copy of G and
    the host never materialises more than one chunk.  Returns the torch tensor.
    """
    import torch

    G_dtype = getattr(torch, np.dtype(G.dtype).name)
    r, n = int(G.shape[0]), int(G.shape[1])
    out = torch.empty((r, n), dtype=G_dtype, device=device)
    step = max(1, chunk_bytes // max(1, r * np.dtype(G.dtype).itemsize))
    for s in range(0, n, step):
        e = min(n, s + step)
        out[:, s:e].copy_(read_only_tensor(np.ascontiguousarray(G[:, s:e])))
    return out


def device_fits(G: Any, device: Any, headroom: float = 0.8) -> bool:
    """Whether G (its storage bytes plus one float32 block) fits in ``device``'s free memory."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(dev)
    need = int(np.prod(G.shape)) * np.dtype(G.dtype).itemsize + DEFAULT_BLOCK_BYTES
    return need <= headroom * free


def use_device(problem: Any, device: Any, resident: bool | None = None, block_cols: int | None = None) -> Any:
    """Make ``problem``'s products with G run on a torch ``device`` (e.g. ``"cuda"``).

    ``resident=True`` copies G to the device once (:func:`to_device`, storage dtype kept);
    ``resident=False`` keeps G where it is (e.g. a memory map) and streams column blocks to
    the device for every product; ``None`` picks resident when G fits (:func:`device_fits`).
    Returns the problem (its ``op`` is replaced; G itself is not changed).
    """
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        from .errors import InvalidParameterError

        raise InvalidParameterError(f"device={device!r} is not a torch device ({exc}); use 'cpu', 'cuda' or 'cuda:N'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        from .errors import InvalidParameterError

        raise InvalidParameterError(f"device={device!r}: CUDA is not available here; use device='cpu' or None.")
    G = problem.G
    if _is_torch(G):
        G = G if str(G.device) == str(device) else G.to(device)
        problem.op = ColumnOperator(G, block_cols=block_cols)
        return problem
    if resident is None:
        resident = device_fits(G, device)
    if resident:
        problem.op = ColumnOperator(to_device(G, device), block_cols=block_cols)
    else:
        problem.op = ColumnOperator(G, block_cols=block_cols, device=device)
    return problem


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


class ColumnOperator:
    """Matrix-vector products with G (r, N); ``ColumnOperator(G, ...)`` returns the operator
    for where G lives (see :func:`make_operator`).

    Args:
        G: numpy array / np.memmap (r, N) or a torch tensor (r, N) on any device.
        block_cols: columns per streamed block (default: about 256 MiB of float32);
            used when G is a memory map or stored in half precision.
        device: only for a numpy / memory-mapped G: a torch device to which column blocks
            are streamed for every product (G larger than the device memory).  To hold G on
            the device instead, pass a torch tensor (see :func:`to_device`, :func:`use_device`).

    Memory: a half-precision G (numpy or torch) is never upcast as a whole; products run
    block by block, so at most one float32 block (``block_cols`` columns) exists besides G.

    The kinds: :class:`HostOperator` (in-memory numpy), :class:`StreamedOperator` (memory map
    or half precision, column blocks upcast on the fly), :class:`TorchOperator` (a torch
    tensor, e.g. resident on CUDA), :class:`HostToDeviceOperator` (numpy blocks shipped to a
    torch device per product).  Inputs and outputs are float64 numpy vectors.
    """

    is_torch = False  # products run in torch
    streamed = False  # products run block by block (sparse weight vectors gather their columns)
    host_to_device = False
    device: Any = "cpu"

    def __new__(cls, G: Any = None, block_cols: int | None = None, device: Any = None) -> "ColumnOperator":
        if cls is ColumnOperator:
            cls = operator_class(G, device)
        return super().__new__(cls)

    def __init__(self, G: Any, block_cols: int | None = None, device: Any = None) -> None:
        self.G = G
        self.r, self.n = int(G.shape[0]), int(G.shape[1])
        if block_cols is None:
            block_cols = max(1, DEFAULT_BLOCK_BYTES // (4 * max(1, self.r)))
        self.block_cols = int(block_cols)
        self._col_sq: np.ndarray | None = None
        self._col_norms: np.ndarray | None = None
        self._gram: np.ndarray | None = None

    # ------------------------------------------------------ per kind
    def _blocks(self):
        """Yield (start, stop, block): (r, stop-start) column blocks in compute precision."""
        raise NotImplementedError

    def _dense_matvec(self, w: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def rmatvec(self, p: np.ndarray) -> np.ndarray:
        """G^T @ p: (r,) -> (N,) float64."""
        raise NotImplementedError

    def col_sq_norms(self) -> np.ndarray:
        """||g_i||^2 for every column, float64 (N,) (cached)."""
        raise NotImplementedError

    def gram(self) -> np.ndarray:
        """G G^T, float64 (r, r) (cached; one streamed pass)."""
        raise NotImplementedError

    def columns(self, idx: np.ndarray) -> np.ndarray:
        """G[:, idx] as float64 (r, len(idx))."""
        idx = np.asarray(idx, dtype=np.int64)
        return np.asarray(self.G[:, idx], dtype=np.float64)

    def _gather(self, idx: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """sum_j weights_j G[:, idx_j] in float64 (r,), gathering at most one block of columns at a time."""
        out = np.zeros(self.r)
        idx = np.asarray(idx, dtype=np.int64)
        for s in range(0, idx.size, self.block_cols):
            cols = self.columns(idx[s : s + self.block_cols])
            out += cols.sum(axis=1) if weights is None else cols @ weights[s : s + self.block_cols]
        return out

    # ------------------------------------------------------ shared
    def matvec(self, w: np.ndarray) -> np.ndarray:
        """G @ w: (N,) -> (r,) float64."""
        if self.streamed and np.count_nonzero(w) < SPARSE_FRACTION * self.n:  # count: no index array
            nz_all = np.flatnonzero(w)
            return self._gather(nz_all, np.asarray(w, dtype=np.float64)[nz_all])
        return self._dense_matvec(w)

    def col_sum(self, idx: np.ndarray) -> np.ndarray:
        """Sum of the selected columns, float64 (r,) (gathered in blocks: no (r, len(idx)) copy)."""
        if len(idx) == 0:
            return np.zeros(self.r)
        return self._gather(np.sort(np.asarray(idx)))

    def cols_rmatvec(self, idx: np.ndarray, p: np.ndarray) -> np.ndarray:
        """G[:, idx]^T p, float64 (len(idx),), one block of columns at a time."""
        idx = np.asarray(idx, dtype=np.int64)
        out = np.empty(idx.size)
        for s in range(0, idx.size, self.block_cols):
            out[s : s + self.block_cols] = self.columns(idx[s : s + self.block_cols]).T @ p
        return out

    def cols_matvec(self, idx: np.ndarray, d: np.ndarray) -> np.ndarray:
        """G[:, idx] @ d, float64 (r,), one block of columns at a time."""
        nz = np.flatnonzero(d)
        return self._gather(np.asarray(idx, dtype=np.int64)[nz], np.asarray(d, dtype=np.float64)[nz])

    def col_norms(self) -> np.ndarray:
        """||g_i|| for every column (N,) (cached)."""
        if self._col_norms is None:
            self._col_norms = np.sqrt(self.col_sq_norms())
        return self._col_norms


class HostOperator(ColumnOperator):
    """An in-memory numpy G (float32 / float64): products with numpy (BLAS) in one piece."""

    def __init__(self, G: Any, block_cols: int | None = None, device: Any = None) -> None:
        super().__init__(G, block_cols)
        self._dtype = np.float64 if G.dtype == np.float64 else np.float32

    def _blocks(self):
        yield 0, self.n, self.G

    def _dense_matvec(self, w: np.ndarray) -> np.ndarray:
        out = np.zeros(self.r, dtype=np.float64)
        for s, e, B in self._blocks():
            ws = w[s:e]
            nz = np.flatnonzero(ws)
            if nz.size == 0:
                continue
            if nz.size < 0.05 * (e - s):  # sparse selection: touch only the needed columns
                out += np.asarray(B[:, nz], dtype=np.float64) @ ws[nz]
            else:
                out += (B @ ws.astype(B.dtype, copy=False)).astype(np.float64)
        return out

    def rmatvec(self, p: np.ndarray) -> np.ndarray:
        out = np.empty(self.n, dtype=np.float64)
        for s, e, B in self._blocks():
            out[s:e] = B.T @ p.astype(B.dtype, copy=False)
        return out

    def col_sq_norms(self) -> np.ndarray:
        if self._col_sq is None:
            out = np.empty(self.n)
            for s, e, B in self._blocks():
                out[s:e] = np.einsum("ij,ij->j", B, B, dtype=np.float64)
            self._col_sq = out
        return self._col_sq

    def gram(self) -> np.ndarray:
        if self._gram is None:
            gram = np.zeros((self.r, self.r))
            try:  # torch's B B^T is several times faster than numpy's on CPU
                import torch
            except ImportError:  # pragma: no cover - torch is optional for the solvers
                torch = None
            from .threads import fixed_threads

            for _, _, B in self._blocks():
                if torch is not None and B.dtype in (np.float32, np.float64) and B.flags.c_contiguous:
                    with fixed_threads():  # one summation order on every machine
                        tB = read_only_tensor(B)
                        gram += (tB @ tB.T).double().numpy()
                else:
                    gram += (B @ B.T).astype(np.float64)
            self._gram = gram
        return self._gram


class StreamedOperator(HostOperator):
    """A numpy memory map or half-precision G: column blocks upcast (float32) one at a time."""

    streamed = True

    def _blocks(self):
        for s in range(0, self.n, self.block_cols):
            e = min(self.n, s + self.block_cols)
            yield s, e, _upcast(self.G[:, s:e], self._dtype)


class TorchOperator(ColumnOperator):
    """A torch tensor G on any device (CPU or CUDA, resident): products in torch there, in
    float32 / float64 (a half-precision G is upcast block by block)."""

    is_torch = True

    def __init__(self, G: Any, block_cols: int | None = None, device: Any = None) -> None:
        super().__init__(G, block_cols)
        import torch

        self._torch = torch
        self._setup(device)

    def _setup(self, device: Any) -> None:
        torch, G = self._torch, self.G
        self.device = G.device
        self._tdtype = G.dtype if G.dtype in (torch.float32, torch.float64) else torch.float32
        self.streamed = G.dtype != self._tdtype

    def _blocks(self):
        for s in range(0, self.n, self.block_cols):  # views of a resident G, no copies
            e = min(self.n, s + self.block_cols)
            yield s, e, self.G[:, s:e].to(self._tdtype)

    def _to_t(self, v: np.ndarray):
        return self._torch.as_tensor(v, dtype=self._tdtype, device=self.device)

    def _dense_matvec(self, w: np.ndarray) -> np.ndarray:
        acc = self._torch.zeros(self.r, dtype=self._torch.float64, device=self.device)
        for s, e, B in self._blocks():
            acc += (B @ self._to_t(w[s:e])).double()
        return acc.cpu().numpy()

    def rmatvec(self, p: np.ndarray) -> np.ndarray:
        pt = self._to_t(p)
        if not self.streamed:
            return to_host((self.G.T @ pt).double())
        out_t = self._torch.empty(self.n, dtype=self._torch.float64, device=self.device)
        for s, e, B in self._blocks():
            out_t[s:e] = B.T @ pt
        return to_host(out_t)

    def columns(self, idx: np.ndarray) -> np.ndarray:
        t = self._torch.as_tensor(np.asarray(idx, dtype=np.int64), device=self.device)
        return self.G[:, t].double().cpu().numpy()

    def _gather(self, idx: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Gather and reduce on the device."""
        torch, bc = self._torch, self.block_cols
        idx = np.asarray(idx, dtype=np.int64)
        acc = torch.zeros(self.r, dtype=torch.float64, device=self.device)
        for s in range(0, idx.size, bc):
            cols = self.G[:, torch.as_tensor(idx[s : s + bc], device=self.device)].double()
            acc += cols.sum(1) if weights is None else cols @ torch.as_tensor(
                weights[s : s + bc], dtype=torch.float64, device=self.device)
        return acc.cpu().numpy()

    def col_sq_norms(self) -> np.ndarray:
        if self._col_sq is None:
            out_t = self._torch.empty(self.n, dtype=self._torch.float64, device=self.device)
            for s, e, B in self._blocks():
                out_t[s:e] = (B * B).sum(0, dtype=self._torch.float64)
            self._col_sq = to_host(out_t)
        return self._col_sq

    def gram(self) -> np.ndarray:
        if self._gram is None:
            acc = self._torch.zeros((self.r, self.r), dtype=self._torch.float64, device=self.device)
            for _, _, B in self._blocks():
                acc += (B @ B.T).double()
            self._gram = acc.cpu().numpy()
        return self._gram


class HostToDeviceOperator(TorchOperator):
    """A numpy / memory-mapped G whose column blocks are shipped to a torch ``device`` for
    every product (G larger than the device memory); column gathers stay on the host."""

    host_to_device = True
    streamed = True
    columns = ColumnOperator.columns
    _gather = ColumnOperator._gather

    def _setup(self, device: Any) -> None:
        torch, G = self._torch, self.G
        self.device = torch.device(device)
        self._tdtype = torch.float64 if G.dtype == np.float64 else torch.float32
        self._dtype = np.float64 if G.dtype == np.float64 else np.float32
        self.streamed = True

    def _blocks(self):
        for s in range(0, self.n, self.block_cols):
            e = min(self.n, s + self.block_cols)
            B = self.G[:, s:e]
            if B.dtype == np.float16:  # ship half precision, upcast on the device
                t = read_only_tensor(np.ascontiguousarray(B)).to(self.device, non_blocking=False)
                yield s, e, t.to(self._tdtype)
            else:
                yield s, e, read_only_tensor(_upcast(B, self._dtype)).to(self.device)


def operator_class(G: Any, device: Any = None) -> type[ColumnOperator]:
    """The operator kind for G: a torch tensor -> TorchOperator; numpy with ``device`` ->
    HostToDeviceOperator; a memory map or half precision -> StreamedOperator; else HostOperator."""
    if _is_torch(G):
        return TorchOperator
    if device is not None:
        return HostToDeviceOperator
    dtype = np.float64 if G.dtype == np.float64 else np.float32
    return StreamedOperator if isinstance(G, np.memmap) or G.dtype != dtype else HostOperator


def make_operator(G: Any, block_cols: int | None = None, device: Any = None) -> ColumnOperator:
    """The :class:`ColumnOperator` for G (the same as ``ColumnOperator(G, block_cols, device)``)."""
    return operator_class(G, device)(G, block_cols, device)


def to_host(t: Any) -> np.ndarray:
    """A torch tensor as a numpy array.  From CUDA: copied into a fresh page-locked (pinned)
    buffer, from torch's caching host allocator (several times the bandwidth of a pageable
    copy; the array owns its buffer).  A CPU tensor is returned as a view, like ``.numpy()``."""
    if t.device.type != "cuda":
        return t.detach().cpu().numpy()
    import torch

    buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    buf.copy_(t.detach())
    return buf.numpy()


class ReducedOperator:
    """G = [G_0 | G_1 | ... | G_{P-1}] spread over P processes by column blocks, seen from one
    of them: ``local`` is this process's :class:`ColumnOperator` and every product whose
    result is r-dimensional (G w, G G^T, column sums) is summed over ``reduction``; products
    whose result is per-column (G^T p, norms, columns) stay local.  With one process it is
    the local operator.  Every process must make the same calls in the same order."""

    def __init__(self, local: ColumnOperator, reduction: Any) -> None:
        self.local, self.red = local, reduction
        self.r, self.n = local.r, local.n
        self.block_cols, self.streamed = local.block_cols, local.streamed
        self.is_torch, self.device = local.is_torch, local.device
        self._gram: np.ndarray | None = None

    def matvec(self, w: np.ndarray) -> np.ndarray:
        return self.red.sum(self.local.matvec(w))

    def rmatvec(self, p: np.ndarray) -> np.ndarray:
        return self.local.rmatvec(p)

    def col_sum(self, idx: np.ndarray) -> np.ndarray:
        """Sum of the selected local columns over every process (each passes its own indices)."""
        return self.red.sum(self.local.col_sum(idx))

    def columns(self, idx: np.ndarray) -> np.ndarray:
        return self.local.columns(idx)

    def cols_rmatvec(self, idx: np.ndarray, p: np.ndarray) -> np.ndarray:
        return self.local.cols_rmatvec(idx, p)

    def col_sq_norms(self) -> np.ndarray:
        return self.local.col_sq_norms()

    def col_norms(self) -> np.ndarray:
        return self.local.col_norms()

    def gram(self) -> np.ndarray:
        if self._gram is None:
            self._gram = self.red.sum(self.local.gram())
        return self._gram
