"""Integer rounding of a continuous solution, repair, and 1-swap local search.

Every backend's w goes through :func:`round_selection`, which returns exactly K
distinct indices satisfying every constraint or says plainly that it could not:

1. fixings first (must-include), then the near-integral part of w (w_i >= 1 - 1e-6);
2. fill the rest greedily by marginal gain  q(2 p^T g_j + ||g_j||^2) + c_j  among the
   candidates that keep the budget completable (a_j + the cheapest remaining fill fits)
   and the linear rows satisfiable (groups short of their minimum are served first);
3. if a constraint is still violated: swap repair, then (linear constraints only) an
   exact MILP feasibility search with HiGHS; failing that, status "infeasible";
4. optional 1-swap local search: swap i in S for j outside when it raises f and keeps
   every constraint (gain q(2p^T(g_j-g_i) + ||g_j-g_i||^2) + c_j - c_i).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .problem import SelectionProblem
from .tolerance import RTOL, fits

NEAR_ONE = 1.0 - 1e-6


@dataclass
class Rounded:
    """Outcome of rounding: indices (sorted, K of them when ok), ok flag, account."""

    indices: np.ndarray
    ok: bool
    message: str
    swaps: int = 0


class _State:
    """Incremental bookkeeping of a growing/changing 0/1 selection."""

    def __init__(self, problem: SelectionProblem, track_gains: bool = True) -> None:
        self.P = problem
        self.track_gains = track_gains  # keep h = G^T p current (off for a fixed fill order)
        n = problem.n
        self.x = np.zeros(n, dtype=bool)
        self.p = np.zeros(problem.r)
        self.h = np.zeros(n)  # G^T p
        self.sq = problem.op.col_sq_norms()
        self.budget = 0.0
        rows = problem.rows
        if rows is not None:
            self.Ad = np.asarray(rows.A.toarray()) if rows.A.shape[0] * n <= 5e7 else None
            self.Ax = np.zeros(rows.A.shape[0])
            self.absAx = np.zeros(rows.A.shape[0])  # |A| x: the scale of each row's sum

    def col_rows(self, j: np.ndarray | int) -> np.ndarray:
        A = self.Ad if self.Ad is not None else self.P.rows.A
        col = A[:, j]
        return np.asarray(col.toarray() if hasattr(col, "toarray") else col)

    def row_coefs(self, i: int, cand: np.ndarray) -> np.ndarray:
        """Coefficients of row i at the candidates (len(cand),)."""
        return self.Ad[i, cand] if self.Ad is not None else self.P.rows.A[i, cand].toarray().ravel()

    def add(self, idx: np.ndarray) -> None:
        idx = np.atleast_1d(idx)
        if idx.size == 0:
            return
        self.x[idx] = True
        g = self.P.op.col_sum(idx)
        self.p += g
        if self.track_gains:
            self.h += self.P.op.rmatvec(g)
        self.budget += float(self.P.a[idx].sum())
        if self.P.rows is not None:
            cols = self.P.rows.A[:, idx]
            self.Ax += np.asarray(cols.sum(axis=1)).ravel()
            self.absAx += np.asarray(abs(cols).sum(axis=1)).ravel()

    def swap(self, i: int, j: int) -> None:
        self.x[i], self.x[j] = False, True
        d = self.P.op.columns(np.array([j, i]))
        g = d[:, 0] - d[:, 1]
        self.p += g
        self.h += self.P.op.rmatvec(g)
        self.budget += float(self.P.a[j] - self.P.a[i])
        if self.P.rows is not None:
            cj, ci = self.col_rows(j).ravel(), self.col_rows(i).ravel()
            self.Ax += cj - ci
            self.absAx += np.abs(cj) - np.abs(ci)

    def gains_in(self) -> np.ndarray:
        """f(x + e_j) - f(x) for every j (N,)."""
        P = self.P
        g = P.q * (2.0 * self.h + self.sq)
        return g + P.c if P.c is not None else g

    def losses_out(self) -> np.ndarray:
        """f(x) - f(x - e_i) for every i (N,)."""
        P = self.P
        g = P.q * (2.0 * self.h - self.sq)
        return g + P.c if P.c is not None else g

    def cheapest(self, avail: np.ndarray, m: int) -> np.ndarray:
        """Indices of the m smallest a among available samples, ordered by (a, index): the first
        m of a stable argsort of a restricted to ``avail`` (bool (N,)), in O(N + m log m)."""
        idx = np.flatnonzero(avail)
        return idx[smallest_stable(self.P.a[idx], max(int(m), 0))]

    def cheapest_fill(self, avail: np.ndarray, m: int) -> tuple[float, float]:
        """(sum of the m-1 and of the m smallest a among available samples)."""
        a_sorted = self.P.a[self.cheapest(avail, m)]
        s = np.cumsum(a_sorted[:m])
        s_m = float(s[-1]) if m and s.size >= m else np.inf
        s_m1 = float(s[m - 2]) if m >= 2 and s.size >= m - 1 else 0.0
        return s_m1, s_m


def _row_ok_mask(st: _State, cand: np.ndarray) -> np.ndarray:
    """Candidates whose addition keeps every row's upper side (within tolerance)."""
    rows = st.P.rows
    ok = np.ones(cand.size, dtype=bool)
    for i in np.flatnonzero(np.isfinite(rows.hi)):
        coef = st.row_coefs(i, cand)
        ok &= fits(st.Ax[i] + coef, rows.hi[i], st.absAx[i] + np.abs(coef))
    return ok


