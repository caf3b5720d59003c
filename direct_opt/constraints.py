"""Constraints users add to a SelectionProblem, beyond the standard ones.

The standard constraints (0 <= w <= 1, 1^T w = K, a^T w <= tau) are part of the
problem itself.  Extra constraints come in three kinds, which decide who can honour
them:

* ``"bounds"``    — fix coordinates to 0 or 1 (must-include / must-exclude). Every
  backend honours these; the structured oracle just removes the fixed coordinates.
* ``"linear"``    — rows ``lo <= A w <= hi``. Every backend but ``pga-dykstra``
  honours these; the fast ones fall back to a general LP/QP (HiGHS / OSQP).
* ``"quadratic"`` — convex quadratic (or any cvxpy-expressible convex) constraint;
  only ``sca-osqp`` can put them into its subproblem.  Rounding checks them.

To write a new one, subclass :class:`LinearRowsConstraint` (set ``A``, ``lo``, ``hi``, ``row_names``) or
:class:`Constraint` (give ``cvxpy_constraints`` and ``violation``); see docs/constraints.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from .errors import DtypeError, InvalidInputError, InvalidParameterError, ShapeMismatchError
from .stats import as_float_array, check_finite, real_scalar
from .tolerance import excess, row_excess

if TYPE_CHECKING:  # pragma: no cover
    from .problem import SelectionProblem


@dataclass
class LinearRows:
    """Rows lo <= A w <= hi. A: (m, N) CSR sparse; lo, hi: (m,) (use +-inf for one-sided)."""

    A: sp.csr_matrix
    lo: np.ndarray
    hi: np.ndarray
    names: list[str]

    @staticmethod
    def stack(parts: Sequence["LinearRows"]) -> "LinearRows | None":
        if not parts:
            return None
        return LinearRows(
            sp.vstack([p.A for p in parts], format="csr"),
            np.concatenate([p.lo for p in parts]),
            np.concatenate([p.hi for p in parts]),
            [n for p in parts for n in p.names],
        )

    def violation(self, x: np.ndarray) -> np.ndarray:
        """Per-row violation (m,) >= 0 of a point x (N,)."""
        v = self.A @ x
        return np.maximum(0.0, np.maximum(self.lo - v, v - self.hi))


class Constraint:
    """Base class. Subclasses set ``kind`` and implement the methods their kind needs."""

    kind: str = "custom"
    name: str = "constraint"

    def check(self, n: int) -> None:
        """Validate against a pool of N samples; raise a ValueError subclass if unusable."""

    def fixed(self, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(lb, ub) of shape (N,) for kind 'bounds'."""
        return None

    def linear_rows(self, n: int) -> LinearRows | None:
        """Rows for kind 'linear'."""
        return None

    def cvxpy_constraints(self, w: Any, problem: "SelectionProblem") -> list:
        """cvxpy constraints on the variable w (N,). Defaults to the linear rows / bounds."""
        rows = self.linear_rows(problem.n)
        if rows is not None:
            out = []
            lo_f, hi_f = np.isfinite(rows.lo), np.isfinite(rows.hi)
            eq = lo_f & hi_f & (rows.lo == rows.hi)
            if eq.any():
                out.append(rows.A[eq] @ w == rows.lo[eq])
            if (hi_f & ~eq).any():
                out.append(rows.A[hi_f & ~eq] @ w <= rows.hi[hi_f & ~eq])
            if (lo_f & ~eq).any():
                out.append(rows.A[lo_f & ~eq] @ w >= rows.lo[lo_f & ~eq])
            return out
        fx = self.fixed(problem.n)
        if fx is not None:
            lb, ub = fx
            out = []
            if (lb > 0).any():
                out.append(w[np.flatnonzero(lb > 0)] >= lb[lb > 0])
            if (ub < 1).any():
                out.append(w[np.flatnonzero(ub < 1)] <= ub[ub < 1])
            return out
        raise NotImplementedError(f"{type(self).__name__} must implement cvxpy_constraints().")

    def violation(self, x: np.ndarray, problem: "SelectionProblem") -> float:
        """How much x (N,) violates this constraint (0 when satisfied)."""
        rows = self.linear_rows(problem.n)
        if rows is not None:
            return float(rows.violation(x).max(initial=0.0))
        fx = self.fixed(problem.n)
        if fx is not None:
            lb, ub = fx
            return float(np.maximum(0.0, np.maximum(lb - x, x - ub)).max(initial=0.0))
        raise NotImplementedError(f"{type(self).__name__} must implement violation().")

    def relative_violation(self, x: np.ndarray, problem: "SelectionProblem") -> float:
        """The violation relative to this constraint's own scale, what feasibility is judged by
        (see :mod:`direct_opt.tolerance`): per linear row (A x - hi) / max(|hi|, |A| x); the
        fixings absolutely (x lies in [0, 1]).  A custom constraint whose values are not of
        order 1 should override this (the default compares :meth:`violation` absolutely)."""
        cache = getattr(self, "_abs_rows", None)
        if cache is None or cache[0] != problem.n:
            rows = self.linear_rows(problem.n)
            cache = self._abs_rows = (problem.n, rows, None if rows is None else abs(rows.A))
        _, rows, abs_a = cache
        if rows is not None:
            return float(row_excess(rows.A @ x, abs_a @ x, rows.lo, rows.hi).max(initial=0.0))
        return self.violation(x, problem)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


