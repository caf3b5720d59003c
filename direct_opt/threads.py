"""One fixed torch CPU thread count for every computation whose numbers we promise.

A floating-point sum depends on its order. torch's CPU kernels split the summed dimension of
some operations across the intra-op threads (MKL's GEMM does so for tall-skinny products such
as the sketch ``g @ R^T`` and weight gradients; parallel reductions split long sums into one
partial sum per thread), so with the default thread count (= the number of cores) the last bits
of a sketch, a loss or a trained weight depend on the machine's core count, and the difference
grows through training.

Gradient extraction (:func:`direct_opt.extract.extract_stats`), pretraining, annealing and
loss evaluation (:mod:`direct_opt.lm.train`) therefore run at :data:`REPRODUCIBLE_THREADS`
intra-op threads and restore the caller's setting afterwards. The same inputs and seed then
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


@contextlib.contextmanager
def torch_threads(n: int | None = REPRODUCIBLE_THREADS) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``; restore the previous count after.

    ``n=None`` leaves torch's setting alone.
    """
    import torch

    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def reproducible(fn: F) -> F:
    """Decorator: run ``fn`` under :func:`torch_threads` (:data:`REPRODUCIBLE_THREADS`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch_threads(REPRODUCIBLE_THREADS):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