def _deficit_helpers(st: _State, cand: np.ndarray) -> np.ndarray | None:
    """Mask of candidates that reduce a row still below its minimum (None if no deficit)."""
    rows = st.P.rows
    deficit = np.flatnonzero(~fits(-st.Ax, -rows.lo, st.absAx))
    if deficit.size == 0:
        return None
    help_ = np.zeros(cand.size, dtype=bool)
    for i in deficit:
        help_ |= st.row_coefs(i, cand) > 0
    return help_


def _available(st: _State) -> np.ndarray:
    return (~st.x) & (st.P.ub > 0)


class _LazyGains:
    """Exact best marginal gain without a full G^T p update per added sample (convex form).

    Keeps h_s = G^T p_s from the last refresh; for the current p,
    gain_j = 2 g_j^T p + ||g_j||^2 + c_j <= 2 h_s,j + 2 ||g_j|| ||p - p_s|| + ||g_j||^2 + c_j
    (Cauchy-Schwarz), so candidates are scored exactly (G[:, S]^T p) in the order of that
    bound until the best exact score beats every remaining bound: the same choice as the full
    update, at a fraction of the products.  A full refresh happens when a step scores too many."""

    def __init__(self, st: _State) -> None:
        self.st, self.P = st, st.P
        self.norms = np.sqrt(st.sq)
        self.refresh()

    def refresh(self) -> None:
        self.p_s = self.st.p.copy()
        self.h_s = self.P.op.rmatvec(self.p_s)
        self.scored = 0

    def best(self, cand: np.ndarray) -> int:
        """The candidate (from ``cand``, ascending indices) with the largest gain; ties -> lowest index."""
        P, st = self.P, self.st
        drift = float(np.linalg.norm(st.p - self.p_s))
        base = 2.0 * self.h_s[cand] + st.sq[cand] + (P.c[cand] if P.c is not None else 0.0)
        if drift == 0.0:
            return int(cand[int(np.argmax(base))])
        bound = base + 2.0 * self.norms[cand] * drift * (1 + 1e-12) + 1e-12 * np.abs(base)
        first = np.argpartition(-bound, min(64, cand.size) - 1)[:64]
        exact = self._exact(cand[first])
        more = bound >= exact.max()
        more[first] = False
        pick, vals = cand[first], exact
        if more.any():
            pick = np.concatenate([pick, cand[more]])
            vals = np.concatenate([vals, self._exact(cand[more])])
        self.scored += pick.size
        best_j = int(pick[vals == vals.max()].min())
        if self.scored > P.n // 4:
            self.refresh()
        return best_j

    def _exact(self, idx: np.ndarray) -> np.ndarray:
        P, st = self.P, self.st
        return 2.0 * P.op.cols_rmatvec(idx, st.p) + st.sq[idx] + (P.c[idx] if P.c is not None else 0.0)


