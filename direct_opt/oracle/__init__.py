"""The feasible set as one object with two verbs, shared by every backend and the certificates.

* ``lmo(c)``   — linear maximisation oracle: a maximiser of c^T w over the set
  (FrankWolfe.jl's ``compute_extreme_point``); also the SCA subproblem without prox.
* ``project(y)`` — Euclidean projection onto the set; the SCA subproblem with prox.

:class:`DirectPolytope` solves both exactly for {lb <= w <= ub, 1^T w = K, a^T w <= tau}
by exploiting its structure (one Lagrangian bisection, written over an array namespace:
numpy, torch on a device — :class:`TorchPolytope` — or blocks on P processes through a
reduction).  :class:`GeneralPolytope` handles extra linear rows with a general LP (scipy
HiGHS) / QP (OSQP).  :func:`make_oracle` picks one; :class:`Oracle` is the contract.
"""

from __future__ import annotations

from typing import Any

from . import device
from .base import Oracle, check_oracle
from .device import TorchPolytope
from .general import GeneralPolytope
from .namespace import top_k_fractional
from .structured import _BISECT_MAX, _SHRINK_MIN, DirectPolytope


def structured_polytope(problem: Any) -> DirectPolytope:
    """The structured polytope of ``problem``'s standard set (+ fixings), its LMO on the GPU
    when the problem's G is a CUDA tensor (same vertices, ``torch.topk``)."""
    return device.structured_polytope(problem)


def make_oracle(problem: Any) -> Oracle:
    """The structured oracle when only standard constraints (+ fixings) are present, else the general one."""
    if problem.rows is None:
        return device.structured_polytope(problem)
    return GeneralPolytope(problem)


__all__ = ["DirectPolytope", "GeneralPolytope", "Oracle", "check_oracle", "TorchPolytope", "make_oracle", "structured_polytope",
           "top_k_fractional", "_BISECT_MAX", "_SHRINK_MIN"]
