"""``direct-opt extract``: gradient statistics of a Hugging Face causal LM on a text dataset.

    direct-opt extract --model gpt2 --train pool.jsonl --val val.txt --out runs/stats1 \\
        --k-sketch 2048 --projector sjlt --batch-size 8 --max-length 128
    direct-opt extract --config extract.toml          # every option from a TOML file

Inputs (--train/--val): a ``Dataset.save_to_disk`` directory, ``.jsonl``/``.json`` (field
--text-field), ``.parquet``, or a text file with one sample per line; a sample's index is
its row / line number from 0 (blank lines are refused, not skipped). --id-field names an id
column kept as ``stats.sample_ids``. Token counts are stored too (``stats.token_counts``).
Samples longer than --max-length tokens are cut and counted (--truncation refuse: error).
--adapter DIR loads a PEFT/LoRA adapter directory on top of --model (the base model): then
the adapter weights are the ones differentiated (the default --params is the trainable ones).
The model loads with ``trust_remote_code`` off unless --trust-remote-code is given; sdpa /
flash attention is switched to eager only inside the per-sample (vmap) pass and restored.
A --config TOML file holds the same keys as the options (underscores: ``k_sketch = 512``,
``projector_options = {s = 4}``, ``param_filter = ["model.layers.*"]``); options given on
the command line win. The run directory --out is resumable: re-run the same command after
an interruption. Under ``torchrun --nproc-per-node P`` the ranks split the batches and write
into the same --out; see docs/scaling.md. Needs the [hf] extra (transformers).

Faithful LESS (``direct-opt select --selector less``) needs two more things, see docs/less.md:

    direct-opt extract --model ckpt/checkpoint-200 --optimizer-state ckpt/checkpoint-200/optimizer.pt \\
        --train pool.jsonl --val val.jsonl --val-groups task --out runs/less --projector sjlt

--optimizer-state FILE: the checkpoint's torch Adam/AdamW ``state_dict()`` saved with torch.save
(a transformers Trainer checkpoint's ``optimizer.pt``; loaded with weights_only, never a pickle)
adds each pool sample's Adam update direction (``stats.adam_coords``); needs a projector that forms
per-sample gradients (gaussian, sjlt). With --adapter the state is the adapter's optimizer's.
--val-groups FIELD: the field/column of --val holding each validation example's task label
(``stats.val_groups``; LESS takes the max over tasks); --val must then be JSONL, JSON, parquet or
a save_to_disk directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any, Mapping

from ..errors import ExtractionError, InvalidParameterError
from .config import DTYPES, ExtractConfig

log = logging.getLogger("direct_opt.extract")

#: every option: key (= TOML key = argparse dest) -> default. The ExtractConfig fields keep
#: their names (out_dir is --out, param_filter is --params, verbose is --quiet inverted).
DEFAULTS: dict[str, Any] = {
    "model": None, "train": None, "val": None, "out_dir": None,
    "text_field": "text", "id_field": None, "max_length": 128, "truncation": "cut", "reduction": "mean",
    "model_dtype": None, "attention": None, "trust_remote_code": False, "adapter": None, "log_level": "warning",
    "val_groups": None,
    **{f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
       for f in dataclasses.fields(ExtractConfig) if f.name not in ("out_dir", "collate_fn")},
}
REQUIRED = ("model", "train", "val", "out_dir")
LOG_LEVELS = ("debug", "info", "warning", "error")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``extract`` subcommand on an argparse ``subparsers`` object."""
    from .curvature import CURVATURES
    from .elbow import ELBOWS
    from .hf import REDUCTIONS
    from .projector_registry import PROJECTORS

    p = subparsers.add_parser(
        "extract", help="compute gradient statistics of a Hugging Face causal LM on a text pool",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # absent options stay absent: the TOML file / defaults fill them
    )
    p.add_argument("--config", help="TOML file with any of the options below (command-line options win)")
    p.add_argument("--model", help="Hugging Face model id or local directory (from save_pretrained)")
    p.add_argument("--adapter", help="PEFT adapter directory (LoRA, ...; save_pretrained) loaded on top of --model")
    p.add_argument("--train", help="candidate pool: save_to_disk dir, .jsonl/.json, .parquet or text file")
    p.add_argument("--val", help="validation set (same formats)")
    p.add_argument("--out", dest="out_dir", help="run directory (resumable); final stats in OUT/stats")
    p.add_argument("--text-field", help="field/column holding the text (default: text)")
    p.add_argument("--id-field", help="field/column holding a unique sample id (default: the row index)")
    p.add_argument("--val-groups", metavar="FIELD",
                   help="field/column of --val holding each validation example's group (task) label; LESS takes "
                        "the max over groups (stored as stats.val_groups)")
    p.add_argument("--optimizer-state", metavar="FILE",
                   help="the checkpoint's Adam/AdamW optimizer state_dict (torch.save; e.g. a Trainer checkpoint's "
                        "optimizer.pt): adds the Adam update directions faithful LESS needs (stats.adam_coords)")
    p.add_argument("--max-length", type=int, help="max tokens per sample (default 128)")
    p.add_argument("--truncation", choices=("cut", "refuse"),
                   help="samples longer than --max-length: cut them (default; counted) or refuse")
    p.add_argument("--reduction", choices=REDUCTIONS, help="per-sample loss over tokens (default mean)")
    p.add_argument("--model-dtype", choices=sorted(DTYPES), help="load the weights in this dtype (default: stored)")
    p.add_argument("--attention", help="attn_implementation to load with (eager, sdpa, ...; default transformers')")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model repository's own code")
    p.add_argument("--k-sketch", type=int, help="sketch size k (default 2048)")
    p.add_argument("--projector", choices=sorted(PROJECTORS), help="default gaussian")
    p.add_argument("--curvature", choices=sorted(CURVATURES), help="default fisher")
    p.add_argument("--elbow", choices=sorted(ELBOWS), help="default energy")
    p.add_argument("--elbow-energy", type=float, help="default 0.945")
    p.add_argument("--batch-size", type=int, help="samples per micro-batch (default 16)")
    p.add_argument("--dtype", choices=sorted(DTYPES), help="compute precision (autocast; default float32)")
    p.add_argument("--device", help="torch device (default cpu)")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--lanczos-steps", type=int, help="Lanczos iterations (hessian-lanczos)")
    p.add_argument("--params", dest="param_filter",
                   help="comma-separated fnmatch patterns of parameter names (default: the trainable ones)")
    p.add_argument("--no-store-stiff", dest="store_stiff", action="store_false", help="do not keep the stiff coordinates")
    p.add_argument("--quiet", dest="verbose", action="store_false", help="no progress bars")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="logging level of direct_opt (default warning)")
    p.set_defaults(func=run, check=check)
    return p


