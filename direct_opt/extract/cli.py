"""``direct-opt extract``: gradient statistics of a Hugging Face causal LM on text/JSONL files.

    direct-opt extract --model gpt2 --train pool.jsonl --val val.txt --out runs/stats1 \
        --k-sketch 2048 --projector sjlt --batch-size 8 --max-length 128

A ``.jsonl`` file gives one sample per line (field ``--text-field``, default ``text``); any
other file gives one sample per non-empty line. Needs the [hf] extra (transformers).
The run directory ``--out`` is resumable: re-run the same command after an interruption.
Under ``torchrun --nproc-per-node P`` the ranks split the validation and pool batches and
write into the same ``--out`` (gloo on CPU, NCCL with ``--device cuda``); see docs/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .config import DTYPES, ExtractConfig


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``extract`` subcommand on an argparse ``subparsers`` object."""
    from .curvature import CURVATURES
    from .elbow import ELBOWS
    from .projector_registry import PROJECTORS

    p = subparsers.add_parser(
        "extract", help="compute gradient statistics of a Hugging Face causal LM on a text pool",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="Hugging Face model id or local path")
    p.add_argument("--train", required=True, help="candidate pool: .jsonl or text file (one sample per line)")
    p.add_argument("--val", required=True, help="validation set: .jsonl or text file")
    p.add_argument("--out", required=True, help="run directory (resumable); final stats in OUT/stats")
    p.add_argument("--text-field", default="text", help="JSONL field holding the text (default: text)")
    p.add_argument("--max-length", type=int, default=128, help="tokens per sample (truncate/pad)")
    p.add_argument("--k-sketch", type=int, default=2048)
    p.add_argument("--projector", default="gaussian", choices=sorted(PROJECTORS))
    p.add_argument("--curvature", default="fisher", choices=sorted(CURVATURES))
    p.add_argument("--elbow", default="energy", choices=sorted(ELBOWS))
    p.add_argument("--elbow-energy", type=float, default=0.945)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--params", default=None,
                   help="comma-separated fnmatch patterns of parameter names to use (default: all)")
    p.add_argument("--no-store-stiff", action="store_true", help="do not keep the stiff coordinates")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run, check=check)
    return p


def check(args: argparse.Namespace) -> None:
    """The validation pass of ``direct-opt extract``: input files, output directory and numbers,
    before the model is loaded (the helpers are in :mod:`direct_opt.cli`)."""
    from ..cli import check_input_path, check_number, check_output

    check_input_path(args.train, "--train")
    check_input_path(args.val, "--val")
    check_output(args, "--out", kind="dir")
    check_number(args.k_sketch, "--k-sketch", minimum=1, integer=True)
    check_number(args.batch_size, "--batch-size", minimum=1, integer=True)
    check_number(args.elbow_energy, "--elbow-energy", above=0.0, maximum=1.0)
    check_number(args.seed, "--seed", minimum=0, integer=True)


def read_texts(path: str | Path, text_field: str = "text") -> list[str]:
    """Samples of a .jsonl file (one object per line) or of a text file (one per non-empty line)."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        out = []
        for no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            if text_field not in obj:
                raise ValueError(f"{path}:{no}: no field {text_field!r} (use --text-field)")
            out.append(str(obj[text_field]))
        return out
    return [ln for ln in lines if ln.strip()]


def _param_filter(spec: str | None):
    if not spec:
        return None
    import fnmatch

    pats = [s.strip() for s in spec.split(",") if s.strip()]
    return lambda name: any(fnmatch.fnmatchcase(name, p) for p in pats)


def run(args: argparse.Namespace) -> int:
    """Execute ``direct-opt extract``; returns the process exit code."""
    from ..errors import DirectOptError
    from .hf import hf_causal_lm_loss, load_causal_lm, tokenize_texts
    from .pipeline import extract_stats

    rank = 0
    try:
        from ..distributed import init_from_env

        comm = init_from_env("nccl" if args.device.startswith("cuda") else "gloo")
        rank = comm.rank
        train_txt = read_texts(args.train, args.text_field)
        val_txt = read_texts(args.val, args.text_field)
        model, tok = load_causal_lm(args.model, args.device)
        cfg = ExtractConfig(
            k_sketch=args.k_sketch, projector=args.projector, elbow_energy=args.elbow_energy, elbow=args.elbow,
            param_filter=_param_filter(args.params), batch_size=args.batch_size, dtype=args.dtype,
            device=args.device, seed=args.seed, curvature=args.curvature, out_dir=args.out,
            store_stiff=not args.no_store_stiff, verbose=not args.quiet and rank == 0,
        )
        stats = extract_stats(model, hf_causal_lm_loss(), tokenize_texts(tok, train_txt, args.max_length),
                              tokenize_texts(tok, val_txt, args.max_length), cfg, comm=comm)
    except ImportError as exc:
        print(f"direct-opt extract: {exc}", file=sys.stderr)
        return 2
    except (DirectOptError, OSError, ValueError) as exc:
        print(f"direct-opt extract: error: {exc}", file=sys.stderr)
        return 1
    if rank != 0:
        return 0
    print(f"wrote {Path(args.out) / 'stats'}: N={stats.n}, k={stats.k_star + stats.r}, k*={stats.k_star}, r={stats.r}")
    return 0
