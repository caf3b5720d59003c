"""``direct-opt select``: run a selector on saved gradient statistics; optionally write the
chosen rows of the dataset back to disk.

    direct-opt select --stats runs/stats1/stats -k 500 --selector direct --out sel.json
    direct-opt select --stats runs/stats1/stats -k 500 --selector less \\
        --write-back chosen.jsonl --data pool.jsonl          # + chosen.jsonl.index.json

--option key=value passes a selector option (repeatable; values parsed as JSON when they
can be, e.g. --option backend=greedy --option tau_rel=0.3). --write-back writes the rows of
--data (the dataset the stats were extracted from: same formats as ``direct-opt extract``)
as JSONL (.jsonl), parquet (.parquet) or a ``save_to_disk`` directory (no suffix), with an
index file ``<write-back>.index.json``; rows are found through ``stats.sample_ids`` (their
row index, or --id-field). Existing outputs are refused unless --overwrite.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``select`` subcommand."""
    p = subparsers.add_parser("select", help="run a selector on saved stats; optionally write the chosen rows back",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stats", required=True, help="stats directory (direct-opt extract writes OUT/stats)")
    p.add_argument("-k", "--k", dest="k", type=int, required=True, help="number of samples to select")
    p.add_argument("--selector", default="direct", help="selector name (default direct; see the docs)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a selector option")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the selection record (indices, sample ids) as JSON here")
    p.add_argument("--write-back", default=None, help="write the chosen rows here (.jsonl, .parquet or a directory)")
    p.add_argument("--data", default=None, help="the dataset the stats were extracted from (for --write-back)")
    p.add_argument("--text-field", default="text", help="text field name of a plain-text --data (default text)")
    p.add_argument("--id-field", default=None, help="id column of --data that the stats' sample ids name")
    p.add_argument("--overwrite", action="store_true", help="replace existing --write-back outputs")
    p.set_defaults(func=run)
    return p


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["backend=greedy", "tau_rel=0.3"]`` -> {"backend": "greedy", "tau_rel": 0.3}."""
    from ..errors import InvalidParameterError

    out: dict[str, Any] = {}
    for it in items:
        key, sep, value = it.partition("=")
        if not sep or not key.strip():
            raise InvalidParameterError(f"--option {it!r} must look like key=value.")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def run(args: argparse.Namespace) -> int:
    """Execute ``direct-opt select``; returns the exit code."""
    from ..errors import InvalidParameterError
    from ..stats import GradientStats, write_text_atomic
    from . import select
    from .base import check_options

    options = parse_options(args.option)
    if args.k <= 0:
        raise InvalidParameterError(f"-k {args.k} must be a positive integer.")
    if args.write_back and not args.data:
        raise InvalidParameterError("--write-back needs --data, the dataset the stats were extracted from.")
    if args.write_back:
        from ..extract.writeback import index_path, output_format

        output_format(args.write_back)
        for target in (Path(args.write_back), index_path(args.write_back)):
            if target.exists() and not args.overwrite:
                raise InvalidParameterError(f"{target} exists; choose another --write-back path or pass --overwrite.")
        if not Path(args.data).exists():
            raise InvalidParameterError(f"--data {args.data}: no such file or directory.")
    check_options(args.selector, options)
    stats = GradientStats.load(args.stats)
    sel = select(args.selector, k=args.k, stats=stats, seed=args.seed, **options)
    ids = stats.sample_ids[sel.indices] if stats.sample_ids is not None else sel.indices
    record = {"selector": args.selector, "options": options, "k": args.k, "seed": args.seed,
              "indices": [int(i) for i in sel.indices], "sample_ids": ids.tolist(),
              "stats": {"path": str(Path(args.stats).resolve()), "checksum": stats.checksum(), "n": stats.n},
              "tokens": None if stats.token_counts is None else int(stats.token_counts[sel.indices].sum()),
              "diagnostics": sel.diagnostics, "time_s": sel.time_s}
    print(f"selected {args.k} of {stats.n} samples with {args.selector!r}"
          + ("" if record["tokens"] is None else f" ({record['tokens']} tokens)"))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(Path(args.out), json.dumps(record, indent=1, default=str))
        print(f"selection written to {args.out}")
    if args.write_back:
        from ..extract.writeback import selected_rows, write_back

        rows = selected_rows(stats, sel.indices, args.data, args.text_field, args.id_field)
        out, idx = write_back(rows, args.write_back, {**record, "source": str(Path(args.data).resolve())},
                              overwrite=args.overwrite)
        print(f"{len(rows)} rows written to {out} (index: {idx})")
    return 0