def check(args: argparse.Namespace) -> None:
    """The CLI's validation pass (exit 2 before any work): :func:`resolve_options`, the inputs
    exist, and the run directory can be written (helpers in :mod:`direct_opt.cli`)."""
    from ..cli_args import UsageError, check_input_path, check_number, check_output
    from ..errors import DirectOptError

    try:
        opts = resolve_options(args)
    except DirectOptError as exc:
        raise UsageError(str(exc)) from None
    args.resolved_options = opts  # run() reuses them: the optimizer state is loaded once
    check_number(opts["seed"], "--seed", minimum=0, integer=True)
    check_input_path(opts["train"], "--train", kind="any")
    check_input_path(opts["val"], "--val", kind="any")
    check_output(argparse.Namespace(out=opts["out_dir"]), "--out", kind="dir")


def resolve_options(args: argparse.Namespace) -> dict[str, Any]:
    """defaults < --config TOML < command line; every value checked before any work."""
    opts = dict(DEFAULTS)
    given = {k: v for k, v in vars(args).items()
             if k not in ("func", "check", "command", "debug", "config", "resolved_options")}
    if getattr(args, "config", None):
        opts.update(read_config(args.config))
    opts.update(given)
    missing = [k for k in REQUIRED if not opts.get(k)]
    if missing:
        flags = ", ".join("--out" if k == "out_dir" else f"--{k}" for k in missing)
        raise InvalidParameterError(f"missing {flags} (on the command line or in the --config file).")
    if isinstance(opts["param_filter"], str):
        opts["param_filter"] = [s.strip() for s in opts["param_filter"].split(",") if s.strip()]
    for key in ("max_length", "k_sketch", "batch_size"):
        v = opts[key]
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise InvalidParameterError(f"{key.replace('_', '-')}={v!r} must be a positive integer.")
    if opts["truncation"] not in ("cut", "refuse"):
        raise InvalidParameterError(f"truncation={opts['truncation']!r}; choose cut or refuse.")
    if opts["log_level"] not in LOG_LEVELS:
        raise InvalidParameterError(f"log_level={opts['log_level']!r}; choose one of {', '.join(LOG_LEVELS)}.")
    if opts["model_dtype"] is not None and opts["model_dtype"] not in DTYPES:
        raise InvalidParameterError(f"model_dtype={opts['model_dtype']!r}; choose one of {', '.join(sorted(DTYPES))}.")
    if opts["val_groups"] is not None and (not isinstance(opts["val_groups"], str) or not opts["val_groups"]):
        raise InvalidParameterError(f"val_groups={opts['val_groups']!r} must name a field of --val (e.g. task).")
    state_file = opts["optimizer_state"]
    extract_config({**opts, "optimizer_state": None}).validate()
    _check_device(str(opts["device"]))
    _check_model_path(str(opts["model"]))
    if opts["adapter"]:
        from .hf import check_adapter_dir

        check_adapter_dir(opts["adapter"])
    if state_file is not None:
        opts["optimizer_state"] = _load_optimizer_state(state_file, opts["projector"])
        opts["optimizer_state_file"] = str(state_file)
    return opts


