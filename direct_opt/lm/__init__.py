"""Embedded language-model substrate: a tiny byte-level GPT, corpora built from text every
Python install has (standard library / site-packages sources) or a Linux machine has (C headers
and manual pages), stable-phase pretraining
with an EMA reference, WSD annealing runs and loss evaluation. No downloads.

Typical use::

    from direct_opt.lm import stdlib_corpus, TinyGPT, pretrain, anneal, lm_loss
    corpus = stdlib_corpus(seed=0, quick=True)
    model = TinyGPT(seed=0)
    state = pretrain(model, corpus.pretrain, steps=150, lr=3e-3, batch_size=32, seed=0)
    res = anneal(state.model_state, state.optim_state, corpus.pool[:64], epochs=2,
                 peak_lr=3e-3, shape="linear", seed=0, config=state.config,
                 eval_sets={"val": corpus.val, "test": corpus.test}, eval_every=5)
"""

from .corpus import (DEGRADED_KINDS, PRESETS, Corpus, build_corpus, c_headers_corpus, site_packages_corpus,
                     stdlib_corpus)
from .loss import lm_loss
from .model import GPTConfig, TinyGPT
from .train import (
    WSD_SHAPES,
    AnnealResult,
    TrainState,
    anneal,
    evaluate_loss,
    load_model,
    pretrain,
    wsd_lr,
)

__all__ = [
    "AnnealResult", "Corpus", "DEGRADED_KINDS", "GPTConfig", "PRESETS", "TinyGPT", "TrainState",
    "WSD_SHAPES", "anneal", "build_corpus", "c_headers_corpus", "evaluate_loss", "lm_loss", "load_model", "pretrain",
    "site_packages_corpus", "stdlib_corpus", "wsd_lr",
]
