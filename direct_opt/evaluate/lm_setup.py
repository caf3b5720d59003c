"""The embedded-LM experiment setup shared by ``direct-opt evaluate`` and ``direct-opt demo``.

corpus (stdlib / site-packages sources or C headers + man pages, no downloads) → TinyGPT → stable-phase pretraining
at constant LR with an EMA reference → checkpoint. The checkpoint can be cached in a
directory (``checkpoint.pt``, loaded with ``torch.load(weights_only=True)``, validated
against the settings that made it) so re-runs resume without pretraining again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidParameterError, UnknownNameError
from ..lm import GPTConfig, TinyGPT, TrainState, c_headers_corpus, pretrain, site_packages_corpus, stdlib_corpus
from ..lm.corpus import Corpus

#: corpus name -> builder (docs/evaluation.md describes each)
CORPORA = {"stdlib": stdlib_corpus, "site-packages": site_packages_corpus, "c-headers": c_headers_corpus}
#: stable-phase steps when not given (quick / default sizes); chosen for CPU run time, not for any method
PRETRAIN_STEPS = {"quick": 120, "default": 500}


@dataclass
class LMSetup:
    """What the experiments start from.

    Attributes:
        corpus: the :class:`~direct_opt.lm.corpus.Corpus` (pool, groups, val, test, pretrain).
        state: the stable-phase checkpoint (weights, AdamW state, EMA, LR).
        info: sizes, seeds, timings and provenance (JSON-safe).
    """

    corpus: Corpus
    state: TrainState
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def target_group(self) -> str:
        return f"clean:{self.corpus.target_domain}"


def build_corpus(name: str, *, seed: int = 0, quick: bool = False, **kwargs: Any) -> Corpus:
    """The corpus ``name`` of :data:`CORPORA` (see :mod:`direct_opt.lm.corpus`)."""
    if name not in CORPORA:
        raise UnknownNameError(f"unknown corpus {name!r}; known: {sorted(CORPORA)}.")
    return CORPORA[name](seed=seed, quick=quick, **{k: v for k, v in kwargs.items() if v is not None})


def _ckpt_key(corpus: Corpus, settings: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(corpus.pretrain.numpy().tobytes())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:20]


def prepare(
    corpus: str = "stdlib",
    *,
    data_seed: int = 0,
    quick: bool = False,
    n_pool: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    n_pretrain: int | None = None,
    target_domain: str | None = None,
    model: dict[str, Any] | None = None,
    pretrain_steps: int | None = None,
    lr: float = 3e-3,
    batch_size: int = 32,
    ema_decay: float = 0.99,
    warmup_steps: int = 20,
    cache_dir: str | Path | None = None,
    log: Any = None,
    progress: bool = False,
) -> LMSetup:
    """Build the corpus and pretrain TinyGPT (stable phase, constant LR after warmup).

    Args:
        corpus: a name of :data:`CORPORA` (``stdlib``, ``site-packages``, ``c-headers``).
        data_seed: seed of the corpus split AND of pretraining (fixed across evaluation seeds).
        quick: small preset sizes (see ``direct_opt.lm.PRESETS``) and fewer pretraining steps.
        n_pool, n_val, n_test, n_pretrain, target_domain: override the corpus preset.
        model: :class:`~direct_opt.lm.GPTConfig` fields (seq_len always follows the corpus).
        pretrain_steps: stable-phase steps (default 120 quick / 500 full).
        lr, batch_size, ema_decay, warmup_steps: pretraining hyper-parameters.
        cache_dir: if given, the checkpoint is stored as ``cache_dir/checkpoint.pt`` and reused
            when the corpus and settings match.
        log: callable(str) for progress lines (default: silent).
        progress: show a progress bar while pretraining.
    """
    say = log or (lambda s: None)
    t0 = time.perf_counter()
    kw = {"n_pool": n_pool, "n_val": n_val, "n_test": n_test, "n_pretrain": n_pretrain,
          "target_domain": target_domain}
    say(f"building the {corpus} corpus from local files ...")
    c = build_corpus(corpus, seed=data_seed, quick=quick, progress=progress, **kw)
    t_corpus = time.perf_counter() - t0
    say(f"corpus {corpus}: pool {tuple(c.pool.shape)}, val {tuple(c.val.shape)}, test {tuple(c.test.shape)}, "
        f"pretrain {tuple(c.pretrain.shape)}, target domain {c.target_domain!r} ({t_corpus:.1f}s)")
    if c.pretrain.shape[0] == 0:
        raise InvalidParameterError("the corpus has no pretraining rows; set n_pretrain > 0.")
    mcfg = GPTConfig(**{**(model or {}), "seq_len": c.seq_len})
    steps = int(pretrain_steps if pretrain_steps is not None else PRETRAIN_STEPS["quick" if quick else "default"])
    settings = {"model": mcfg.to_dict(), "steps": steps, "lr": lr, "batch_size": batch_size, "seed": data_seed,
                "ema_decay": ema_decay, "warmup_steps": warmup_steps}
    key = _ckpt_key(c, settings)
    path = Path(cache_dir) / "checkpoint.pt" if cache_dir is not None else None
    state = None
    t1 = time.perf_counter()
    if path is not None and path.exists():
        blob = torch.load(path, weights_only=True)
        if blob.get("key") == key:
            state = TrainState(model_state=blob["model_state"], optim_state=blob["optim_state"],
                               ema_state=blob["ema_state"], config=mcfg, losses=list(blob["losses"]),
                               steps=int(blob["steps"]), lr=float(blob["lr"]))
            say(f"checkpoint reused from {path}")
        else:
            say(f"checkpoint at {path} was made with other settings; pretraining again")
    if state is None:
        say(f"pretraining TinyGPT ({TinyGPT(mcfg).num_parameters()} parameters) for {steps} steps at lr={lr} ...")
        state = pretrain(TinyGPT(mcfg, seed=data_seed), c.pretrain, steps=steps, lr=lr, batch_size=batch_size,
                         seed=data_seed, ema_decay=ema_decay, warmup_steps=warmup_steps, progress=progress)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".pt.tmp")
            torch.save({"key": key, "model_state": state.model_state, "optim_state": state.optim_state,
                        "ema_state": state.ema_state, "losses": state.losses, "steps": state.steps,
                        "lr": state.lr}, tmp)
            tmp.replace(path)
    t_pre = time.perf_counter() - t1
    if state.losses:
        say(f"pretraining done: last train loss {state.losses[-1]:.3f} nats/byte ({t_pre:.1f}s)")
    info = {
        "corpus": corpus, "data_seed": data_seed, "quick": quick, "target_domain": c.target_domain,
        "sizes": {"n_pool": int(c.pool.shape[0]), "n_val": int(c.val.shape[0]), "n_test": int(c.test.shape[0]),
                  "n_pretrain": int(c.pretrain.shape[0]), "seq_len": c.seq_len},
        "group_counts": c.info.get("group_counts"), "corpus_info": {k: c.info.get(k) for k in
                                                                   ("source", "python", "packages", "domains")}
                                                 | {k: c.info[k] for k in ("include_dir", "man_dir", "val_group_counts")
                                                    if k in c.info},
        "model": mcfg.to_dict(), "pretrain": settings, "checkpoint_key": key,
        "pretrain_last_loss": state.losses[-1] if state.losses else None,
        "time_s": {"corpus": t_corpus, "pretrain": t_pre},
    }
    return LMSetup(corpus=c, state=state, info=info)
