"""Argument types, checks and the problem arguments shared by the ``direct-opt`` subcommands.

:mod:`direct_opt.cli` registers the subcommand modules (:mod:`direct_opt.compare`,
:mod:`direct_opt.demo`, :mod:`direct_opt.schedule.cli`, ...); they take their shared pieces
from here, so no subcommand imports the command-line entry point back.
"""

from __future__ import annotations

import argparse
import math



def one_line(text: object) -> str:
    """``str(text)`` with every line break (\\n, \\r, \\x0b, \\u2028, ...) replaced by a space."""
    return " ".join(str(text).splitlines())


class UsageError(Exception):
    """Bad command-line arguments (exit code 2)."""


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def finite_float(text: str) -> float:
    """argparse type: a finite number."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return v


def add_problem_args(p: argparse.ArgumentParser) -> None:
    """--stats / -k / --tau-rel | --tau, shared by solve and compare."""
    p.add_argument("--stats", required=True, help="stats directory written by GradientStats.save / extract")
    p.add_argument("-k", "--k", dest="k", type=positive_int, required=True, help="number of samples to select")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tau-rel", type=finite_float, default=None,
                   help="the paper's budget tau = tau_rel * mean(a) * K (paper: 0.1; may admit no selection)")
    g.add_argument("--tau", type=finite_float, default=None, help="absolute stiff budget")
    g.add_argument("--budget-frac", type=finite_float, default=None,
                   help="default budget tau = tau_min + FRAC * (mean(a) K - tau_min), tau_min = cost of the "
                        "cheapest K samples: always feasible (default 0.1)")
    p.add_argument("--mmap", action="store_true", help="memory-map the stats instead of reading them into RAM")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the SHA-256 check of the stats files against their manifest (trusted files only)")
    p.add_argument("--max-iter", type=positive_int, default=20, help="T_max (default 20)")
    p.add_argument("--tol", type=finite_float, default=1e-4, help="delta: stop when ||w_t+1 - w_t|| < tol")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-limit", type=finite_float, default=None, help="seconds; returns the best feasible selection so far")
    from .certificates import CERTIFY_METHODS

    p.add_argument("--certify", choices=sorted(CERTIFY_METHODS), default="auto",
                   help="upper bound behind the certified ratio: " + "; ".join(f"{k}: {v}" for k, v in CERTIFY_METHODS.items()))


def load_problem(args: argparse.Namespace):
    """(stats, problem) from the shared arguments."""
    from .problem import SelectionProblem
    from .stats import GradientStats

    stats = GradientStats.load(args.stats, mmap=args.mmap, verify=not getattr(args, "no_verify", False))
    from .problem import DEFAULT_BUDGET_FRAC

    frac = DEFAULT_BUDGET_FRAC if getattr(args, "budget_frac", None) is None else args.budget_frac
    return stats, SelectionProblem.from_stats(stats, k=args.k, tau_rel=args.tau_rel, tau=args.tau, budget_frac=frac)
