"""Argument types, checks and the problem arguments shared by the ``direct-opt`` subcommands.

:mod:`direct_opt.cli` registers the subcommand modules (:mod:`direct_opt.compare`,
:mod:`direct_opt.demo`, :mod:`direct_opt.schedule.cli`, ...); they take their shared pieces
from here, so no subcommand imports the command-line entry point back.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any



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


# ------------------------------------------------------------------ validation pass helpers
# Each subcommand registers ``check(args)`` (set_defaults(check=...)); main() runs it before
# ``func(args)``, so every bad argument fails in milliseconds with exit 2, before any work.

def check_number(value: Any, flag: str, *, minimum: float | None = None, above: float | None = None,
                 maximum: float | None = None, integer: bool = False) -> None:
    """UsageError unless ``value`` (None = not given) is a finite number (an integer when
    ``integer``) with value >= minimum, > above and <= maximum."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise UsageError(f"{flag} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise UsageError(f"{flag} must be finite, got {value!r}")
    if minimum is not None and value < minimum:
        raise UsageError(f"{flag} must be >= {minimum}, got {value!r}")
    if above is not None and value <= above:
        raise UsageError(f"{flag} must be > {above}, got {value!r}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{flag} must be <= {maximum}, got {value!r}")


def check_input_path(path: Any, flag: str, *, kind: str = "file") -> Path:
    """UsageError unless ``path`` names an existing readable file (``kind="file"``), directory
    (``kind="dir"``) or either (``kind="any"``); NUL bytes and empty names included."""
    import os

    text = "" if path is None else str(path)
    if not text.strip():
        raise UsageError(f"{flag} is empty; give a {'directory' if kind == 'dir' else 'file'} path")
    if "\x00" in text:
        raise UsageError(f"{flag} {text!r} contains a NUL byte")
    p = Path(text)
    if not p.exists():
        raise UsageError(f"{flag} {p} does not exist")
    if kind == "dir" and not p.is_dir():
        raise UsageError(f"{flag} {p} is not a directory")
    if kind == "file" and p.is_dir():
        raise UsageError(f"{flag} {p} is a directory; give a file")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{flag} {p} is not readable")
    return p


def check_output(args: argparse.Namespace, flag: str = "--out", *, kind: str = "file",
                 allow_stdout: bool = False) -> None:
    """UsageError unless the output named by ``flag`` (attribute of ``args``) can be written;
    see :func:`direct_opt.output.check_output_file` / :func:`~direct_opt.output.check_output_dir`."""
    from .errors import OutputPathError
    from .output import check_output_dir, check_output_file

    value = getattr(args, flag.lstrip("-").replace("-", "_"))
    if value is None:
        return
    try:
        check_output_dir(value, flag) if kind == "dir" else check_output_file(value, flag, allow_stdout=allow_stdout)
    except OutputPathError as exc:
        raise UsageError(str(exc)) from None


def check_device(device: Any, flag: str = "--device") -> None:
    """UsageError unless ``device`` (None = not given) is a torch device this machine has."""
    if device is None:
        return
    try:
        import torch

        dev = torch.device(str(device))
    except ImportError:
        raise UsageError(f"{flag} {device} needs torch, which is not installed") from None
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"{flag} {device!r} is not a torch device ({one_line(exc)}); e.g. cpu, cuda, cuda:1") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{flag} {device}: CUDA is not available on this machine (torch {torch.__version__}); use cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UsageError(f"{flag} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def check_problem_args(args: argparse.Namespace) -> None:
    """Validation pass of the arguments shared by solve and compare (reads only the manifest)."""
    from .errors import StatsFormatError
    from .stats import read_manifest

    d = check_input_path(args.stats, "--stats", kind="dir")
    check_number(args.tau_rel, "--tau-rel", above=0.0)
    check_number(args.tau, "--tau", minimum=0.0)
    check_number(args.tol, "--tol", minimum=0.0)
    check_number(args.time_limit, "--time-limit", above=0.0)
    check_number(args.seed, "--seed", minimum=0, integer=True)
    try:
        n = read_manifest(d).get("n")
    except StatsFormatError:
        return  # the load reports the damage in full (exit 1)
    if isinstance(n, int) and args.k > n:
        raise UsageError(f"-k {args.k} exceeds the pool size N={n} of {d}; choose 1 <= K <= {n}")
