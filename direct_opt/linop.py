"""ColumnOperator: products with the flat-coordinate matrix G (r, N), wherever G lives.

Every solver touches G only through this object, so the same solver code runs on an
in-memory numpy array, a read-only memory map streamed in column blocks (float16 /
float32 on disk), or a torch tensor on CPU or CUDA.  Inputs and outputs are float64
numpy vectors; the heavy products run in G's own precision (at least float32).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Stream a memory-mapped / half-precision G in blocks of about this many bytes (as float32).
DEFAULT_BLOCK_BYTES = 256 << 20


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


class ColumnOperator:
    """Matrix-vector products with G (r, N).

    Args:
        G: numpy array / np.memmap (r, N) or a torch tensor (r, N) on any device.
        block_cols: columns per streamed block (default: about 256 MiB of float32);
            used when G is a memory map or stored in half precision.
    """

    def __init__(self, G: Any, block_cols: int | None = None) -> None:
        self.G = G
        self.is_torch = _is_torch(G)
        self.r, self.n = int(G.shape[0]), int(G.shape[1])
        if self.is_torch:
            import torch

            self._torch = torch
            self.device = G.device
            self._tdtype = G.dtype if G.dtype in (torch.float32, torch.float64) else torch.float32
            self.streamed = False
        else:
            self.device = "cpu"
            self._dtype = np.float64 if G.dtype == np.float64 else np.float32
            self.streamed = isinstance(G, np.memmap) or G.dtype != self._dtype
        if block_cols is None:
            block_cols = max(1, DEFAULT_BLOCK_BYTES // (4 * max(1, self.r)))
        self.block_cols = int(block_cols)
        self._col_sq: np.ndarray | None = None
        self._col_norms: np.ndarray | None = None
        self._gram: np.ndarray | None = None

    # ---------------------------------------------------------------- blocks
    def _blocks(self):
        """Yield (start, stop, block) with block an (r, stop-start) array in compute precision."""
        if not self.streamed:
            yield 0, self.n, self.G
            return
        for s in range(0, self.n, self.block_cols):
            e = min(self.n, s + self.block_cols)
            yield s, e, np.asarray(self.G[:, s:e], dtype=self._dtype)

    def _to_t(self, v: np.ndarray):
        return self._torch.as_tensor(v, dtype=self._tdtype, device=self.device)

    # -------------------------------------------------------------- products
    def matvec(self, w: np.ndarray) -> np.ndarray:
        """G @ w: (N,) -> (r,) float64."""
        if self.is_torch:
            return (self.G.to(self._tdtype) @ self._to_t(w)).double().cpu().numpy()
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
        """G^T @ p: (r,) -> (N,) float64."""
        if self.is_torch:
            return (self.G.to(self._tdtype).T @ self._to_t(p)).double().cpu().numpy()
        out = np.empty(self.n, dtype=np.float64)
        for s, e, B in self._blocks():
            out[s:e] = B.T @ p.astype(B.dtype, copy=False)
        return out

    def columns(self, idx: np.ndarray) -> np.ndarray:
        """G[:, idx] as float64 (r, len(idx))."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.is_torch:
            t = self._torch.as_tensor(idx, device=self.device)
            return self.G[:, t].double().cpu().numpy()
        return np.asarray(self.G[:, idx], dtype=np.float64)

    def col_sum(self, idx: np.ndarray) -> np.ndarray:
        """Sum of the selected columns, float64 (r,)."""
        if len(idx) == 0:
            return np.zeros(self.r)
        return self.columns(np.sort(np.asarray(idx))).sum(axis=1)

    # ------------------------------------------------------------ summaries
    def col_sq_norms(self) -> np.ndarray:
        """||g_i||^2 for every column, float64 (N,) (cached)."""
        if self._col_sq is None:
            if self.is_torch:
                G = self.G.to(self._tdtype)
                self._col_sq = (G * G).sum(0).double().cpu().numpy()
            else:
                out = np.empty(self.n)
                for s, e, B in self._blocks():
                    out[s:e] = np.einsum("ij,ij->j", B, B, dtype=np.float64)
                self._col_sq = out
        return self._col_sq

    def col_norms(self) -> np.ndarray:
        """||g_i|| for every column (N,) (cached)."""
        if self._col_norms is None:
            self._col_norms = np.sqrt(self.col_sq_norms())
        return self._col_norms

    def gram(self) -> np.ndarray:
        """G G^T, float64 (r, r) (cached; one streamed pass)."""
        if self._gram is None:
            if self.is_torch:
                G = self.G.to(self._tdtype)
                self._gram = (G @ G.T).double().cpu().numpy()
            else:
                gram = np.zeros((self.r, self.r))
                for _, _, B in self._blocks():
                    gram += (B @ B.T).astype(np.float64)
                self._gram = gram
        return self._gram