def _fill(st: _State, deadline: float | None, priority: np.ndarray | None = None) -> None:
    """Greedy fill up to K by marginal gain (or a fixed ``priority``) among completable candidates."""
    P = st.P
    lazy = None
    if priority is None and P.q > 0 and st.track_gains:
        st.track_gains = False  # exact gains by _LazyGains; h is recomputed once at the end
        lazy = _LazyGains(st)
    order = np.argsort(P.a, kind="stable") if P.tau is not None else None  # (a, index) order, once
    try:
        while st.x.sum() < P.k:
            avail = _available(st)
            m = P.k - int(st.x.sum())
            cand = np.flatnonzero(avail)
            if cand.size == 0:
                return
            if P.tau is not None:
                cheap = order[np.flatnonzero(avail[order])[:m]]  # the m cheapest available, (a, index) order
                a_cheap = P.a[cheap]
                s_m = float(a_cheap.sum()) if cheap.size >= m else np.inf
                s_m1 = float(a_cheap[: m - 1].sum())
                a_c = P.a[cand]
                # j fits if a_j plus the cheapest m-1 others fit (exact when j is not among them)
                rank_small = np.zeros(P.n, dtype=bool)
                rank_small[cheap[: m - 1]] = True
                ok = fits(st.budget + a_c + s_m1, P.tau) | (rank_small[cand] & fits(st.budget + s_m, P.tau))
                cand = cand[ok]
            if P.rows is not None and cand.size:
                cand = cand[_row_ok_mask(st, cand)]
                helpers = _deficit_helpers(st, cand) if cand.size else None
                if helpers is not None and helpers.any():
                    cand = cand[helpers]
            if cand.size == 0:
                return
            if lazy is not None:
                st.add(lazy.best(cand))
            else:
                score = st.gains_in()[cand] if priority is None else priority[cand]
                st.add(cand[int(np.argmax(score))])
            if deadline is not None and time.monotonic() > deadline:
                # out of time: finish with the cheapest completable samples (no more gain scoring)
                avail = _available(st)
                rest = st.cheapest(avail, P.k - int(st.x.sum()))
                st.add(rest)
                return
    finally:
        if lazy is not None:
            st.h, st.track_gains = P.op.rmatvec(st.p), True


def _violation_total(P: SelectionProblem, x: np.ndarray) -> float:
    """Sum of the relative violations of every constraint (0 when x is feasible)."""
    return sum(v for v in P.relative_violations(x.astype(float)).values() if v > RTOL)


def _swap_repair(st: _State, max_iter: int, rng: np.random.Generator, deadline: float | None = None) -> None:
    """Reduce total violation by single swaps (tries a sample of pairs each round)."""
    P = st.P
    movable_in = lambda: np.flatnonzero(st.x & (P.lb < 1))  # noqa: E731
    for _ in range(max_iter):
        if deadline is not None and time.monotonic() > deadline:
            return
        x = st.x.astype(float)
        cur = _violation_total(P, x)
        if cur == 0.0:
            return
        outs, ins = movable_in(), np.flatnonzero(_available(st))
        if outs.size == 0 or ins.size == 0:
            return
        # prefer outs with large cost / ins with small cost, plus a random sample for variety
        L = 12
        o = np.unique(np.concatenate([outs[np.argsort(-P.a[outs])[:L]], rng.choice(outs, min(L, outs.size), replace=False)]))
        i_ = np.unique(np.concatenate([ins[np.argsort(P.a[ins])[:L]], rng.choice(ins, min(L, ins.size), replace=False)]))
        best, best_pair = cur, None
        for i in o:
            for j in i_:
                x[i], x[j] = 0.0, 1.0
                v = _violation_total(P, x)
                x[i], x[j] = 1.0, 0.0
                if v < best * (1 - 1e-12):
                    best, best_pair = v, (int(i), int(j))
        if best_pair is None:
            return
        st.swap(*best_pair)


