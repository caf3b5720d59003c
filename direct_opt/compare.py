"""``direct-opt compare``: several solver backends on the same selection problem.

    direct-opt compare --stats DIR -k K [--tau-rel 0.1 | --tau T] [--backends sca-exact,greedy,...]
                       [--plot backends.png] [--out compare.json]

Every backend solves the same :class:`~direct_opt.problem.SelectionProblem` (same stats,
K, budget, iteration limits and seed). The table shows, per backend: wall-clock solve
time, the integer objective f(x) = ||G x||², f relative to the best backend, whether the
selection is feasible (re-checked here: exactly K distinct indices, every constraint
met), the backend's certified ratio f(x) / upper bound, outer iterations, and the
Jaccard overlap |S ∩ S_1| / |S ∪ S_1| of its selection with the first backend's.
Every backend's upper bound is valid for the same program, so the tightest one is also
reported with the best objective's ratio to it.

A backend that fails (an error, even running out of memory) gets a row saying so; the
others' results are kept.

Exit status: 0 when at least one backend found a feasible selection, 1 when none did
(the problem is infeasible: the reason is printed), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .defaults import COMPARE_BACKENDS

FORMAT = "direct_opt.compare"
VERSION = 1
#: default order: the default backend first (the Jaccard reference), the paper-faithful one last.
DEFAULT_BACKENDS = COMPARE_BACKENDS


def add_parser(subparsers: Any) -> None:
    """Register ``direct-opt compare``."""
    from .cli import add_problem_args

    p = subparsers.add_parser("compare", help="run several solver backends on the same problem and compare them",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_problem_args(p)
    p.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                   help="comma-separated backend names, the first is the Jaccard reference "
                        f"(default {','.join(DEFAULT_BACKENDS)}; add sca-osqp for constraints only cvxpy "
                        "can express, it is slow on the standard program)")
    p.add_argument("--no-local-search", action="store_true", help="skip the 1-swap local search after rounding")
    p.add_argument("--plot", default=None, help="write a PNG comparison plot here")
    p.add_argument("--out", default=None, help="write every result (indices, certificates) as JSON here ('-': stdout)")
    p.set_defaults(func=run, check=check)


def check(args: argparse.Namespace) -> None:
    """The validation pass of ``direct-opt compare`` (before any solve)."""
    from .cli import check_output, check_problem_args

    check_problem_args(args)
    parse_backends(args.backends)
    check_output(args, "--plot")
    check_output(args, "--out", allow_stdout=True)


def parse_backends(text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``; unknown, duplicate or no names raise UsageError (exit 2)."""
    from .cli import UsageError
    from .solvers import available_backends

    names = [b.strip() for b in str(text).split(",") if b.strip()]
    if not names:
        raise UsageError("--backends is empty; give e.g. --backends sca-exact,greedy")
    bad = [b for b in names if b not in available_backends()]
    if bad:
        raise UsageError(f"unknown backend(s) {bad} in --backends; known backends: {available_backends()}")
    dup = sorted({b for b in names if names.count(b) > 1})
    if dup:
        raise UsageError(f"--backends lists {dup} more than once")
    return names


def jaccard(a: Sequence[int], b: Sequence[int]) -> float | None:
    """|A ∩ B| / |A ∪ B| of two index sets (None when both are empty)."""
    sa, sb = set(int(i) for i in a), set(int(i) for i in b)
    union = len(sa | sb)
    return None if union == 0 else len(sa & sb) / union


def check_selection(problem: Any, indices: np.ndarray) -> bool:
    """True when ``indices`` are exactly K distinct in-range samples meeting every constraint."""
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size != problem.k or np.unique(idx).size != idx.size or (idx.size and (idx.min() < 0 or idx.max() >= problem.n)):
        return False
    x = np.zeros(problem.n)
    x[idx] = 1.0
    return bool(problem.is_feasible(x))


def compare_backends(problem: Any, backends: Sequence[str], *, max_iter: int = 20, tol: float = 1e-4,
                     seed: int = 0, time_limit: float | None = None,
                     local_search: bool | None = None, certify: str = "auto") -> dict[str, dict[str, Any]]:
    """Solve ``problem`` with each backend; returns name -> row (see :func:`table` for the fields).

    A backend that fails — a direct_opt error (e.g. it cannot honour a constraint), a bug, or
    running out of memory — gets a row with ``error`` set instead of stopping the comparison.
    Ctrl-C still stops it.
    """
    from .solvers import solve

    rows: dict[str, dict[str, Any]] = {}
    for name in backends:
        kw = {} if local_search is None else {"local_search": local_search}
        try:
            res = solve(problem, backend=name, max_iter=max_iter, tol=tol, seed=seed, time_limit=time_limit,
                        certify=certify, **kw)
        except Exception as exc:  # noqa: BLE001 - one backend's failure must not take the others down
            from .cli import one_line

            rows[name] = {"backend": name, "error": f"{type(exc).__name__}: {one_line(exc)}", "feasible": False,
                          "status": "error", "upper_bound": None}
            continue
        ok = res.success and check_selection(problem, res.indices)
        rows[name] = {"backend": name, "error": None, "result": res, "feasible": ok, "status": res.status,
                      "time_s": res.time_s, "objective": res.objective if ok else None,
                      "upper_bound": res.upper_bound, "certified_ratio": res.certified_ratio if ok else None,
                      "iterations": res.iterations, "indices": [int(i) for i in res.indices],
                      "message": res.message}
    best = max((r["objective"] for r in rows.values() if r["feasible"]), default=None)
    ref = rows[backends[0]] if backends else None
    for r in rows.values():
        r["relative_to_best"] = (r["objective"] / best if r["feasible"] and best and best > 0 else None)
        r["jaccard_vs_first"] = (jaccard(r["indices"], ref["indices"]) if r["feasible"] and ref and ref["feasible"]
                                 else None)
    return rows