def _load_optimizer_state(path: Any, projector: str) -> dict[str, Any]:
    """--optimizer-state: the projector forms per-sample gradients (checked first), then the file
    loads (weights_only) and holds an Adam/AdamW state."""
    from .adam import load_optimizer_state
    from .config import check_adam_projector

    if not isinstance(path, (str, Path)) or not str(path):
        raise InvalidParameterError(f"optimizer_state={path!r} must be the path of a torch.save'd optimizer state_dict.")
    try:
        check_adam_projector(projector)
        return load_optimizer_state(path)
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"--optimizer-state {exc}") from None


def read_config(path: str | Path) -> dict[str, Any]:
    """The options of a TOML file (keys as in :data:`DEFAULTS`; unknown keys are an error)."""
    import tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidParameterError(f"--config {path}: no such file.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidParameterError(f"--config {path}: not valid TOML ({exc}).") from None
    if "out" in data and "out_dir" not in data:
        data["out_dir"] = data.pop("out")
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise InvalidParameterError(f"--config {path}: unknown key(s) {unknown}; known keys: {sorted(DEFAULTS)}.")
    return data


def extract_config(opts: Mapping[str, Any], rank: int = 0) -> ExtractConfig:
    """The :class:`ExtractConfig` part of the options."""
    fields = {f.name for f in dataclasses.fields(ExtractConfig)} - {"collate_fn"}
    kw = {k: opts[k] for k in fields}
    kw["verbose"] = bool(opts["verbose"]) and rank == 0
    kw["projector_options"] = dict(opts["projector_options"] or {})
    if opts["param_filter"]:
        kw["param_filter"] = _param_filter(list(opts["param_filter"]))
    return ExtractConfig(**kw)


def _param_filter(patterns: list[str]):
    import fnmatch

    def matches(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    matches.__qualname__ = f"params({','.join(patterns)})"
    return matches


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InvalidParameterError(f"--device {device!r} is not a torch device ({exc}).") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(f"--device {device} but CUDA is not available here; use --device cpu.")


def _check_model_path(model: str) -> None:
    looks_local = model.startswith(("/", "./", "../", "~")) or Path(model).exists()
    path = Path(model).expanduser()
    if looks_local and not path.is_dir():
        raise InvalidParameterError(
            f"--model {model}: no such model directory (a directory written by save_pretrained, or a Hugging "
            "Face model id such as gpt2).")
    if looks_local and (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        raise InvalidParameterError(
            f"--model {model} is a PEFT adapter directory; pass its base model as --model and this directory "
            "as --adapter.")


def read_texts(path: str | Path, text_field: str = "text") -> list[str]:
    """The texts of one input (see :mod:`direct_opt.extract.inputs`)."""
    from .inputs import read_rows

    return read_rows(path, text_field).texts


def run(args: argparse.Namespace) -> int:
    """Execute ``direct-opt extract``; returns the process exit code."""
    from ..errors import DirectOptError

    rank = 0
    try:
        opts = getattr(args, "resolved_options", None) or resolve_options(args)
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("direct_opt").setLevel(opts["log_level"].upper())
        from ..distributed import init_from_env

        comm = init_from_env("nccl" if str(opts["device"]).startswith("cuda") else "gloo")
        rank = comm.rank
        stats, truncated = _extract(opts, comm)
    except ImportError as exc:
        print(f"direct-opt extract: {exc}", file=sys.stderr)
        return 2
    except InvalidParameterError as exc:
        print(f"direct-opt extract: error: {exc}", file=sys.stderr)
        return 2
    except (DirectOptError, OSError, ValueError) as exc:
        print(f"direct-opt extract: error: {exc}", file=sys.stderr)
        return 1
    if rank != 0:
        return 0
    print(f"wrote {Path(opts['out_dir']) / 'stats'}: N={stats.n}, k={stats.k_star + stats.r}, k*={stats.k_star}, "
          f"r={stats.r}, truncated samples (pool/val)={truncated[0]}/{truncated[1]} at --max-length "
          f"{opts['max_length']}")
    print(_less_summary(stats, opts))
    return 0


def _less_summary(stats: Any, opts: Mapping[str, Any]) -> str:
    """One line: whether the stats hold what faithful LESS needs (adam_coords, val_groups)."""
    if stats.adam_coords is not None:
        steps = stats.config["extract"]["optimizer_state"]["steps"]
        adam = f"adam_coords stored (Adam state of {opts['optimizer_state_file']}, step {steps[-1]:g})"
    else:
        adam = "no adam_coords (pass --optimizer-state for faithful LESS's Adam features)"
    if stats.val_groups is not None:
        groups = f"val_groups stored ({len(set(stats.val_groups.tolist()))} groups from field {opts['val_groups']!r})"
    else:
        groups = "no val_groups (one validation group; --val-groups FIELD names a task column)"
    return f"LESS features: {adam}; {groups}"


def _extract(opts: Mapping[str, Any], comm: Any) -> tuple[Any, tuple[int, int]]:
    """Read the inputs (all checks), then load the model and extract."""
    from .hf import hf_causal_lm_loss, load_causal_lm, tokenize_texts
    from .inputs import read_rows
    from .pipeline import extract_stats

    pool = read_rows(opts["train"], opts["text_field"], opts["id_field"])
    val = read_rows(opts["val"], opts["text_field"], None, opts["val_groups"])
    for label, rows in (("--train", pool), ("--val", val)):
        if not rows.texts:
            raise ExtractionError(f"{label} {rows.path} holds no samples; pass at least one.")
        log.info("%s %s: %d samples (%s)", label, rows.path, len(rows.texts), rows.format)
    model, tok = load_causal_lm(opts["model"], opts["device"], opts["model_dtype"], opts["attention"],
                                bool(opts["trust_remote_code"]), opts["adapter"])
    log.info("loaded %s (%s, attention %s)", opts["model"], type(model).__name__,
             getattr(getattr(model, "config", None), "_attn_implementation", "?"))
    pool_tok = tokenize_texts(tok, pool.texts, opts["max_length"])
    val_tok = tokenize_texts(tok, val.texts, opts["max_length"])
    for label, rows, t in (("--train", pool, pool_tok), ("--val", val, val_tok)):
        if t.truncated and opts["truncation"] == "refuse":
            raise ExtractionError(f"{label} {rows.path}: {t.truncated} samples are longer than --max-length "
                                  f"{opts['max_length']} tokens; raise --max-length or use --truncation cut.")
        if t.truncated:
            log.warning("%s: %d of %d samples cut to %d tokens", label, t.truncated, len(rows.texts),
                        opts["max_length"])
        empty = [int(i) for i in (t.token_counts == 0).nonzero()[0][:3]]
        if empty:
            raise ExtractionError(f"{label} {rows.path}: samples {empty} have no tokens; drop them.")
    mean_tokens = float((pool_tok.token_counts - 1).clip(min=1).mean())
    loss = hf_causal_lm_loss(reduction=opts["reduction"],
                             mean_tokens=mean_tokens if opts["reduction"] == "token-weighted" else None)
    cfg = extract_config(opts, comm.rank)
    stats = extract_stats(model, loss, pool_tok.samples, val_tok.samples, cfg, comm=comm, sample_ids=pool.ids,
                          val_groups=val.groups)
    return stats, (pool_tok.truncated, val_tok.truncated)
