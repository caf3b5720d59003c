"""Sharded solving: P ranks each hold a contiguous column block of G (and of a).

Nothing of size N is ever gathered: per outer iteration the ranks exchange p = G w
(one all-reduce of r numbers) and a few dozen scalars.  The solver is the single-process
one over a reduction (:class:`Comm`): the SCA loop of :func:`direct_opt.solvers.sca.sca_loop`,
the structured oracle ``DirectPolytope(a_block, K, tau, reduction=comm)`` (its top-K global
by :func:`direct_opt.reduction.top_k_mask`, ties to the lower global index), the operator
:class:`~direct_opt.linop.ReducedOperator` and the bounds of :mod:`direct_opt.certificates`.
The rounding (greedy completion + 1-swap local search) is :func:`direct_opt.rounding.round_selection`
over the same reduction.  This module sets up the shards.

* :func:`dist_top_k`, :func:`dist_lmo` — the global top-K and the exact linear oracle of
  {0<=w<=1, 1^T w = K, a^T w <= tau} over the ranks (thin wrappers of the above);
* :func:`solve_sharded` — ``sca-exact`` (LP-SCA, init "norms"), rounding, certificates.

Supported: backend ``sca-exact`` with the standard constraints (cardinality, budget).
Anything else raises :class:`UnsupportedConstraintError` / :class:`InvalidParameterError`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..certificates import certified_ratio, upper_bound
from ..errors import InvalidParameterError, UnsupportedConstraintError
from ..linop import ColumnOperator, ReducedOperator
from ..oracle import DirectPolytope
from ..reduction import top_k_mask
from ..tolerance import fits
from ..result import SelectionResult
from ..rounding import round_selection
from ..solvers.base import Context
from ..solvers.sca import sca_loop
from .comm import Comm

SUPPORTED_BACKENDS = ("sca-exact",)


def shard_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of rank's contiguous block when N columns are split over ``world`` ranks."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


@dataclass
class ShardedProblem:
    """One rank's share of the standard selection program (see SelectionProblem).

    Attributes:
        G: (r, n_local) this rank's columns (numpy array, memory map or torch tensor).
        a: (n_local,) their stiff costs.
        offset: global index of the first local column.
        n: global N; k: K; tau: the budget (None: no budget).
        comm: the :class:`Comm` over the ranks holding the other blocks.
    """

    G: Any
    a: np.ndarray
    offset: int
    n: int
    k: int
    tau: float | None
    comm: Comm

    def __post_init__(self) -> None:
        self.a = np.asarray(self.a, dtype=np.float64)
        self.local = ColumnOperator(self.G)
        self.op = ReducedOperator(self.local, self.comm)  # G w, G G^T and column sums over all ranks
        if self.a.shape != (self.op.n,):
            raise InvalidParameterError(f"a has shape {self.a.shape}; this rank holds {self.op.n} columns of G.")
        total = int(self.comm.sum(np.int64(self.op.n)))
        if total != self.n:
            raise InvalidParameterError(f"the ranks hold {total} columns in all but n={self.n}; each rank must "
                                        "pass its own contiguous block (see shard_range).")
        if not 1 <= self.k <= self.n:
            raise InvalidParameterError(f"k={self.k} must satisfy 1 <= k <= N={self.n}.")

    @classmethod
    def from_arrays(cls, G: Any, a: Any, k: int, tau: float | None, comm: Comm) -> "ShardedProblem":
        """This rank's block of a full (r, N) G and (N,) a (slices of a memory map: no copy)."""
        n = int(G.shape[1])
        s, e = shard_range(n, comm.rank, comm.world)
        return cls(G[:, s:e], np.asarray(a[s:e], dtype=np.float64), s, n, int(k), tau, comm)

    @classmethod
    def from_stats(cls, path: str, k: int, comm: Comm, tau_rel: float | None = None, tau: float | None = None
                   ) -> "ShardedProblem":
        """Memory-map a stats directory and keep this rank's block; the budget as in
        :meth:`direct_opt.problem.SelectionProblem.from_stats` (tau, else paper tau_rel, else feasible default)."""
        from ..problem import feasible_budget
        from ..stats import GradientStats

        st = GradientStats.load(path, mmap=True, verify=False)
        if tau is None and tau_rel is not None:
            tau = float(tau_rel) * float(np.mean(st.a_stiff)) * int(k)
        elif tau is None:
            tau = feasible_budget(st.a_stiff, int(k))
        return cls.from_arrays(st.G_flat, st.a_stiff, k, tau, comm)

    @property
    def n_local(self) -> int:
        return self.op.n

    # the objective f(w) = ||G w||^2 (convex form, no linear term) and the standard constraint
    # set only (no fixings, rows or other constraints), as SelectionProblem has them
    form, q, c = "convex", 1.0, None
    rows, constraints, nonlinear, has_bounds = None, [], [], False

    @property
    def reduction(self) -> Comm:
        return self.comm

    @property
    def lb(self) -> np.ndarray:
        return np.zeros(self.n_local)

    @property
    def ub(self) -> np.ndarray:
        return np.ones(self.n_local)

    def min_budget(self) -> float:
        """Sum of the K smallest stiff costs over all ranks (the smallest feasible tau)."""
        return k_smallest_sum(self.a, np.ones(self.n_local, dtype=bool), self.k, self.comm)[0]

    def is_feasible(self, x: np.ndarray) -> bool:
        """This rank's block ``x`` of a selection has K entries in all and meets the budget."""
        sel = np.asarray(x) > 0.5
        if int(self.comm.sum(np.int64(sel.sum()))) != self.k:
            return False
        return self.tau is None or fits(float(self.comm.sum(self.a[sel].sum())), self.tau)

    def value_from(self, p: np.ndarray, w: np.ndarray) -> float:
        """f(w) given p = G w (r,)."""
        return float(p @ p)

    def gradient(self, w: np.ndarray, p: np.ndarray | None = None) -> np.ndarray:
        """This rank's block of grad f(w) = 2 G^T G w."""
        return 2.0 * self.op.rmatvec(self.op.matvec(w) if p is None else p)