def _milp_repair(P: SelectionProblem, lin: np.ndarray, time_limit: float) -> np.ndarray | None:
    """Exact feasibility (max lin^T x) over all linear constraints with HiGHS MILP; None if none."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    rows = P.all_linear_rows()
    res = milp(
        -lin,
        constraints=LinearConstraint(rows.A, rows.lo, rows.hi),
        integrality=np.ones(P.n),
        bounds=Bounds(P.lb, P.ub),
        options={"time_limit": time_limit, "disp": False},
    )
    if res.x is None:
        return None
    return np.flatnonzero(res.x > 0.5)


def diagnose_infeasibility(P: SelectionProblem) -> str:
    """Name the constraint that makes the integer problem infeasible, when one alone does."""
    need = P.min_budget()
    if P.tau is not None and np.isfinite(need) and not fits(need, P.tau):
        return (
            f"budget: no K={P.k} samples fit a^T x <= tau={P.tau:.6g}; the smallest feasible tau is "
            f"{need:.6g} (sum of the K smallest stiff costs). Raise tau/tau_rel or lower K."
        )
    if not np.isfinite(need):
        return f"cardinality: the fixings leave fewer than K={P.k} selectable samples (or more than K must be included)."
    if P.rows is not None:
        from scipy.optimize import linprog

        for con in P.constraints:
            rows = con.linear_rows(P.n)
            if rows is None:
                continue
            A_ub, b_ub = [], []
            for s, b in ((1.0, rows.hi), (-1.0, -rows.lo)):
                f = np.isfinite(b)
                if f.any():
                    A_ub.append(s * rows.A[np.flatnonzero(f)].toarray())
                    b_ub.append(b[f])
            res = linprog(
                np.zeros(P.n), A_ub=np.vstack(A_ub), b_ub=np.concatenate(b_ub),
                A_eq=np.ones((1, P.n)), b_eq=[P.k], bounds=np.column_stack([P.lb, P.ub]), method="highs",
            )
            if res.status == 2:
                return f"{con.name}: cannot be met by any K={P.k} selection (together with the fixings); relax it."
    names = ["cardinality (K)"] + (["budget (tau)"] if P.tau is not None else []) + [c.name for c in P.constraints]
    if P.has_bounds:
        names.append("the must-include/must-exclude fixings")
    return f"no K={P.k} selection satisfies all of: {', '.join(names)} together; relax one of them."


def smallest_stable(keys: np.ndarray, m: int) -> np.ndarray:
    """``np.argsort(keys, kind="stable")[:m]`` in O(n + m log m): partition, then sort the few."""
    if keys.size <= 4 * m:
        return np.argsort(keys, kind="stable")[:m]
    if m <= 0:
        return np.empty(0, dtype=np.int64)
    thr = np.partition(keys, m - 1)[m - 1]
    cand = np.flatnonzero(keys <= thr)  # every tie at the threshold, in index order
    return cand[np.argsort(keys[cand], kind="stable")][:m]


def _local_search(st: _State, max_swaps: int, L: int, deadline: float | None) -> int:
    """Best-improvement 1-swap search over the L most promising ins and outs."""
    P = st.P
    done = 0
    for _ in range(max_swaps):
        if deadline is not None and time.monotonic() > deadline:
            break
        gin, lout = st.gains_in(), st.losses_out()
        ins = np.flatnonzero(_available(st))
        outs = np.flatnonzero(st.x & (P.lb < 1))
        if ins.size == 0 or outs.size == 0:
            break
        # outs: cheapest to lose, and most expensive (they free budget); ins: best gain, and best
        # gain among those the budget can take in exchange for one of the outs
        outs = np.unique(np.concatenate([
            outs[smallest_stable(lout[outs], L)],
            outs[smallest_stable(-P.a[outs], L // 2)],
        ]))
        top_in = ins[smallest_stable(-gin[ins], L)]
        if P.tau is not None:
            cheap = ins[fits(st.budget - float(P.a[outs].max()) + P.a[ins], P.tau, st.budget + P.a[ins])]
            top_in = np.concatenate([top_in, cheap[smallest_stable(-gin[cheap], L)]])
        ins = np.unique(top_in)
        gram = P.op.columns(outs).T @ P.op.columns(ins)  # (Lo, Li)
        gain = gin[ins][None, :] - lout[outs][:, None] - 2.0 * P.q * gram
        ok = np.ones_like(gain, dtype=bool)
        if P.tau is not None:
            ok &= fits(st.budget - P.a[outs][:, None] + P.a[ins][None, :], P.tau)
        if P.rows is not None:
            c_out, c_in = st.col_rows(outs), st.col_rows(ins)
            after = st.Ax[:, None, None] - c_out[:, :, None] + c_in[:, None, :]
            size = st.absAx[:, None, None] + np.abs(c_in)[:, None, :]
            hi, lo = P.rows.hi[:, None, None], P.rows.lo[:, None, None]
            ok &= (fits(after, hi, size) & fits(-after, -lo, size)).all(0)
        thresh = 1e-12 * abs(P.value_from(st.p, st.x.astype(float)))
        gain = np.where(ok, gain, -np.inf)
        applied = False
        for flat in np.argsort(-gain, axis=None, kind="stable")[:8]:
            a_, b_ = np.unravel_index(flat, gain.shape)
            if gain[a_, b_] <= thresh:
                break
            i, j = int(outs[a_]), int(ins[b_])
            if P.nonlinear:
                x = st.x.astype(float)
                x[i], x[j] = 0.0, 1.0
                if any(c.relative_violation(x, P) > RTOL for c in P.nonlinear):
                    continue
            st.swap(i, j)
            done += 1
            applied = True
            break
        if not applied:
            break
    return done


def round_selection(
    problem: SelectionProblem,
    w: np.ndarray | None,
    *,
    local_search: bool = True,
    max_swaps: int = 100,
    swap_pool: int = 32,
    seed: int = 0,
    deadline: float | None = None,
    milp_time_limit: float = 30.0,
    priority: np.ndarray | None = None,
) -> Rounded:
    """Round a continuous w (N,) (or None: start empty, i.e. pure greedy) to K indices.

    ``priority`` (N,) replaces the marginal gain as the fill order (random baseline).
    """
    P = problem
    st = _State(P, track_gains=priority is None)
    notes = []
    fixed_in = np.flatnonzero(P.lb >= 1)
    if fixed_in.size > P.k:
        return Rounded(np.empty(0, np.int64), False, f"cardinality: {fixed_in.size} must-include samples exceed K={P.k}.")
    st.add(fixed_in)
    if w is not None:
        w = np.asarray(w, dtype=np.float64)
        near = np.flatnonzero((w >= NEAR_ONE) & _available(st))
        near = near[np.argsort(-w[near], kind="stable")][: P.k - int(st.x.sum())]
        trial = st.x.copy()
        trial[near] = True
        m_rest = P.k - int(trial.sum())
        avail_after = (~trial) & (P.ub > 0)
        fit = True
        if P.tau is not None:
            _, s_rest = st.cheapest_fill(avail_after, m_rest) if m_rest else (0.0, 0.0)
            fit = fits(float(P.a[trial].sum()) + s_rest, P.tau)
        if P.rows is not None:
            ax = P.rows.A @ trial.astype(float)
            fit = fit and bool(fits(ax, P.rows.hi, abs(P.rows.A) @ trial.astype(float)).all())
        if fit:
            st.add(near)
            notes.append(f"kept {near.size} near-integral entries of w")
        else:
            notes.append("near-integral part of w did not fit the constraints; filled greedily instead")
    _fill(st, deadline, priority)
    rng = np.random.default_rng(seed)
    if P.constraints and (st.x.sum() != P.k or _violation_total(P, st.x) > 0.0):
        _swap_repair(st, max_iter=50, rng=rng, deadline=deadline)
        if st.x.sum() == P.k and _violation_total(P, st.x) == 0.0:
            notes.append("swap repair restored feasibility")
    feasible = st.x.sum() == P.k and P.is_feasible(st.x.astype(float))
    if not feasible and not P.nonlinear:
        lin = P.gradient(w) if w is not None else st.gains_in()
        sel = _milp_repair(P, lin, milp_time_limit)
        if sel is not None and sel.size == P.k and P.is_feasible(_indicator(P.n, sel)):
            st = _State(P)
            st.add(sel)
            feasible = True
            notes.append("greedy rounding could not meet the constraints; an exact MILP (HiGHS) found a feasible selection")
    if not feasible:
        return Rounded(np.empty(0, np.int64), False, "infeasible: " + diagnose_infeasibility(P))
    swaps = 0
    if not st.track_gains:
        st.h, st.track_gains = P.op.rmatvec(st.p), True
    if local_search:
        swaps = _local_search(st, max_swaps, swap_pool, deadline)
        notes.append(f"1-swap local search made {swaps} swaps")
    return Rounded(np.flatnonzero(st.x).astype(np.int64), True, "; ".join(notes), swaps)


def _indicator(n: int, idx: np.ndarray) -> np.ndarray:
    x = np.zeros(n)
    x[idx] = 1.0
    return x
