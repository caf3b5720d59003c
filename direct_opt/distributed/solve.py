"""Sharded solving: P ranks each hold a contiguous column block of G (and of a).

Nothing of size N is ever gathered: per outer iteration the ranks exchange p = G w
(one all-reduce of r numbers) and a few dozen scalars.  The solver is the single-process
one over a reduction (:class:`Comm`): the SCA loop of :func:`direct_opt.solvers.sca.sca_loop`,
the structured oracle ``DirectPolytope(a_block, K, tau, reduction=comm)`` (its top-K global
by :func:`direct_opt.reduction.top_k_mask`, ties to the lower global index), the operator
:class:`~direct_opt.linop.ReducedOperator` and the bounds of :mod:`direct_opt.certificates`.
This module sets up the shards and rounds: the greedy completion + 1-swap local search of
:mod:`direct_opt.rounding`, mirrored with global selections so the selection is the same.

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
from ..solvers.base import Context
from ..solvers.sca import sca_loop
from .comm import Comm

SUPPORTED_BACKENDS = ("sca-exact",)
NEAR_ONE = 1.0 - 1e-6


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

    # the objective f(w) = ||G w||^2 (convex form, no linear term), as SelectionProblem has it
    form, q, c = "convex", 1.0, None

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
    x, notes, swaps = _round(P, w, P.local.col_sq_norms(), local_search, max_swaps, swap_pool)
    local_idx = np.flatnonzero(x)
    indices = np.sort(np.concatenate(comm.allgather(local_idx.astype(np.int64) + P.offset))).astype(np.int64)
    p_int = P.op.col_sum(local_idx)
    objective = float(p_int @ p_int)
    budget_used = float(comm.sum(P.a[x].sum()))
    viol = {"cardinality": abs(float(indices.size) - P.k), "box": 0.0}
    if P.tau is not None:
        viol["budget"] = max(0.0, budget_used - P.tau)
    feasible = indices.size == P.k and (P.tau is None or fits(budget_used, P.tau))
    ub = upper_bound(P, oracle=oracle)
    converged = rel.converged
    return SelectionResult(
        indices=indices if feasible else np.empty(0, np.int64),
        objective=objective if feasible else float("nan"),
        w=None, objective_relaxed=f_rel, upper_bound=ub,
        certified_ratio=certified_ratio(objective, ub) if feasible else None,
        feasible=feasible, violations=viol, status=("converged" if converged else "max_iter") if feasible else "infeasible",
        message="; ".join([f"sharded over {comm.world} rank(s)"] + ([rel.message] if rel.message else []) + notes),
        history=rel.history, iterations=rel.iterations,
        converged=converged, time_s=time.monotonic() - t0, backend=backend, gap=rel.gap,
        info={"swaps": swaps, "world": comm.world, "w_local": w, "max_iter": max_iter, "tol": tol, "seed": seed,
              "options": {"init": "norms", "prox": 0.0}},
    )


# -------------------------------------------------------------------- rounding
def _best_local(key: np.ndarray, mask: np.ndarray, L: int) -> np.ndarray:
    """Local indices of the (up to) L smallest ``key`` among ``mask`` (ties: lower index)."""
    cand = np.flatnonzero(mask)
    return cand[np.argsort(key[cand], kind="stable")[:L]]


def _global_best(P: ShardedProblem, key: np.ndarray, mask: np.ndarray, L: int) -> np.ndarray:
    """Global indices of the L smallest ``key`` among ``mask`` over all ranks (ties: lower index),
    i.e. the serial ``idx[np.argsort(key[idx], kind="stable")[:L]]``."""
    loc = _best_local(key, mask, L)
    keys = np.concatenate(P.comm.allgather(key[loc]))
    gidx = np.concatenate(P.comm.allgather(loc.astype(np.int64) + P.offset)).astype(np.int64)
    return gidx[np.lexsort((gidx, keys))[:L]]


def _round(P: ShardedProblem, w: np.ndarray, sq: np.ndarray, local_search: bool,
           max_swaps: int, L: int) -> tuple[np.ndarray, list[str], int]:
    """Mirror of rounding.round_selection for the standard set: near-integral part, greedy fill,
    1-swap local search.  Returns (local 0/1 mask, notes, swaps)."""
    comm, tau = P.comm, P.tau
    x = np.zeros(P.n_local, dtype=bool)
    p = np.zeros(P.op.r)
    h = np.zeros(P.n_local)
    budget = 0.0
    notes: list[str] = []

    def add_local(mask_new: np.ndarray) -> None:
        nonlocal p, h, budget
        idx = np.flatnonzero(mask_new)
        x[idx] = True
        g = P.op.col_sum(idx)
        p = p + g
        h = h + P.op.rmatvec(g)
        budget += float(comm.sum(P.a[idx].sum()))

    near = (w >= NEAR_ONE) & ~x
    n_near = int(comm.sum(np.int64(near.sum())))
    if n_near > P.k:  # keep the K largest (never happens for a feasible w)
        near = dist_top_k(np.where(near, w, -np.inf), P.k, comm) & near
        n_near = P.k
    m_rest = P.k - n_near
    fit = True
    if tau is not None:
        s_rest, _ = k_smallest_sum(P.a, ~near, m_rest, comm)
        fit = fits(float(comm.sum(P.a[near].sum())) + s_rest, tau)
    if fit:
        add_local(near)
        notes.append(f"kept {n_near} near-integral entries of w")
    else:
        notes.append("near-integral part of w did not fit the constraints; filled greedily instead")
    count = n_near if fit else 0
    while count < P.k:  # greedy fill by marginal gain among completable candidates
        avail = ~x
        m = P.k - count
        cand = avail.copy()
        if tau is not None:
            s_m1, small = k_smallest_sum(P.a, avail, m - 1, comm)
            s_m, _ = k_smallest_sum(P.a, avail, m, comm)
            cand &= fits(budget + P.a + s_m1, tau) | (small & fits(budget + s_m, tau))
        gains = np.where(cand, 2.0 * h + sq, -np.inf)
        j_loc = int(np.argmax(gains)) if gains.size else 0
        best = comm.allgather(np.array([gains[j_loc] if gains.size else -np.inf]))
        vals = np.array([b[0] for b in best])
        if not np.isfinite(vals.max()):
            break
        owner = int(np.argmax(vals))  # first maximum = lowest global index among equal gains
        new = np.zeros(P.n_local, dtype=bool)
        if comm.rank == owner:
            new[j_loc] = True
        add_local(new)
        count += 1
    if count < P.k:
        notes.append("infeasible: no K-subset completes within the budget (sharded rounding has no MILP repair)")
        return x, notes, 0
    swaps = 0
    if local_search:
        swaps = _local_search(P, x, p, h, sq, budget, max_swaps, L)
        notes.append(f"1-swap local search made {swaps} swaps")
    return x, notes, swaps


def _local_search(P: ShardedProblem, x: np.ndarray, p: np.ndarray, h: np.ndarray, sq: np.ndarray, budget: float,
                  max_swaps: int, L: int) -> int:
    """Best-improvement 1-swap search over the L most promising ins and outs (as rounding._local_search)."""
    comm, tau = P.comm, P.tau
    done = 0
    for _ in range(max_swaps):
        gin, lout = 2.0 * h + sq, 2.0 * h - sq
        ins_m, outs_m = ~x, x
        if int(comm.sum(np.int64(ins_m.sum()))) == 0 or int(comm.sum(np.int64(outs_m.sum()))) == 0:
            break
        outs = np.unique(np.concatenate([_global_best(P, lout, outs_m, L), _global_best(P, -P.a, outs_m, L // 2)]))
        top_in = _global_best(P, -gin, ins_m, L)
        if tau is not None:
            a_outs = _values_at(P, P.a, outs)
            after = budget - float(a_outs.max()) + P.a
            top_in = np.concatenate([top_in, _global_best(P, -gin, ins_m & fits(after, tau, budget + P.a), L)])
        ins = np.unique(top_in)
        G_out, G_in = _columns_at(P, outs), _columns_at(P, ins)
        gin_in, lout_out = _values_at(P, gin, ins), _values_at(P, lout, outs)
        gain = gin_in[None, :] - lout_out[:, None] - 2.0 * (G_out.T @ G_in)
        ok = np.ones_like(gain, dtype=bool)
        if tau is not None:
            ok &= fits(budget - _values_at(P, P.a, outs)[:, None] + _values_at(P, P.a, ins)[None, :], tau)
        thresh = 1e-12 * abs(float(p @ p))
        gain = np.where(ok, gain, -np.inf)
        flat = int(np.argsort(-gain, axis=None, kind="stable")[0])
        a_, b_ = np.unravel_index(flat, gain.shape)
        if not gain[a_, b_] > thresh:
            break
        i, j = int(outs[a_]), int(ins[b_])
        d = G_in[:, b_] - G_out[:, a_]
        for gi, val in ((i, False), (j, True)):
            if P.offset <= gi < P.offset + P.n_local:
                x[gi - P.offset] = val
        p += d
        h += P.op.rmatvec(d)
        budget += float(_values_at(P, P.a, np.array([j]))[0] - _values_at(P, P.a, np.array([i]))[0])
        done += 1
    return done


def _values_at(P: ShardedProblem, v: np.ndarray, gidx: np.ndarray) -> np.ndarray:
    """v at global indices ``gidx`` (replicated on every rank)."""
    out = np.zeros(gidx.size)
    loc = (gidx >= P.offset) & (gidx < P.offset + P.n_local)
    out[loc] = v[gidx[loc] - P.offset]
    return P.comm.sum(out)


def _columns_at(P: ShardedProblem, gidx: np.ndarray) -> np.ndarray:
    """G[:, gidx] (r, len) float64, replicated on every rank (each column from its owner)."""
    out = np.zeros((P.op.r, gidx.size))
    loc = np.flatnonzero((gidx >= P.offset) & (gidx < P.offset + P.n_local))
    if loc.size:
        out[:, loc] = P.op.columns(gidx[loc] - P.offset)
    return P.comm.sum(out)