def tightest_bound(rows: dict[str, dict[str, Any]]) -> tuple[float | None, str | None]:
    """The smallest finite upper bound any backend reported, and which backend gave it."""
    ubs = [(r["upper_bound"], n) for n, r in rows.items()
           if r.get("upper_bound") is not None and math.isfinite(r["upper_bound"])]
    return min(ubs) if ubs else (None, None)


def _f(x: Any, fmt: str) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def table(rows: dict[str, dict[str, Any]]) -> str:
    """Markdown table, one row per backend."""
    first = next(iter(rows), "")
    head = ["backend", "time (s)", "objective f", "f / best", "feasible", "certified ratio", "iterations",
            f"Jaccard vs {first}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for name, r in rows.items():
        if r.get("error"):
            err = r["error"].replace("|", "/")
            lines.append(f"| {name} | n/a | n/a | n/a | NO (error: {err}) | n/a | n/a | n/a |")
            continue
        feas = "yes" if r["feasible"] else f"NO ({r['status']})"
        lines.append("| " + " | ".join([
            name, _f(r["time_s"], ".3f"), _f(r["objective"], ".6g"), _f(r["relative_to_best"], ".4f"), feas,
            _f(r["certified_ratio"], ".4f"), str(r["iterations"]), _f(r["jaccard_vs_first"], ".3f")]) + " |")
    return "\n".join(lines)


def record(rows: dict[str, dict[str, Any]], stats: Any, problem: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The JSON written by ``--out``: parameters, stats identity, every backend's full result."""
    from . import __version__
    from .result import _jsonable

    ub, ub_from = tightest_bound(rows)
    out = {}
    for name, r in rows.items():
        entry = {k: v for k, v in r.items() if k != "result"}
        if "result" in r:
            entry["result"] = r["result"].to_dict()
        out[name] = entry
    return _jsonable({
        "format": FORMAT, "version": VERSION, "direct_opt_version": __version__,
        "parameters": {"k": problem.k, "tau": problem.tau, "tau_rel": getattr(problem, "tau_rel", None),
                       "max_iter": args.max_iter, "tol": args.tol, "seed": args.seed, "time_limit": args.time_limit,
                       "local_search": not args.no_local_search},
        "stats": {"path": str(Path(args.stats).resolve()), "checksum": stats.checksum(), "n": stats.n, "r": stats.r},
        "backends": list(rows), "tightest_upper_bound": ub, "tightest_upper_bound_from": ub_from, "results": out,
    })


def run(args: argparse.Namespace) -> int:
    """``direct-opt compare`` entry point."""
    from .cli import load_problem
    from .output import STDOUT, write_output

    backends = parse_backends(args.backends)
    stats, problem = load_problem(args)
    rows = compare_backends(problem, backends, max_iter=args.max_iter, tol=args.tol, seed=args.seed,
                            time_limit=args.time_limit, local_search=False if args.no_local_search else None,
                            certify=args.certify)
    log = sys.stderr if args.out == STDOUT else sys.stdout  # `--out -`: stdout holds the JSON only
    written = []
    if args.out is not None:  # files first: a closed stdout must not cost the results
        write_output(args.out if args.out == STDOUT else Path(args.out),
                     json.dumps(record(rows, stats, problem, args), indent=1))
        if args.out != STDOUT:
            written.append(f"comparison written to {args.out}")
    ok = {n: r["result"] for n, r in rows.items() if r["feasible"]}
    if args.plot and ok:
        from .plotting import plot_backend_comparison

        plot_backend_comparison(ok, path=args.plot, title=f"Backends on N={problem.n}, K={problem.k}")
        written.append(f"plot written to {args.plot}")
    tau = "none" if problem.tau is None else f"{problem.tau:.6g}"
    print(f"N={problem.n}, K={problem.k}, tau={tau}, stats {args.stats}", file=log)
    print(table(rows), file=log)
    feasible = list(ok)
    ub, ub_from = tightest_bound(rows)
    if feasible:
        best = max(feasible, key=lambda n: rows[n]["objective"])
        ratio = rows[best]["objective"] / ub if ub and ub > 0 else None
        print(f"best objective: {best} ({rows[best]['objective']:.6g}); tightest upper bound {_f(ub, '.6g')} "
              f"(from {ub_from}): best / tightest bound = {_f(ratio, '.4f')}", file=log)
    else:
        why = next((r.get("message") or r.get("error") for r in rows.values() if r.get("message") or r.get("error")),
                   "no backend returned a selection")
        print(f"no backend found a feasible selection: {why}", file=log)
    for line in written:
        print(line, file=log)
    log.flush()
    return 0 if feasible else 1
