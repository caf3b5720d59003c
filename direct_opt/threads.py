"""One fixed CPU thread count for every computation whose numbers we promise.

A floating-point sum depends on its order. torch's CPU kernels split the summed dimension of
some operations across the intra-op threads (MKL's GEMM does so for tall-skinny products such
as the sketch ``g @ R^T`` and weight gradients; parallel reductions split long sums into one
partial sum per thread), and a threaded BLAS does the same inside LAPACK's eigendecomposition
(whose eigenvectors for a repeated eigenvalue, e.g. the null space of a low-rank Fisher, are
then a different basis). With the default thread count (= the number of cores) the last bits
of a sketch, an eigenbasis, a loss or a trained weight would depend on the machine's core
count, and the difference grows through training.

Gradient extraction (:func:`direct_opt.extract.extract_stats`), pretraining, annealing and
loss evaluation (:mod:`direct_opt.lm.train`) therefore run at :data:`REPRODUCIBLE_THREADS`
intra-op threads and BLAS threads and restore the caller's settings afterwards. The same inputs and seed then
give the same bits on any core count and any ``torch.set_num_threads`` / ``OMP_NUM_THREADS``
setting. CPUs with another instruction set (e.g. AVX2 vs AVX-512) may still differ in the last
bits, because MKL picks its kernels by instruction set. ``ExtractConfig(threads=None)`` opts
out for extraction (faster on many cores, at the price of thread-count-dependent last bits).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, TypeVar

#: intra-op threads of the reproducible computations (1: the only count every machine has).
REPRODUCIBLE_THREADS = 1

F = TypeVar("F", bound=Callable[..., Any])


_depth = 0  # > 0 inside a fixed_threads block (nested blocks change nothing)


@contextlib.contextmanager
def fixed_threads(n: int | None = REPRODUCIBLE_THREADS) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads and ``n`` BLAS threads (numpy's OpenBLAS
    or MKL, through threadpoolctl); restore the previous counts after. ``n=None`` changes nothing.
    """
    global _depth
    if n is None or _depth:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    _depth += 1
    try:
        with threadpool_limits(limits=int(n), user_api="blas"):
            torch.set_num_threads(int(n))
            yield
    finally:
        torch.set_num_threads(before)
        _depth -= 1


def reproducible(fn: F) -> F:
    """Decorator: run ``fn`` under :func:`fixed_threads` (:data:`REPRODUCIBLE_THREADS`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with fixed_threads(REPRODUCIBLE_THREADS):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