# ----------------------------------------------------------------------- linear


class LinearRowsConstraint(Constraint):
    """Base of the linear constraints: rows ``lo <= A w <= hi``.

    Attributes (set by subclasses): ``A`` (m, N) CSR, ``lo`` / ``hi`` (m,) (+-inf for one
    side), ``row_names`` (m names), ``name``.
    """

    kind = "linear"
    A: sp.csr_matrix
    lo: np.ndarray
    hi: np.ndarray
    row_names: list[str]

    def check(self, n: int) -> None:
        if self.A.shape[1] != n:
            raise ShapeMismatchError(
                f"{self.name}: A has {self.A.shape[1]} columns but the pool has N={n} samples."
            )

    def linear_rows(self, n: int) -> LinearRows:
        return LinearRows(self.A, self.lo, self.hi, list(self.row_names))


class LinearConstraint(LinearRowsConstraint):
    """General linear rows ``A w <= b`` / ``A w >= b`` / ``A w == b``.

    Args:
        A: (m, N) or (N,) dense or scipy-sparse coefficients.
        b: (m,) or scalar right-hand side.
        sense: "<=", ">=" or "==".
    """

    def __init__(self, A: Any, b: Any, sense: str = "<=", name: str = "linear") -> None:
        if sense not in ("<=", ">=", "=="):
            raise InvalidParameterError(f"sense must be '<=', '>=' or '==', got {sense!r}.")
        try:  # a ragged nested list makes numpy itself raise a bare ValueError
            A = sp.csr_matrix(A) if sp.issparse(A) else sp.csr_matrix(as_float_array("A", np.atleast_2d(A), 2).astype(np.float64))
            b = np.atleast_1d(as_float_array("b", np.atleast_1d(b), 1)).astype(np.float64)
        except ValueError as exc:
            if isinstance(exc, InvalidInputError):
                raise
            raise DtypeError(f"{name}: A and b must be rectangular numeric arrays ({exc}).") from None
        if b.shape[0] != A.shape[0]:
            raise ShapeMismatchError(f"{name}: A has {A.shape[0]} rows but b has {b.shape[0]} entries.")
        check_finite(f"{name}.A", A.data)
        check_finite(f"{name}.b", b)
        self.A, self.b, self.sense, self.name = A, b, sense, name
        inf = np.full_like(b, np.inf)
        self.lo = {"<=": -inf, ">=": b, "==": b}[sense]
        self.hi = {"<=": b, ">=": inf, "==": b}[sense]
        self.row_names = [name] * len(b)


