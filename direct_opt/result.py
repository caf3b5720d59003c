"""SelectionResult: the one record every backend returns (like scipy's OptimizeResult)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

STATUSES = ("converged", "max_iter", "stalled", "time_limit", "infeasible")
#: what each status means for the user (printed by :meth:`SelectionResult.summary`).
STATUS_MEANING = {
    "converged": "the iterates stopped moving (step < tol): a stationary point of the relaxation.",
    "max_iter": "stopped at the iteration cap (max_iter) before the step fell below tol. The selection is "
                "feasible and usable; raise max_iter only if you want to try for a higher objective.",
    "stalled": "stopped early because an inexact subproblem would have lowered f; the selection is the best "
               "feasible one found.",
    "time_limit": "stopped at time_limit; the selection is the best feasible one found so far.",
    "infeasible": "no selection satisfies every constraint; see the message for the smallest feasible budget.",
}


@dataclass
class SelectionResult:
    """Outcome of a solve.

    Attributes:
        indices: sorted int64 (K,) selected samples (empty when infeasible).
        objective: f(x) of the integer selection x.
        w: (N,) continuous solution of the relaxation (None for integer-only backends).
        objective_relaxed: f(w).
        upper_bound: a valid upper bound on the integer optimum.
        certified_ratio: objective / upper_bound (<= 1), None when undefined.
        feasible: x satisfies every constraint.
        violations: per-constraint violation of x (0 = satisfied).
        status: "converged" | "max_iter" | "stalled" (stopped before T_max without
            converging: an inexact subproblem would have lowered f) | "time_limit" | "infeasible".
        message: human-readable account (fallbacks, rounding, paper top-K check, ...).
        history: per outer iteration {"iter", "objective", "step", "gap"}.
        iterations, converged, time_s, backend: as named.
        gap: final stationarity (Frank-Wolfe) gap of the relaxation.
        info: backend-specific extras (JSON-safe).
    """

    indices: np.ndarray
    objective: float
    w: np.ndarray | None
    objective_relaxed: float | None
    upper_bound: float | None
    certified_ratio: float | None
    feasible: bool
    violations: dict[str, float]
    status: str
    message: str
    history: list[dict[str, float]] = field(default_factory=list)
    iterations: int = 0
    converged: bool = False
    time_s: float = 0.0
    backend: str = ""
    gap: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return self.feasible and self.status != "infeasible"

    def summary(self) -> str:
        """A few human lines."""
        ratio = "n/a" if self.certified_ratio is None else f"{self.certified_ratio:.4f}"
        return (
            f"{self.backend}: status={self.status} feasible={self.feasible} K={len(self.indices)} "
            f"objective={self.objective:.6g} upper_bound={self.upper_bound if self.upper_bound is None else f'{self.upper_bound:.6g}'} "
            f"certified_ratio={ratio} iterations={self.iterations} time={self.time_s:.3f}s\n"
            f"  status {self.status}: {STATUS_MEANING.get(self.status, '')}\n  {self.message}"
        )

    def to_dict(self, include_w: bool = False) -> dict[str, Any]:
        """JSON-safe dictionary (w omitted unless asked: it has N entries)."""
        d = asdict(self)
        d["indices"] = [int(i) for i in self.indices]
        d["w"] = None if (self.w is None or not include_w) else [float(v) for v in self.w]
        return _jsonable(d)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if np.isfinite(v) else str(v)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    return x
