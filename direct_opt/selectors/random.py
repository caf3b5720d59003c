"""``random``: the uniform baseline every other selector must beat."""

from __future__ import annotations

import numpy as np

from .base import Pick, SelectorInputs, register_selector


@register_selector("random", needs_stats=False)
def random_selector(inp: SelectorInputs) -> Pick:
    """Uniform K-subset of the pool: ``np.random.default_rng(seed).choice(N, K, replace=False)``.

    Needs only K and N (from ``stats``, ``pool`` or ``n=``).
    """
    if inp.n is None:
        raise inp.missing_error("the pool size N (stats, pool or n=)")
    idx = np.random.default_rng(inp.seed).choice(inp.n, size=inp.k, replace=False)
    return Pick(np.sort(idx).astype(np.int64), {"rule": "uniform without replacement"})
