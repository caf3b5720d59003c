"""Random projectors R (k x d): interchangeable objects chosen by name.

Every flat projector maps per-sample gradients ``g`` of shape (B, d) to sketches
``z = g R^T`` of shape (B, k). Randomness is *counter-seeded per block* of
``BLOCK = 1024`` parameter coordinates: block b of the matrix is generated from a
``torch.Generator`` seeded with a hash of (seed, salt, b). The matrix therefore depends
only on (seed, d, k, options) — not on the batch, the memory budget, the cache or the
sample. Generation runs on the CPU by default, so one seed gives one matrix on CPU and
CUDA (bit-identical entries; sketches then agree to float32 matmul tolerance, ~1e-6
relative). Generated chunks (Gaussian blocks, SJLT hash tables) are kept on the compute
device while they fit in ``cache_bytes`` (default 256 MiB; 0 disables the cache), so they
are generated once, not for every batch; chunks beyond the budget are regenerated block
by block for every *batch* (never per sample). Caching changes no value.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Callable

import numpy as np
import torch

from ..errors import InvalidParameterError, UnknownNameError

BLOCK = 1024  # parameter coordinates per seeded block (part of the matrix definition)


def derive_seed(seed: int, salt: str, index: int) -> int:
    """Deterministic 63-bit seed for block ``index`` of the stream named ``salt``."""
    salt_int = int.from_bytes(hashlib.sha256(salt.encode()).digest()[:4], "little")
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32, salt_int, int(index)])
    lo, hi = state.generate_state(2, dtype=np.uint32)
    return (int(hi) << 32 | int(lo)) & ((1 << 63) - 1)


class Projector:
    """Base class: ``project(g: (B, d)) -> (B, k)`` float32; ``describe()`` is JSON-safe."""

    name = "base"
    #: True when the pipeline must use the paper's one-sample-at-a-time loop.
    per_sample = False

    def __init__(self, dim: int, k: int, seed: int, device: torch.device | str = "cpu",
                 salt: str = "", max_chunk_bytes: int = 64 << 20, cache_bytes: int = 256 << 20) -> None:
        if k <= 0:
            raise InvalidParameterError(f"k_sketch={k} must be positive.")
        if dim <= 0:
            raise InvalidParameterError(f"the projector needs d > 0 coordinates, got {dim}.")
        self.dim, self.k, self.seed = int(dim), int(k), int(seed)
        self.device = torch.device(device)
        self.salt = salt or self.name
        # coordinates per compute chunk: a multiple of BLOCK (does not change the matrix)
        per_coord = max(1, self._bytes_per_coord())
        self.chunk = max(BLOCK, (max_chunk_bytes // per_coord) // BLOCK * BLOCK)
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int) or cache_bytes < 0:
            raise InvalidParameterError(f"cache_bytes={cache_bytes!r} must be an integer >= 0 (0: no cache).")
        self.cache_bytes = cache_bytes
        self._cache: dict[int, Any] = {}
        self._cached_bytes = 0
        self._seeds: dict[int, int] = {}

    def _cached(self, start: int, stop: int, make: Callable[[int, int], Any]) -> Any:
        """``make(start, stop)`` (tensors on the device), kept while the cache budget allows."""
        hit = self._cache.get(start)
        if hit is not None:
            return hit
        val = make(start, stop)
        parts = val if isinstance(val, tuple) else (val,)
        size = sum(t.numel() * t.element_size() for t in parts)
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[start] = val
            self._cached_bytes += size
        return val

    def _bytes_per_coord(self) -> int:
        return 4 * self.k

    def _generator(self, block: int, device: torch.device | None = None) -> torch.Generator:
        seed = self._seeds.get(block) if self.cache_bytes else None
        if seed is None:
            seed = derive_seed(self.seed, self.salt, block)
            if self.cache_bytes:  # block seeds are memoised with the cache (8 bytes each)
                self._seeds[block] = seed
        gen = torch.Generator(device=device or "cpu")
        gen.manual_seed(seed)
        return gen

    def project(self, g: torch.Tensor) -> torch.Tensor:
        """(B, d) gradients -> (B, k) sketches (float32)."""
        if g.ndim != 2 or g.shape[1] != self.dim:
            raise InvalidParameterError(f"{self.name} projector expects (B, {self.dim}) input, got {tuple(g.shape)}.")
        g = g.to(device=self.device, dtype=torch.float32)
        out = torch.zeros(g.shape[0], self.k, dtype=torch.float32, device=self.device)
        for start in range(0, self.dim, self.chunk):
            stop = min(self.dim, start + self.chunk)
            self._accumulate(out, g[:, start:stop], start, stop)
        return out

    def _accumulate(self, out: torch.Tensor, g: torch.Tensor, start: int, stop: int) -> None:
        raise NotImplementedError

    def matrix(self) -> torch.Tensor:
        """The explicit (d, k) matrix R^T (for tests and small d only)."""
        eye = torch.eye(self.dim, dtype=torch.float32, device=self.device)
        return self.project(eye)

    def describe(self) -> dict[str, Any]:
        """JSON-safe description recorded in the stats config."""
        return {"name": self.name, "dim": self.dim, "k": self.k, "seed": self.seed, "block": BLOCK}


class GaussianProjector(Projector):
    """Dense Gaussian R with i.i.d. N(0, 1/k) entries (the paper's sketch).

    Options: ``generator`` = ``"cpu"`` (default: identical matrix on every device) or
    ``"device"`` (generate on the compute device: much faster on GPU for huge d, but the
    matrix then depends on the device type).
    """

    name = "gaussian"

    def __init__(self, dim: int, k: int, seed: int, device: torch.device | str = "cpu",
                 generator: str = "cpu", salt: str = "", max_chunk_bytes: int = 64 << 20,
                 cache_bytes: int = 256 << 20) -> None:
        if generator not in ("cpu", "device"):
            raise UnknownNameError(f"unknown gaussian generator {generator!r}; known: cpu, device.")
        self.generator = generator
        super().__init__(dim, k, seed, device, salt or "gaussian", max_chunk_bytes, cache_bytes)

    def block_matrix(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of R^T, shape (stop - start, k), on the compute device."""
        parts = []
        scale = 1.0 / math.sqrt(self.k)
        gen_dev = self.device if self.generator == "device" else torch.device("cpu")
        for b in range(start // BLOCK, (stop - 1) // BLOCK + 1):
            b0, b1 = b * BLOCK, min(self.dim, (b + 1) * BLOCK)
            blk = torch.randn(b1 - b0, self.k, generator=self._generator(b, gen_dev), device=gen_dev)
            parts.append(blk[max(start, b0) - b0 : min(stop, b1) - b0])
        mat = torch.cat(parts, 0) if len(parts) > 1 else parts[0]
        return mat.to(self.device).mul_(scale)

    def _accumulate(self, out: torch.Tensor, g: torch.Tensor, start: int, stop: int) -> None:
        out.addmm_(g, self._cached(start, stop, self.block_matrix))

    def matrix(self) -> torch.Tensor:
        return self.block_matrix(0, self.dim)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "generator": self.generator, "entries": "N(0,1/k)"}


class PaperProjector(GaussianProjector):
    """The paper-faithful baseline: the same N(0,1/k) matrix, but the pipeline computes one
    sample at a time with plain autograd and regenerates the matrix for every sample."""

    name = "paper"
    per_sample = True

    def __init__(self, dim: int, k: int, seed: int, device: torch.device | str = "cpu",
                 generator: str = "cpu", max_chunk_bytes: int = 64 << 20) -> None:
        # salt "gaussian": the same matrix as the gaussian projector for the same seed;
        # no cache: the paper regenerates the matrix for every sample
        super().__init__(dim, k, seed, device, generator, "gaussian", max_chunk_bytes, cache_bytes=0)


class SJLTProjector(Projector):
    """Sparse JL: each coordinate is hashed to ``s`` rows (one per k/s segment, so the rows are
    distinct) with independent random signs ±1/sqrt(s). Cost O(B d s) per batch."""

    name = "sjlt"

    def __init__(self, dim: int, k: int, seed: int, device: torch.device | str = "cpu",
                 s: int = 4, max_chunk_bytes: int = 64 << 20, cache_bytes: int = 256 << 20) -> None:
        s = int(s)
        if not 1 <= s <= k:
            raise InvalidParameterError(f"sjlt needs 1 <= s <= k; got s={s}, k={k}.")
        self.s = s
        super().__init__(dim, k, seed, device, "sjlt", max_chunk_bytes, cache_bytes)
        bounds = [j * self.k // s for j in range(s + 1)]
        self._seg_start = torch.tensor(bounds[:-1], dtype=torch.int64)
        self._seg_len = torch.tensor([bounds[j + 1] - bounds[j] for j in range(s)], dtype=torch.int64)

    def _bytes_per_coord(self) -> int:
        return 64 * self.s  # (rows int64 + values) per coordinate and per sample, roughly

    def hashes(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows (stop-start, s) int64 and signed values (stop-start, s) float32 for coordinates start:stop."""
        rows, vals = [], []
        for b in range(start // BLOCK, (stop - 1) // BLOCK + 1):
            b0, b1 = b * BLOCK, min(self.dim, (b + 1) * BLOCK)
            gen = self._generator(b)
            u = torch.rand(b1 - b0, self.s, generator=gen, dtype=torch.float64)
            r = self._seg_start + torch.minimum((u * self._seg_len).long(), self._seg_len - 1)
            sign = torch.randint(0, 2, (b1 - b0, self.s), generator=gen).float().mul_(2).sub_(1)
            lo, hi = max(start, b0) - b0, min(stop, b1) - b0
            rows.append(r[lo:hi])
            vals.append(sign[lo:hi])
        scale = 1.0 / math.sqrt(self.s)
        return (torch.cat(rows).to(self.device), torch.cat(vals).mul_(scale).to(self.device))

    def _accumulate(self, out: torch.Tensor, g: torch.Tensor, start: int, stop: int) -> None:
        rows, vals = self._cached(start, stop, self.hashes)
        contrib = (g.unsqueeze(2) * vals.unsqueeze(0)).reshape(g.shape[0], -1)
        out.index_add_(1, rows.reshape(-1), contrib)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "s": self.s}


class BasisProjector(Projector):
    """Projection on explicit columns U (d, k): z = g U. Used with ``hessian-lanczos``,
    where the 'sketch' is the orthonormal basis of the top Hessian eigenvectors."""

    name = "basis"

    def __init__(self, basis: torch.Tensor, device: torch.device | str = "cpu", label: str = "basis") -> None:
        self.basis = basis.to(device=device, dtype=torch.float32)
        self.label = label
        super().__init__(int(basis.shape[0]), int(basis.shape[1]), 0, device, "basis", cache_bytes=0)

    def _accumulate(self, out: torch.Tensor, g: torch.Tensor, start: int, stop: int) -> None:
        out.addmm_(g, self.basis[start:stop])

    def matrix(self) -> torch.Tensor:
        return self.basis

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "k": self.k, "basis": self.label}