class GroupQuota(LinearRowsConstraint):
    """Min/max number of selected samples per group label (e.g. per domain).

    Args:
        labels: (N,) group label of every sample.
        min_count / max_count: {label: count}; labels not named are unconstrained.
    """

    def __init__(
        self,
        labels: Sequence[Any],
        min_count: Mapping[Any, float] | None = None,
        max_count: Mapping[Any, float] | None = None,
        name: str = "group quota",
    ) -> None:
        try:
            labels = np.asarray(labels)
            known = set(labels.tolist()) if labels.ndim == 1 else set()
        except (ValueError, TypeError) as exc:  # ragged or unhashable labels
            raise InvalidInputError(f"{name}: labels must be a 1-D sequence of hashable labels ({exc}).") from None
        if labels.ndim != 1:
            raise ShapeMismatchError(f"{name}: labels must be 1-D (N,), got shape {labels.shape}.")
        for label, m in (("min_count", min_count), ("max_count", max_count)):
            if m is not None and not isinstance(m, Mapping):
                raise InvalidParameterError(f"{name}: {label} must be a dict {{label: count}}, got {type(m).__name__}.")
        min_count, max_count = dict(min_count or {}), dict(max_count or {})
        if not min_count and not max_count:
            raise InvalidParameterError(f"{name}: give min_count and/or max_count.")
        rows, lo, hi, names = [], [], [], []
        for g in sorted(set(min_count) | set(max_count), key=str):
            if g not in known:
                raise InvalidParameterError(f"{name}: group {g!r} does not occur in labels (known: {sorted(map(str, known))[:10]}).")
            mn = real_scalar(f"{name}: min_count[{g!r}]", min_count[g]) if g in min_count else -np.inf
            mx = real_scalar(f"{name}: max_count[{g!r}]", max_count[g]) if g in max_count else np.inf
            if mn > mx:
                raise InvalidParameterError(f"{name}: group {g!r} has min {mn} > max {mx}.")
            rows.append((labels == g).astype(np.float64))
            lo.append(mn)
            hi.append(mx)
            names.append(f"{name}[{g}]")
        self.A = sp.csr_matrix(np.vstack(rows))
        self.lo, self.hi, self.row_names, self.name = np.array(lo), np.array(hi), names, name
        self.labels = labels

    def check(self, n: int) -> None:
        if self.labels.shape[0] != n:
            raise ShapeMismatchError(f"{self.name}: {self.labels.shape[0]} labels for a pool of N={n}.")


class WeightBudget(LinearRowsConstraint):
    """Total of a per-sample weight within bounds, e.g. tokens: ``sum_i w_i t_i <= max_total``."""

    def __init__(
        self, weights: Any, max_total: float | None = None, min_total: float | None = None, name: str = "weight budget"
    ) -> None:
        w = as_float_array("weights", weights, 1).astype(np.float64)
        check_finite(f"{name}.weights", w)
        if max_total is None and min_total is None:
            raise InvalidParameterError(f"{name}: give max_total and/or min_total.")
        self.A = sp.csr_matrix(w[None, :])
        self.lo = np.array([-np.inf if min_total is None else real_scalar(f"{name}: min_total", min_total)])
        self.hi = np.array([np.inf if max_total is None else real_scalar(f"{name}: max_total", max_total)])
        self.name, self.row_names = name, [name]

    def check(self, n: int) -> None:
        if self.A.shape[1] != n:
            raise ShapeMismatchError(f"{self.name}: {self.A.shape[1]} weights for a pool of N={n}.")


class TokenBudget(WeightBudget):
    """Total tokens of the selection within bounds: ``sum_i w_i t_i <= max_tokens``.

    ``tokens`` is a :class:`~direct_opt.stats.GradientStats` carrying ``token_counts`` (as
    ``direct_opt.extract`` writes them) or an (N,) array of token counts.
    """

    def __init__(self, tokens: Any, max_tokens: float | None = None, min_tokens: float | None = None,
                 name: str = "token budget") -> None:
        counts = getattr(tokens, "token_counts", tokens) if not isinstance(tokens, np.ndarray) else tokens
        if counts is None:
            raise InvalidInputError(
                f"{name}: these stats carry no token_counts (extracted before they were recorded, or from "
                "non-token samples); re-extract, or pass the (N,) token counts instead of the stats.")
        super().__init__(counts, max_total=max_tokens, min_total=min_tokens, name=name)


# ----------------------------------------------------------------------- bounds


