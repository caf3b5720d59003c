"""The ``direct-opt`` command.

    direct-opt backends
    direct-opt solve --stats DIR -k K [--tau-rel 0.1 | --tau T] [--backend NAME] [--out selection.json]
    direct-opt compare --stats DIR -k K [--backends a,b] [--plot out.png]
    direct-opt select --stats DIR -k K [--selector direct] [--write-back rows.jsonl --data pool.jsonl]
    direct-opt extract ...      (Hugging Face causal LM; needs the [hf] extra)
    direct-opt demo [--out DIR] [--quick] [--seed S]
    direct-opt evaluate ...
    direct-opt online ...       (online batch selection vs static selection)
    direct-opt schedule fit|predict|optimize|collect ...   (loss laws for the LR schedule)

Every command first checks all of its arguments (paths, numbers, names, that --out/--plot can
be written) in one validation pass, before any work.  Bad arguments print one line
``direct-opt: error: ...`` and exit 2; failures exit 1; Ctrl-C exits 130 with a message.
``--debug`` shows tracebacks.  A closed stdout pipe (``... | head``) silences the remaining
output but never stops a command from writing its files.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__

# subcommand -> module providing add_parser(subparsers) and run(args) -> int
SUBCOMMANDS = {
    "extract": "direct_opt.extract.cli",
    "demo": "direct_opt.demo",
    "evaluate": "direct_opt.evaluate.cli",
    "compare": "direct_opt.compare",
    "select": "direct_opt.selectors.cli",
    "online": "direct_opt.online.cli",
    "schedule": "direct_opt.schedule.cli",
}
# subcommands whose modules import torch: registered by name and help only unless they are
# the command being run, so `direct-opt solve/backends/compare` start without torch
HEAVY_HELP = {
    "extract": "compute gradient statistics of a Hugging Face causal LM on a text pool",
    "evaluate": "anneal on each selector's K samples over seeds and compare with random",
    "online": "online batch selection (blade, rho-loss, greats, ...) vs static selection",
}


def one_line(text: object) -> str:
    """``str(text)`` with every line break (\\n, \\r, \\x0b, \\u2028, ...) replaced by a space."""
    return " ".join(str(text).splitlines())


class UsageError(Exception):
    """Bad command-line arguments (exit code 2)."""


def plain_text(text: str) -> str:
    """Docstring markup as terminal text: ``x`` and :func:`x` (reST) become `x`."""
    text = re.sub(r":(?:func|mod|class|meth|data|attr|exc):`~?([^`]+)`", r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


# ------------------------------------------------------------------ validation pass helpers
# Each subcommand registers ``check(args)`` (set_defaults(check=...)); main() runs it before
# ``func(args)``, so every bad argument fails in milliseconds with exit 2, before any work.

def check_number(value: Any, flag: str, *, minimum: float | None = None, above: float | None = None,
                 maximum: float | None = None, integer: bool = False) -> None:
    """UsageError unless ``value`` (None = not given) is a finite number (an integer when
    ``integer``) with value >= minimum, > above and <= maximum."""
    import math

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


def _check_solve(args: argparse.Namespace) -> None:
    from .solvers import available_backends

    check_problem_args(args)
    if args.backend not in available_backends():
        raise UsageError(f"unknown backend {args.backend!r}; known backends: {available_backends()}")
    check_output(args, "--out", allow_stdout=True)
    check_device(args.device)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise UsageError(message)

    def format_help(self) -> str:  # descriptions are module docstrings: no reST markup on the terminal
        return plain_text(super().format_help())


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def _finite_float(text: str) -> float:
    import math

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
    p.add_argument("-k", "--k", dest="k", type=_positive_int, required=True, help="number of samples to select")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tau-rel", type=_finite_float, default=None,
                   help="the paper's budget tau = tau_rel * mean(a) * K (paper: 0.1; may admit no selection)")
    g.add_argument("--tau", type=_finite_float, default=None, help="absolute stiff budget")
    g.add_argument("--budget-frac", type=_finite_float, default=None,
                   help="default budget tau = tau_min + FRAC * (mean(a) K - tau_min), tau_min = cost of the "
                        "cheapest K samples: always feasible (default 0.1)")
    p.add_argument("--mmap", action="store_true", help="memory-map the stats instead of reading them into RAM")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the SHA-256 check of the stats files against their manifest (trusted files only)")
    p.add_argument("--max-iter", type=_positive_int, default=20, help="T_max (default 20)")
    p.add_argument("--tol", type=_finite_float, default=1e-4, help="delta: stop when ||w_t+1 - w_t|| < tol")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-limit", type=_finite_float, default=None, help="seconds; returns the best feasible selection so far")
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


def selection_record(res, stats, problem, args: argparse.Namespace) -> dict[str, Any]:
    """Everything needed to audit and reproduce a selection."""
    params = {
        "k": problem.k, "tau": problem.tau, "tau_rel": getattr(problem, "tau_rel", None),
        "max_iter": args.max_iter, "tol": args.tol, "seed": args.seed, "time_limit": args.time_limit,
        "certify": getattr(args, "certify", "auto"),
        "local_search": not getattr(args, "no_local_search", False),
        "device": getattr(args, "device", None),
    }
    if getattr(problem, "budget_frac", None) is not None:  # the default budget (no --tau / --tau-rel)
        params["budget_frac"] = problem.budget_frac
    return {
        "direct_opt_version": __version__,
        "backend": res.backend,
        "parameters": params,
        "stats": {"path": str(Path(args.stats).resolve()), "checksum": stats.checksum(), "n": stats.n, "r": stats.r,
                  "checksums_verified": bool(getattr(stats, "checksums_verified", False))},
        "environment": _environment(),
        "result": res.to_dict(),
    }


def _environment() -> dict[str, str]:
    """Versions that can change floating-point results (see docs/reliability.md)."""
    import platform

    import numpy
    import scipy

    return {"python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__,
            "machine": platform.machine(), "system": platform.system()}


def _first_paragraph(doc: str | None) -> str:
    """The first paragraph of a docstring, as one line."""
    lines = []
    for line in (doc or "").strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    return " ".join(lines)


def backends_table(width: int | None = None) -> str:
    """``direct-opt backends``: aligned name / forms / constraints columns and each backend's full
    one-paragraph description, wrapped to ``width`` (default: the terminal's)."""
    import shutil
    import textwrap

    from .solvers import available_backends, get_backend

    rows = [("backend", "forms", "constraints", "description")]
    for name in available_backends():
        b = get_backend(name)
        rows.append((name, ",".join(sorted(b.forms)), ",".join(sorted(b.kinds)), _first_paragraph(type(b).__doc__)))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    indent = sum(w) + 6
    width = width or shutil.get_terminal_size((120, 24)).columns
    out = []
    for r in rows:
        head = f"{r[0]:{w[0]}}  {r[1]:{w[1]}}  {r[2]:{w[2]}}  "
        desc = textwrap.wrap(r[3], max(30, width - indent)) or [""]
        out.append(head + desc[0])
        out += [" " * indent + line for line in desc[1:]]
    return "\n".join(out)


def _cmd_backends(args: argparse.Namespace) -> int:
    print(backends_table())
    return 0


def _cmd_solve(args: argparse.Namespace) -> int:
    from .output import STDOUT, write_output
    from .solvers import solve

    stats, problem = load_problem(args)
    kw = {} if not args.no_local_search else {"local_search": False}
    res = solve(problem, backend=args.backend, max_iter=args.max_iter, tol=args.tol, seed=args.seed,
                time_limit=args.time_limit, device=args.device, certify=args.certify, **kw)
    log = sys.stderr if args.out == STDOUT else sys.stdout  # `--out -`: stdout holds the JSON only
    infeasible = res.status == "infeasible"
    path = None
    if args.out is not None and not (infeasible and args.out == STDOUT):  # the file first: a closed stdout
        # must not cost the result. An infeasible solve writes its status record beside --out, never
        # something at --out that a pipeline could take for a selection.
        path = args.out if args.out == STDOUT else (status_path(args.out) if infeasible else Path(args.out))
        write_output(path, json.dumps(selection_record(res, stats, problem, args), indent=1))
    print(res.summary(), file=log)
    if path is not None and path != STDOUT:
        print(f"{'status (no selection)' if infeasible else 'selection'} written to {path}", file=log)
    if infeasible:
        print(f"direct-opt: error: {one_line(res.message)}", file=sys.stderr)
        return 1
    return 0


def status_path(out: str | Path) -> Path:
    """Where an infeasible solve records its status: ``sel.json`` -> ``sel.infeasible.json``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.infeasible{out.suffix or '.json'}")


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (its first non-option word; top-level options take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; given ``argv``, the torch-importing subcommands other than the one
    ``argv`` names get a placeholder (name and help) instead of their real parser."""
    command = None if argv is None else _command_of(argv)
    parser = _Parser(prog="direct-opt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"direct-opt {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    p = sub.add_parser("backends", help="list the solver backends")
    p.set_defaults(func=_cmd_backends)
    p = sub.add_parser("solve", help="select K samples from precomputed gradient statistics")
    add_problem_args(p)
    p.add_argument("--backend", default="sca-exact", help="solver backend (see `direct-opt backends`)")
    p.add_argument("--no-local-search", action="store_true", help="skip the 1-swap local search after rounding")
    p.add_argument("--out", default=None, help="write indices + certificates as JSON here ('-': stdout)")
    p.add_argument("--device", default=None,
                   help="torch device for the products with G, e.g. cuda (default: numpy on the CPU)")
    p.set_defaults(func=_cmd_solve, check=_check_solve)
    for name, module in SUBCOMMANDS.items():
        if argv is not None and name in HEAVY_HELP and name != command:
            sub.add_parser(name, help=HEAVY_HELP[name])
            continue
        try:
            importlib.import_module(module).add_parser(sub)
        except ModuleNotFoundError as exc:
            if not exc.name or not module.startswith(exc.name):
                raise
    return parser


#: errors that mean "bad arguments" wherever they are raised (exit 2, like UsageError)
def _is_usage(exc: BaseException) -> bool:
    from .errors import InvalidParameterError, OutputPathError, UnknownNameError, UnsupportedConstraintError

    return isinstance(exc, (UsageError, InvalidParameterError, OutputPathError, UnknownNameError,
                            UnsupportedConstraintError))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``direct-opt`` console script."""
    from .output import pipe_safe_stdout

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser(argv).parse_args(argv)
        if not getattr(args, "command", None):
            raise UsageError("no command given; try `direct-opt --help`")
        if getattr(args, "check", None) is not None:
            args.check(args)  # the validation pass: every argument, before any work
        with pipe_safe_stdout():
            return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"direct-opt: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("direct-opt: interrupted (Ctrl-C); nothing was written for the unfinished step.", file=sys.stderr)
        return 130
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0) if isinstance(exc.code, int) else 0
    except Exception as exc:  # noqa: BLE001 - the CLI never shows a traceback unless asked
        if debug:
            raise
        msg = one_line(exc) or type(exc).__name__
        print(f"direct-opt: error: {type(exc).__name__}: {msg}", file=sys.stderr)
        return 2 if _is_usage(exc) else 1


if __name__ == "__main__":  # pragma: no cover - `python -m direct_opt.cli`: use the package's module, so
    from direct_opt.cli import main as _main  # its UsageError is the one the subcommands raise

    sys.exit(_main())
