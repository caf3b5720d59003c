"""``direct-opt evaluate``: the harness on an embedded corpus, from flags or a JSON config.

    direct-opt evaluate --corpus stdlib --quick --seeds 0,1,2 --selectors random,direct,less --out eval/
    direct-opt evaluate --corpus c-headers --quick --out eval_c/   # C headers pool, man-page validation
    direct-opt evaluate --config eval.json [--seeds 0,1]     # flags override the file
    direct-opt evaluate --hf-model runs/my-model --pool pool.jsonl --val-data val.jsonl --test-data test.jsonl \
        --selectors less,direct -k 500 --out eval/          # your Hugging Face checkpoint and data

Corpora (built from local files, no downloads): stdlib (Python standard library sources; target
domain docstrings), site-packages (installed packages' sources; docstrings) and c-headers (C headers
under /usr/include as the pool, man pages under /usr/share/man as validation and test; the
validation rows are grouped by man section, and faithful less takes the max over the groups).

With --hf-model the checkpoint is a model directory (save_pretrained; --adapter DIR adds a
PEFT/LoRA adapter directory on top, and the runs then anneal the adapter) and the data are files
in the formats of `direct-opt extract` (--text-field, --max-length); runs anneal with
HFAnnealer (--engine torch | trainer; --optim-state FILE: an AdamW state_dict saved with
torch.save, loaded with weights_only=True; without it the optimizer state is reset);
--val-group-field FIELD names a field of --val-data holding each example's group (task).

Config file keys (all optional; flags given on the command line win):

    {"corpus": "stdlib", "quick": false, "seeds": [0, 1, 2], "k": 200, "out": "eval",
     "selectors": ["random", "direct", "direct:backend=greedy", {"name": "less", "label": "LESS"}],
     "data_seed": 0, "n_pool": 2000, "n_val": 128, "n_test": 512, "n_pretrain": 8192,
     "target_domain": "docstrings", "pretrain_steps": 500, "lr": 0.003,
     "model": {"n_layer": 2, "d_model": 64, "n_head": 4},
     "schedule": {"shape": "linear", "epochs": 4, "optimizer_state": "restore", "eval_every": 5},
     "extract": {"k_sketch": 512, "projector": "sjlt", "batch_size": 32},
     "program_tau_rel": 0.1, "compare_to": ["less"]}

The table compares every selector with random (the baseline) and with each label in
compare_to (default: less, when it is among the selectors), paired by seed.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

from ..defaults import TAU_REL
from ..errors import InvalidParameterError
from .lm_setup import CORPORA
from .spec import ALL_SELECTORS as ALL
DEFAULTS: dict[str, Any] = {
    "corpus": "stdlib", "quick": False, "seeds": [0, 1, 2], "k": None, "out": None, "selectors": list(ALL),
    "data_seed": 0, "n_pool": None, "n_val": None, "n_test": None, "n_pretrain": None, "target_domain": None,
    "pretrain_steps": None, "lr": 3e-3, "model": {}, "schedule": {"eval_every": 5},
    "extract": {"k_sketch": 512, "projector": "sjlt", "batch_size": 32}, "program_tau_rel": TAU_REL,
    "overwrite": False, "plot": True, "progress": True, "compare_to": None,
    "hf": {"model": None, "pool": None, "val": None, "test": None, "text_field": "text", "max_length": 128,
           "engine": "torch", "optim_state": None, "adapter": None, "val_group_field": None},
}
K_FRACTION = 0.1  # default K = 10% of the pool


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` -> list of ints."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        try:
            out += list(range(int(m.group(1)), int(m.group(2)) + 1)) if m else [int(part)]
        except ValueError:
            raise argparse.ArgumentTypeError(f"seeds must look like 0,1,2 or 0-4, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("no seeds given (e.g. --seeds 0,1,2)")
    return out


def split_selectors(items: list[str]) -> list[str]:
    """Each item is split on commas unless it carries options (``name:key=value,...``)."""
    out: list[str] = []
    for it in items:
        if ":" in it:
            out.append(it)
        else:
            out += [s.strip() for s in it.split(",") if s.strip()]
    return out


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("evaluate", help="anneal on each selector's K samples over seeds and compare with random",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="JSON config file (keys as documented above)")
    p.add_argument("--corpus", choices=list(CORPORA), default=None,
                   help="stdlib (default), site-packages, or c-headers (C headers pool, man-page validation)")
    p.add_argument("--quick", action="store_true", default=None, help="small corpus preset, short pretraining")
    p.add_argument("--seeds", type=parse_seeds, default=None, help="e.g. 0,1,2 or 0-4 (default 0,1,2)")
    p.add_argument("--selectors", nargs="+", default=None,
                   help="names, comma-separated or space-separated; options as name:key=value,key=value "
                        f"(default: {','.join(ALL)})")
    p.add_argument("-k", "--k", type=int, default=None, help="samples per selection (default 10%% of the pool)")
    p.add_argument("--out", default=None, help="output directory (runs/, results.json, table.md, eval.png)")
    p.add_argument("--data-seed", type=int, default=None, help="corpus split + pretraining seed (default 0)")
    for name in ("n-pool", "n-val", "n-test", "n-pretrain", "pretrain-steps"):
        p.add_argument(f"--{name}", type=int, default=None)
    p.add_argument("--target-domain", default=None,
                   help="validation/test domain (default docstrings; man for c-headers)")
    p.add_argument("--lr", type=float, default=None, help="stable-phase LR = annealing peak LR (default 3e-3)")
    p.add_argument("--shape", choices=["linear", "cosine", "1-sqrt"], default=None, help="decay shape")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--anneal-steps", type=int, default=None, help="decay length in steps")
    g.add_argument("--anneal-epochs", type=float, default=None, help="decay length in epochs over K (default 4)")
    p.add_argument("--optimizer-state", choices=["restore", "reset"], default=None)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--k-sketch", type=int, default=None, help="sketch size (default 512)")
    p.add_argument("--projector", default=None, help="sjlt (default), kronecker, gaussian, paper")
    p.add_argument("--compare-to", default=None,
                   help="comma-separated selector labels the table also compares with, paired by seed "
                        "(default: less, when it is run; 'none' for random only)")
    p.add_argument("--overwrite", action="store_true", default=None, help="discard finished runs in --out")
    p.add_argument("--no-plot", dest="plot", action="store_false", default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    h = p.add_argument_group("your Hugging Face checkpoint and data")
    h.add_argument("--hf-model", default=None, help="model directory (save_pretrained) or hub id")
    h.add_argument("--adapter", default=None, help="PEFT adapter directory (LoRA, ...) on top of --hf-model")
    h.add_argument("--pool", default=None, help="candidate pool file (formats of direct-opt extract)")
    h.add_argument("--val-data", default=None, help="validation file")
    h.add_argument("--test-data", default=None, help="held-out test file")
    h.add_argument("--text-field", default=None, help="text field / column (default text)")
    h.add_argument("--max-length", type=int, default=None, help="tokens per sample (default 128)")
    h.add_argument("--engine", choices=["torch", "trainer"], default=None, help="annealing loop (default torch)")
    h.add_argument("--optim-state", default=None, help="AdamW state_dict at the checkpoint (torch.save file)")
    h.add_argument("--val-group-field", default=None,
                   help="field / column of --val-data with each example's group (LESS: max over groups)")
    p.set_defaults(func=run, check=check)


def check(args: argparse.Namespace) -> None:
    """The validation pass of ``direct-opt evaluate``: the resolved config (flags over --config),
    selector names and options, sizes, schedule and output directory, before any corpus or model work."""
    from ..cli_args import UsageError, check_input_path, check_number, check_output
    from ..errors import DirectOptError
    from ..extract import ExtractConfig
    from .harness import _check_names
    from .schedule import AnnealSchedule
    from .spec import parse_selectors

    if args.config is not None:
        check_input_path(args.config, "--config")
    try:
        cfg = resolve_config(args)
        specs = parse_selectors(cfg["selectors"])
        _check_names(specs)
        unknown = [c for c in cfg["compare_to"] or () if c not in [sp.label for sp in specs]]
        if unknown:
            raise UsageError(f"--compare-to {','.join(unknown)}: no selector with that label is run "
                             f"(labels: {', '.join(sp.label for sp in specs)})")
        seeds = cfg["seeds"]
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise UsageError(f"seeds must be a non-empty list of integers >= 0, got {seeds!r}")
        AnnealSchedule.from_dict(cfg["schedule"])
        ExtractConfig(**cfg["extract"]).validate()
    except (DirectOptError, TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if cfg["corpus"] not in CORPORA:
        raise UsageError(f"corpus must be one of {list(CORPORA)}, got {cfg['corpus']!r}")
    check_number(cfg["k"], "-k/--k", minimum=1, integer=True)
    for key in ("n_pool", "n_val", "n_test", "n_pretrain"):
        check_number(cfg[key], f"--{key.replace('_', '-')}", minimum=1, integer=True)
    check_number(cfg["pretrain_steps"], "--pretrain-steps", minimum=0, integer=True)
    check_number(cfg["data_seed"], "--data-seed", minimum=0, integer=True)
    check_number(cfg["lr"], "--lr", above=0.0)
    check_number(cfg["program_tau_rel"], "program_tau_rel", above=0.0)
    if cfg["k"] is not None and cfg["n_pool"] is not None and cfg["k"] > cfg["n_pool"]:
        raise UsageError(f"-k {cfg['k']} exceeds --n-pool {cfg['n_pool']}")
    check_output(argparse.Namespace(out=cfg["out"]), "--out", kind="dir")


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """DEFAULTS <- config file <- command-line flags."""
    cfg = json.loads(json.dumps(DEFAULTS))
    given: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise InvalidParameterError(f"config file {path} does not exist.")
        try:
            given = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidParameterError(f"config file {path} is not valid JSON: {exc}") from None
        bad = sorted(set(given) - set(DEFAULTS))
        if bad:
            raise InvalidParameterError(f"unknown config key(s) {bad}; known: {sorted(DEFAULTS)}.")
        for key, val in given.items():
            cfg[key] = {**cfg[key], **val} if isinstance(cfg[key], dict) and isinstance(val, dict) else val
    flat = {"corpus": args.corpus, "quick": args.quick, "seeds": args.seeds, "k": args.k, "out": args.out,
            "data_seed": args.data_seed, "n_pool": args.n_pool, "n_val": args.n_val, "n_test": args.n_test,
            "n_pretrain": args.n_pretrain, "target_domain": args.target_domain,
            "pretrain_steps": args.pretrain_steps, "lr": args.lr, "overwrite": args.overwrite,
            "plot": args.plot, "progress": args.progress}
    for key, val in flat.items():
        if val is not None:
            cfg[key] = val
    if args.selectors is not None:
        cfg["selectors"] = split_selectors(args.selectors)
    if args.compare_to is not None:
        cfg["compare_to"] = [] if args.compare_to.strip() == "none" else \
            [c.strip() for c in args.compare_to.split(",") if c.strip()]
    sched = dict(cfg["schedule"])
    for key, val in (("shape", args.shape), ("steps", args.anneal_steps), ("epochs", args.anneal_epochs),
                     ("optimizer_state", args.optimizer_state), ("eval_every", args.eval_every)):
        if val is not None:
            sched[key] = val
            if key in ("steps", "epochs"):
                sched.pop("epochs" if key == "steps" else "steps", None)
    cfg["schedule"] = sched
    ext = dict(cfg["extract"])
    if args.k_sketch is not None:
        ext["k_sketch"] = args.k_sketch
    if args.projector is not None:
        ext["projector"] = args.projector
    cfg["extract"] = ext
    hf = dict(cfg["hf"])
    for key, val in (("model", args.hf_model), ("pool", args.pool), ("val", args.val_data), ("test", args.test_data),
                     ("text_field", args.text_field), ("max_length", args.max_length), ("engine", args.engine),
                     ("optim_state", args.optim_state), ("adapter", args.adapter),
                     ("val_group_field", args.val_group_field)):
        if val is not None:
            hf[key] = val
    cfg["hf"] = hf
    if hf["val_group_field"] and not hf["model"]:
        raise InvalidParameterError("--val-group-field names a field of --val-data (with --hf-model); the embedded "
                                    "corpora bring their own groups (c-headers: the man section).")
    if hf["adapter"] and not hf["model"]:
        raise InvalidParameterError("--adapter is an adapter on top of --hf-model; pass --hf-model too.")
    if hf["model"]:
        missing = [f"--{n}" for n, key in (("pool", "pool"), ("val-data", "val"), ("test-data", "test")) if not hf[key]]
        if missing:
            raise InvalidParameterError(f"--hf-model needs {', '.join(missing)}.")
        if int(hf["max_length"]) <= 0:
            raise InvalidParameterError(f"--max-length {hf['max_length']} must be a positive integer.")
        if hf["adapter"]:
            from ..extract.hf import check_adapter_dir

            check_adapter_dir(hf["adapter"])
        if not hf["optim_state"] and args.optimizer_state is None and "optimizer_state" not in sched:
            cfg["schedule"]["optimizer_state"] = "reset"  # a released model comes without its optimizer
        if "program_tau_rel" not in given:  # real extractions: the always-feasible default budget
            cfg["program_tau_rel"] = None
    if isinstance(cfg["seeds"], (int, str)):
        cfg["seeds"] = parse_seeds(str(cfg["seeds"]))
    return cfg


def val_group_column(path: str, text_field: str, field: str | None) -> list[Any] | None:
    """The ``field`` value (integer or string) of every row of the validation file, or None
    without a field; a row without it is a usage error listing the fields that exist."""
    if not field:
        return None
    from ..cli_args import UsageError
    from ..extract.inputs import read_records

    rows, _ = read_records(path, text_field)
    for i, row in enumerate(rows):
        value = row.get(field) if isinstance(row, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            fields = sorted(row) if isinstance(row, dict) else []
            what = "has no field" if value is None else f"has a non-integer, non-string {type(value).__name__} in"
            raise UsageError(f"--val-group-field: row {i} of {path} {what} {field!r}; fields: {fields}")
    return [row[field] for row in rows]


def run_hf_config(cfg: dict[str, Any]):
    """The harness on a Hugging Face checkpoint and data files; returns (EvalReport, description)."""
    import torch

    from ..extract import ExtractConfig, hf_causal_lm_loss
    from ..extract.hf import load_causal_lm, tokenize_texts
    from ..extract.inputs import read_rows
    from .harness import evaluate
    from .hf_annealer import HFAnnealer
    from .schedule import AnnealSchedule

    hf = cfg["hf"]
    texts = {key: read_rows(hf[key], hf["text_field"]).texts for key in ("pool", "val", "test")}  # checked first
    val_groups = val_group_column(hf["val"], hf["text_field"], hf["val_group_field"])
    optim_state = torch.load(hf["optim_state"], weights_only=True) if hf["optim_state"] else None
    model, tok = load_causal_lm(hf["model"], adapter=hf["adapter"])
    data = {key: tokenize_texts(tok, t, int(hf["max_length"])).samples for key, t in texts.items()}
    n = len(data["pool"])
    k = int(cfg["k"]) if cfg.get("k") else max(1, int(math.ceil(K_FRACTION * n)))
    annealer = HFAnnealer(model, optim_state=optim_state, engine=hf["engine"], lr=cfg["lr"])
    out = Path(cfg["out"]) if cfg.get("out") else None
    report = evaluate(annealer, hf_causal_lm_loss(), data["pool"], data["val"], data["test"], cfg["selectors"], k,
                      cfg["seeds"], AnnealSchedule.from_dict(cfg["schedule"]),
                      extract_config=ExtractConfig(**{"verbose": bool(cfg["progress"]), **cfg["extract"]}),
                      val_groups=val_groups, out_dir=out, program_tau_rel=cfg["program_tau_rel"], progress=bool(cfg["progress"]),
                      plot=bool(cfg["plot"]), overwrite=bool(cfg["overwrite"]), meta={"cli_config": cfg})
    _compare_and_save(report, cfg, out)
    return report, f"model {hf['model']}, pool {hf['pool']} (N={n})"


def _compare_and_save(report: Any, cfg: dict[str, Any], out: Path | None) -> None:
    """Set the table's extra comparisons (``compare_to`` labels that were run) and write the report."""
    report.compare_to = [c for c in ("less",) if c in report.summary] if cfg["compare_to"] is None \
        else list(cfg["compare_to"])
    if out is not None:
        report.save(out, plot=bool(cfg["plot"]))


