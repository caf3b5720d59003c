"""The oracle contract every backend and the certificates program against."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InvalidParameterError


@runtime_checkable
class Oracle(Protocol):
    """The feasible set as one object (FrankWolfe.jl's linear oracle, plus a projection).

    * ``lmo(c)``: a maximiser of c^T w over the set, (N,) -> (N,) float64 (the SCA / LP
      subproblem, the Frank-Wolfe vertex);
    * ``project(y)``: the Euclidean projection of y onto the set, (N,) -> (N,) (the SCA
      subproblem with a proximal term);
    * ``capabilities``: which of ``"lmo"``, ``"project"``, ``"restrict"`` (block
      sub-polytopes, for block-coordinate Frank-Wolfe), ``"dual_bound"``, ``"dot"`` it offers;
    * ``kind`` (``"structured"``, ``"general"``, or your own) and ``message`` (a note for the
      result's message, "" for none).

    Pass one to :func:`direct_opt.solve` as ``oracle=`` to replace the one the backend
    would build (see docs/backends.md).
    """

    kind: str
    message: str
    capabilities: frozenset[str]

    def lmo(self, c: np.ndarray) -> np.ndarray: ...

    def project(self, y: np.ndarray) -> np.ndarray: ...


def check_oracle(oracle: Any) -> None:
    """Raise InvalidParameterError unless ``oracle`` is None or satisfies :class:`Oracle`."""
    if oracle is not None and not isinstance(oracle, Oracle):
        missing = [m for m in ("lmo", "project", "kind", "message", "capabilities") if not hasattr(oracle, m)]
        raise InvalidParameterError(
            f"oracle={type(oracle).__name__} is not a direct_opt.oracle.Oracle: it lacks {missing} "
            "(see direct_opt.oracle.Oracle; DirectPolytope / GeneralPolytope are the built-in ones)."
        )