# ------------------------------------------------------------------ selection
def dist_top_k(score: np.ndarray, k: int, comm: Comm) -> np.ndarray:
    """Boolean mask (local) of the global top-k entries of ``score`` (ties: lower global index);
    :func:`direct_opt.reduction.top_k_mask` over ``comm``."""
    return top_k_mask(score, k, comm)


def k_smallest_sum(values: np.ndarray, avail: np.ndarray, m: int, comm: Comm) -> tuple[float, np.ndarray]:
    """(sum of the m smallest ``values`` among ``avail``, local mask of them)."""
    if m <= 0:
        return 0.0, np.zeros(values.size, dtype=bool)
    score = np.where(avail, -values, -np.inf)
    n_avail = int(comm.sum(np.int64(avail.sum())))
    if m > n_avail:
        return np.inf, avail.copy()
    mask = dist_top_k(score, m, comm) & avail
    return float(comm.sum(values[mask].sum())), mask


def dist_lmo(c: np.ndarray, a: np.ndarray, k: int, tau: float | None, comm: Comm) -> np.ndarray:
    """Local block of argmax c^T w over {0 <= w <= 1, 1^T w = k, a^T w <= tau} (exact): the
    structured oracle :class:`~direct_opt.oracle.DirectPolytope` over the ranks of ``comm``."""
    return DirectPolytope(a, k, tau, reduction=comm).lmo(c)


# ----------------------------------------------------------------------- solve
def _check_backend(backend: str, options: dict[str, Any]) -> None:
    if backend not in SUPPORTED_BACKENDS:
        raise InvalidParameterError(
            f"backend {backend!r} has no sharded implementation; sharded solving supports {list(SUPPORTED_BACKENDS)}. "
            "Use backend='sca-exact', or gather G on one process (GradientStats.load(..., mmap=True)) and call "
            "direct_opt.solve for the other backends."
        )
    bad = sorted(set(options) - {"init"})
    if bad or options.get("init", "norms") != "norms":
        raise UnsupportedConstraintError(
            f"sharded sca-exact supports no option(s) {bad or ['init=' + str(options.get('init'))]}; "
            "it runs LP-SCA (prox=0) from init='norms'."
        )


def solve_sharded(problem: ShardedProblem, backend: str = "sca-exact", *, max_iter: int = 20, tol: float = 1e-4,
                  seed: int = 0, local_search: bool = True, max_swaps: int = 100, swap_pool: int = 32,
                  **options: Any) -> SelectionResult:
    """Solve the program whose columns are spread over the ranks of ``problem.comm``.

    Every rank calls this with its own block and gets the same SelectionResult
    (``indices`` global, sorted; ``w`` is None: the continuous solution stays sharded,
    ``info["w_local"]`` holds this rank's block).  ``seed`` is accepted for API parity
    (sca-exact is deterministic).  The SCA loop, the oracle and the upper bound are the
    single-process ones, reducing over ``problem.comm``.
    """
    _check_backend(backend, options)
    t0 = time.monotonic()
    P, comm = problem, problem.comm
    oracle = DirectPolytope(P.a, P.k, P.tau, reduction=comm)
    ctx = Context(int(max_iter), float(tol), int(seed), None, {"init": "norms", "prox": 0.0}, reduction=comm)
    rel = sca_loop(P, ctx, oracle, lambda w, grad, v: v)
    w, f_rel = rel.w, rel.history[-1]["objective"] if rel.history else P.value_from(P.op.matvec(rel.w), rel.w)
    rounded = round_selection(P, w, local_search=local_search, max_swaps=max_swaps, swap_pool=swap_pool)
    indices = rounded.indices  # global, sorted, on every rank
    mine = indices[(indices >= P.offset) & (indices < P.offset + P.n_local)] - P.offset
    p_int = P.op.col_sum(mine)
    objective = float(p_int @ p_int)
    budget_used = float(comm.sum(P.a[mine].sum()))
    viol = {"cardinality": abs(float(indices.size) - P.k), "box": 0.0}
    if P.tau is not None:
        viol["budget"] = max(0.0, budget_used - P.tau)
    feasible = rounded.ok and indices.size == P.k and (P.tau is None or fits(budget_used, P.tau))
    ub = upper_bound(P, oracle=oracle)
    converged = rel.converged
    return SelectionResult(
        indices=indices if feasible else np.empty(0, np.int64),
        objective=objective if feasible else float("nan"),
        w=None, objective_relaxed=f_rel, upper_bound=ub,
        certified_ratio=certified_ratio(objective, ub) if feasible else None,
        feasible=feasible, violations=viol, status=("converged" if converged else "max_iter") if feasible else "infeasible",
        message="; ".join([f"sharded over {comm.world} rank(s)"] + ([rel.message] if rel.message else [])
                          + [rounded.message]),
        history=rel.history, iterations=rel.iterations,
        converged=converged, time_s=time.monotonic() - t0, backend=backend, gap=rel.gap,
        info={"swaps": rounded.swaps, "world": comm.world, "w_local": w, "max_iter": max_iter, "tol": tol, "seed": seed,
              "options": {"init": "norms", "prox": 0.0}},
    )