class _IndexSet(Constraint):
    kind = "bounds"
    _value = 1.0

    def __init__(self, indices: Sequence[int], name: str) -> None:
        try:
            idx = np.asarray(indices)
        except (ValueError, TypeError) as exc:  # ragged
            raise InvalidInputError(f"{name}: indices must be a 1-D sequence of integers ({exc}).") from None
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise InvalidInputError(f"{name}: indices must be a 1-D sequence of integers, got {idx.dtype} {idx.shape}.")
        self.indices = np.unique(idx.astype(np.int64))
        self.name = name

    def check(self, n: int) -> None:
        if self.indices.size and (self.indices[0] < 0 or self.indices[-1] >= n):
            raise InvalidParameterError(f"{self.name}: indices must lie in [0, {n}); got {self.indices[[0, -1]].tolist()}.")

    def fixed(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        lb, ub = np.zeros(n), np.ones(n)
        (lb if self._value == 1.0 else ub)[self.indices] = self._value
        return lb, ub


class MustInclude(_IndexSet):
    """These samples must be selected."""

    def __init__(self, indices: Sequence[int], name: str = "must include") -> None:
        super().__init__(indices, name)


class MustExclude(_IndexSet):
    """These samples must not be selected."""

    _value = 0.0

    def __init__(self, indices: Sequence[int], name: str = "must exclude") -> None:
        super().__init__(indices, name)


# -------------------------------------------------------------------- quadratic


class AggregateStiffBudget(Constraint):
    """Aggregate stiff budget  sum_{j stiff} lambda_j (sum_i w_i g_ij)^2 <= tau.

    Unlike the separable budget a^T w <= tau it lets stiff components of different
    samples cancel.  Convex quadratic: only the cvxpy backend (``sca-osqp``) can put it
    in its subproblem; rounding checks it and repairs by swaps.

    Args:
        G_stiff: (k*, N) stiff eigen-coordinates; eigvals_stiff: (k*,) their eigenvalues.
        tau: the absolute budget.
    """

    kind = "quadratic"

    def __init__(self, G_stiff: Any, eigvals_stiff: Any, tau: float, name: str = "aggregate stiff budget") -> None:
        Gs = as_float_array("G_stiff", G_stiff, 2).astype(np.float64)
        lam = as_float_array("eigvals_stiff", eigvals_stiff, 1).astype(np.float64)
        check_finite("G_stiff", Gs)
        check_finite("eigvals_stiff", lam)
        tau = real_scalar(f"{name}: tau", tau, finite=False)
        if lam.shape[0] != Gs.shape[0]:
            raise ShapeMismatchError(f"{name}: {lam.shape[0]} eigenvalues for {Gs.shape[0]} stiff rows.")
        if (lam < 0).any() or not np.isfinite(tau) or tau < 0:
            raise InvalidParameterError(f"{name}: eigenvalues and tau must be finite and >= 0 (tau={tau}).")
        self.M = np.sqrt(lam)[:, None] * Gs  # (k*, N): constraint is ||M w||^2 <= tau
        self.tau, self.name = float(tau), name

    @classmethod
    def from_stats(cls, stats: Any, tau: float, name: str = "aggregate stiff budget") -> "AggregateStiffBudget":
        """Build from GradientStats that kept their stiff coordinates."""
        if stats.G_stiff is None or stats.eigvals is None:
            raise InvalidParameterError(
                "the aggregate stiff budget needs stats with stiff coordinates (G_stiff) and eigvals; "
                "re-extract with store_stiff=True."
            )
        return cls(stats.G_stiff, np.asarray(stats.eigvals)[: stats.k_star], tau, name)

    def check(self, n: int) -> None:
        if self.M.shape[1] != n:
            raise ShapeMismatchError(f"{self.name}: G_stiff has {self.M.shape[1]} columns for a pool of N={n}.")

    def value(self, x: np.ndarray) -> float:
        return float(np.sum((self.M @ x) ** 2))

    def cvxpy_constraints(self, w: Any, problem: "SelectionProblem") -> list:
        import cvxpy as cp

        return [cp.sum_squares(self.M @ w) <= self.tau]

    def violation(self, x: np.ndarray, problem: "SelectionProblem") -> float:
        return max(0.0, self.value(x) - self.tau)

    def relative_violation(self, x: np.ndarray, problem: "SelectionProblem") -> float:
        return excess(self.value(x), self.tau)