def run_config(cfg: dict[str, Any], log: Any = print):
    """Run the harness for a resolved config dict; returns (EvalReport, LMSetup)."""
    from ..extract import ExtractConfig
    from ..lm import lm_loss
    from .harness import evaluate
    from .lm_setup import prepare
    from .schedule import AnnealSchedule

    out = Path(cfg["out"]) if cfg.get("out") else None
    setup = prepare(cfg["corpus"], data_seed=int(cfg["data_seed"]), quick=bool(cfg["quick"]),
                    n_pool=cfg["n_pool"], n_val=cfg["n_val"], n_test=cfg["n_test"], n_pretrain=cfg["n_pretrain"],
                    target_domain=cfg["target_domain"], model=cfg["model"], pretrain_steps=cfg["pretrain_steps"],
                    lr=float(cfg["lr"]), cache_dir=out, log=log, progress=bool(cfg["progress"]))
    n = int(setup.corpus.pool.shape[0])
    k = int(cfg["k"]) if cfg.get("k") is not None else max(1, int(math.ceil(K_FRACTION * n)))
    ext = ExtractConfig(**{"verbose": bool(cfg["progress"]), **cfg["extract"]})
    t0 = time.perf_counter()
    report = evaluate(
        setup.state, lm_loss, setup.corpus.pool, setup.corpus.val, setup.corpus.test, cfg["selectors"], k,
        cfg["seeds"], AnnealSchedule.from_dict(cfg["schedule"]), extract_config=ext,
        pool_groups=setup.corpus.pool_groups, target_group=setup.target_group, val_groups=setup.corpus.val_groups,
        out_dir=out,
        program_tau_rel=float(cfg["program_tau_rel"]), progress=bool(cfg["progress"]), plot=bool(cfg["plot"]),
        overwrite=bool(cfg["overwrite"]), meta={"setup": setup.info, "cli_config": cfg},
    )
    report.config["meta"]["evaluate_time_s"] = time.perf_counter() - t0
    _compare_and_save(report, cfg, out)
    return report, setup


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    t0 = time.perf_counter()
    if cfg["hf"]["model"]:
        report, desc = run_hf_config(cfg)
        print()
        print(f"{desc}, K={report.config['k']}, seeds {report.seeds}")
    else:
        report, setup = run_config(cfg)
        print()
        print(f"corpus {cfg['corpus']} (target {setup.target_group}), pool N={setup.corpus.pool.shape[0]}, "
              f"K={report.config['k']}, seeds {report.seeds}")
    print(report.table())
    print()
    print(f"lowest mean test loss: {report.winner}")
    for lab in report.labels:
        if lab.startswith("direct") and lab != report.baseline:
            print(report.verdict(lab))
            for ref in report.compare_to:
                if ref != lab:
                    print(report.verdict(lab, against=ref))
    if report.paths:
        print(f"written: {', '.join(report.paths.values())}")
    print(f"total time {time.perf_counter() - t0:.1f}s")
    sys.stdout.flush()
    return 0
