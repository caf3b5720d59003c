"""SelectionProblem: the DiReCT selection program as a first-class object (docs/math.md, "The selection program").

    maximise   f(w) = q ||G w||^2 + c^T w
    subject to 0 <= w <= 1,  1^T w = K,  a^T w <= tau,  (+ user constraints)

``form="convex"`` (q = 1, the paper's objective when c = 0) is convex maximisation;
``form="concave"`` (q = -1/2: c^T w - 1/2 ||G w||^2) is a convex program.  The integer
question is which K samples: x in {0,1}^N.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .constraints import Constraint, LinearRows
from .defaults import BUDGET_FRAC
from .errors import InvalidParameterError, ShapeMismatchError, UnsupportedConstraintError
from .linop import ColumnOperator, _is_torch
from .stats import GradientStats, as_float_array, check_finite, real_scalar
from .tolerance import RTOL, excess

FORMS = {"convex": 1.0, "concave": -0.5}
#: default budget: this fraction of the way from the cheapest K-subset's cost to a random one's
DEFAULT_BUDGET_FRAC = BUDGET_FRAC


def feasible_budget(a: np.ndarray, k: int, frac: float = DEFAULT_BUDGET_FRAC, tau_min: float | None = None) -> float:
    """The default stiff budget tau = tau_min + frac * max(0, mean(a) K - tau_min).

    tau_min is the smallest budget any K-subset meets (the K smallest costs; pass it when
    fixings change it), mean(a) K the expected cost of a random K-subset. frac in [0, 1]:
    0 admits only the cheapest subsets, 1 the cost of an average one. tau >= tau_min, so the
    budget always admits a selection; when tau_min is negligible it is the paper's
    tau_rel * mean(a) * K with tau_rel = frac.
    """
    a = np.asarray(a, dtype=np.float64)
    frac = real_scalar("budget_frac", frac)
    if not 0.0 <= frac <= 1.0:
        raise InvalidParameterError(f"budget_frac={frac} must lie in [0, 1] (default {DEFAULT_BUDGET_FRAC}).")
    if tau_min is None:
        tau_min = float(np.partition(a, k - 1)[:k].sum())
    return float(tau_min + frac * max(0.0, float(a.mean()) * k - tau_min))


class SelectionProblem:
    """The selection program over a pool of N candidates.

    Args:
        G: (r, N) flat coordinates (numpy array, memory map, or torch tensor).
        a: (N,) stiff costs >= 0.
        k: K, the number of samples to select (1 <= K <= N).
        tau: absolute stiff budget (a^T w <= tau); None means no budget.
        c: optional (N,) linear term of the objective.
        form: "convex" (q ||Gw||^2 + c^T w, q=1) or "concave" (c^T w - 1/2 ||Gw||^2).
        constraints: extra :class:`~direct_opt.constraints.Constraint` objects.
    """

    def __init__(
        self,
        G: Any,
        a: Any,
        k: int,
        tau: float | None = None,
        *,
        c: Any = None,
        form: str = "convex",
        constraints: Iterable[Constraint] = (),
        validate: bool = True,
    ) -> None:
        if _is_torch(G):
            if G.ndim != 2 or not G.dtype.is_floating_point:
                raise ShapeMismatchError(f"G must be a 2-D floating tensor, got {tuple(G.shape)} {G.dtype}.")
            if validate:
                import torch

                if not bool(torch.isfinite(G).all()):
                    raise InvalidParameterError("G contains NaN/Inf; drop or recompute those samples.")
        else:
            G = as_float_array("G", G, 2)
            if validate:
                check_finite("G", G)
        self.G = G
        self.op = ColumnOperator(G)
        n = self.op.n
        if n == 0:
            raise ShapeMismatchError("G has no columns: the candidate pool is empty.")
        a = as_float_array("a", a, 1).astype(np.float64)
        if a.shape != (n,):
            raise ShapeMismatchError(
                f"a has shape {a.shape} but G has N={n} columns; pass one stiff cost per sample, shape ({n},)."
            )
        check_finite("a", a)
        if (a < 0).any():
            from .errors import NegativeCostError

            i = int(np.argmin(a))
            raise NegativeCostError(f"a[{i}] = {a[i]} < 0; stiff costs must be >= 0.")
        self.a = a
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise InvalidParameterError(f"k must be an integer, got {k!r} ({type(k).__name__}).")
        if not 1 <= int(k) <= n:
            raise InvalidParameterError(f"k={k} must satisfy 1 <= k <= N={n}.")
        self.k = int(k)
        if tau is not None:
            tau = real_scalar("tau", tau, finite=False)
            if not np.isfinite(tau) or tau < 0:
                raise InvalidParameterError(f"tau={tau} must be a finite number >= 0 (or None for no budget).")
        self.tau = tau
        if not isinstance(form, str) or form not in FORMS:
            raise InvalidParameterError(f"form must be one of {sorted(FORMS)}, got {form!r}.")
        self.form = form
        self.q = FORMS[form]
        if c is not None:
            c = as_float_array("c", c, 1).astype(np.float64)
            if c.shape != (n,):
                raise ShapeMismatchError(f"c has shape {c.shape}; expected ({n},).")
            check_finite("c", c)
        self.c = c
        self.constraints: list[Constraint] = []
        self._refresh()
        if constraints is None or isinstance(constraints, (str, bytes, Constraint)) or not hasattr(constraints, "__iter__"):
            raise InvalidParameterError(
                f"constraints must be an iterable of Constraint objects, got {type(constraints).__name__}."
            )
        for con in constraints:
            self.add_constraint(con)

    @classmethod
    def from_stats(
        cls,
        stats: GradientStats,
        k: int,
        tau_rel: float | None = None,
        tau: float | None = None,
        *,
        budget_frac: float = DEFAULT_BUDGET_FRAC,
        **kwargs: Any,
    ) -> "SelectionProblem":
        """Build from GradientStats with the stiff budget

        * ``tau``: absolute; else
        * ``tau_rel``: the paper's tau = tau_rel * mean(a) * K (0.1 in the paper; may admit no
          K-subset when the cheapest K cost more); else
        * the default, always feasible: tau = tau_min + budget_frac * (mean(a) K - tau_min),
          tau_min = the cheapest K-subset's cost under the fixings (see :func:`feasible_budget`).
        """
        if not isinstance(stats, GradientStats):
            raise InvalidParameterError(f"from_stats expects GradientStats, got {type(stats).__name__}.")
        feasible_default = tau is None and tau_rel is None
        if tau is None and tau_rel is not None:
            tau_rel = real_scalar("tau_rel", tau_rel, finite=False)
            if not np.isfinite(tau_rel) or tau_rel <= 0:
                raise InvalidParameterError(f"tau_rel={tau_rel} must be > 0 (paper default 0.1).")
            if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
                tau = float(tau_rel) * float(np.mean(stats.a_stiff)) * int(k)
        if not stats.validate:  # memory-mapped loads skip the value checks: do them once here
            stats._validate_values()
            stats.validate = True
        prob = cls(stats.G_flat, stats.a_stiff, k, tau, validate=False, **kwargs)
        if feasible_default:
            tau_min = prob.min_budget()
            prob.tau = feasible_budget(prob.a, prob.k, budget_frac, tau_min if np.isfinite(tau_min) else None)
        prob.tau_rel = tau_rel if tau is not None else None
        prob.budget_frac = budget_frac if feasible_default else None
        prob.stats = stats
        return prob

    # ------------------------------------------------------------ constraints
    def add_constraint(self, con: Constraint) -> "SelectionProblem":
        """Add a constraint (returns self so calls chain)."""
        if not isinstance(con, Constraint):
            raise InvalidParameterError(
                f"add_constraint expects a direct_opt.constraints.Constraint, got {type(con).__name__}."
            )
        con.check(self.n)
        self.constraints.append(con)
        self._refresh()
        return self

    def _refresh(self) -> None:
        n = self.n
        lb, ub = np.zeros(n), np.ones(n)
        rows = []
        for con in self.constraints:
            fx = con.fixed(n)
            if fx is not None:
                lb, ub = np.maximum(lb, fx[0]), np.minimum(ub, fx[1])
            lr = con.linear_rows(n)
            if lr is not None:
                rows.append(lr)
        if (lb > ub).any():
            i = int(np.flatnonzero(lb > ub)[0])
            raise InvalidParameterError(f"sample {i} is both must-include and must-exclude.")
        self.lb, self.ub = lb, ub
        self.rows: LinearRows | None = LinearRows.stack(rows)
        self.nonlinear = [c for c in self.constraints if c.kind not in ("bounds", "linear")]

    @property
    def n(self) -> int:
        return self.op.n

    @property
    def r(self) -> int:
        return self.op.r

    @property
    def has_bounds(self) -> bool:
        return bool((self.lb > 0).any() or (self.ub < 1).any())

    @property
    def is_standard(self) -> bool:
        """True when only the structured constraints (+ fixings) are present."""
        return self.rows is None and not self.nonlinear

    def require(
        self,
        backend: str,
        kinds: set[str],
        forms: set[str],
        kind_support: dict[str, set[str]],
        form_support: dict[str, set[str]],
    ) -> None:
        """Raise UnsupportedConstraintError if ``backend`` cannot honour this problem."""
        if self.form not in forms:
            raise UnsupportedConstraintError(
                f"backend {backend!r} does not accept the {self.form!r} objective; "
                f"use one of {sorted(b for b, f in form_support.items() if self.form in f)}."
            )
        for con in self.constraints:
            if con.kind not in kinds:
                able = sorted(b for b, ks in kind_support.items() if con.kind in ks)
                raise UnsupportedConstraintError(
                    f"backend {backend!r} cannot honour constraint {con.name!r} ({con.kind}); "
                    f"backends that can: {able}."
                )

    def all_linear_rows(self) -> LinearRows:
        """Cardinality, budget and extra linear rows stacked: lo <= A w <= hi (A CSR)."""
        import scipy.sparse as sp

        parts = [LinearRows(sp.csr_matrix(np.ones((1, self.n))), np.array([float(self.k)]), np.array([float(self.k)]), ["cardinality"])]
        if self.tau is not None:
            parts.append(LinearRows(sp.csr_matrix(self.a[None, :]), np.array([-np.inf]), np.array([self.tau]), ["budget"]))
        if self.rows is not None:
            parts.append(self.rows)
        return LinearRows.stack(parts)

    # -------------------------------------------------------------- objective
    def objective(self, w: np.ndarray) -> float:
        """f(w) for a continuous or 0/1 vector w (N,)."""
        w = np.asarray(w, dtype=np.float64)
        if w.dtype == bool or np.array_equal(w, w.astype(bool)):
            p = self.op.col_sum(np.flatnonzero(w))
        else:
            p = self.op.matvec(w)
        return self.value_from(p, w)

    def value_from(self, p: np.ndarray, w: np.ndarray) -> float:
        """f(w) given p = G w."""
        val = self.q * float(p @ p)
        if self.c is not None:
            val += float(self.c @ w)
        return val

    def gradient(self, w: np.ndarray, p: np.ndarray | None = None) -> np.ndarray:
        """grad f(w) = 2 q G^T G w + c, (N,)."""
        if p is None:
            p = self.op.matvec(w)
        g = (2.0 * self.q) * self.op.rmatvec(p)
        if self.c is not None:
            g += self.c
        return g

    def selection_objective(self, idx: np.ndarray) -> float:
        """f(x) of the 0/1 selection with these indices, with float64 column sums."""
        x = np.zeros(self.n)
        x[idx] = 1.0
        return self.value_from(self.op.col_sum(idx), x)

    # ------------------------------------------------------------ feasibility
    def min_budget(self) -> float:
        """Smallest tau for which some K-subset respecting the fixings meets the budget."""
        fixed_in = self.lb >= 1
        free = (self.ub > 0) & ~fixed_in
        need = self.k - int(fixed_in.sum())
        if need < 0 or need > int(free.sum()):
            return np.inf
        a_free = self.a[free]
        part = np.partition(a_free, need - 1)[:need] if need else np.empty(0)
        return float(self.a[fixed_in].sum() + part.sum())

    def violations(self, x: np.ndarray) -> dict[str, float]:
        """Violation (>= 0) of every constraint by x (N,), by name; 0 means satisfied."""
        x = np.asarray(x, dtype=np.float64)
        out = {
            "cardinality": abs(float(x.sum()) - self.k),
            "box": float(np.maximum(0, np.maximum(-x, x - 1)).max(initial=0.0)),
        }
        if self.tau is not None:
            out["budget"] = max(0.0, float(self.a @ x) - self.tau)
        for con in self.constraints:
            out[con.name] = max(out.get(con.name, 0.0), con.violation(x, self))
        return out

    def relative_violations(self, x: np.ndarray) -> dict[str, float]:
        """Violation of every constraint by x (N,) relative to that constraint's own scale
        (see :mod:`direct_opt.tolerance`): budget a^T x - tau over max(tau, a^T x), cardinality
        over K, the box absolutely.  Unchanged when G, or a and tau together, are rescaled."""
        x = np.asarray(x, dtype=np.float64)
        out = {
            "cardinality": abs(float(x.sum()) - self.k) / self.k,
            "box": float(np.maximum(0, np.maximum(-x, x - 1)).max(initial=0.0)),
        }
        if self.tau is not None:
            out["budget"] = excess(float(self.a @ x), self.tau)
        for con in self.constraints:
            out[con.name] = max(out.get(con.name, 0.0), con.relative_violation(x, self))
        return out

    def is_feasible(self, x: np.ndarray, tol: float = RTOL) -> bool:
        """True if x satisfies every constraint to the relative tolerance ``tol``
        (:data:`direct_opt.tolerance.RTOL`; a violated constraint is never called satisfied)."""
        return all(v <= tol for v in self.relative_violations(x).values())

    def __repr__(self) -> str:
        return (
            f"SelectionProblem(N={self.n}, r={self.r}, K={self.k}, tau={self.tau}, form={self.form!r}, "
            f"constraints={[c.name for c in self.constraints]})"
        )
