"""Torch extraction side: model + data -> :class:`direct_opt.stats.GradientStats`.

    from direct_opt.extract import ExtractConfig, extract_stats
    stats = extract_stats(model, loss_fn, train_samples, val_samples, ExtractConfig(k_sketch=2048))

See docs/extract.md for the loss_fn contract, projectors, curvature, elbow and the
on-disk/resume format.
"""

from .config import ExtractConfig
from .curvature import CURVATURES, fisher_eigen, lanczos
from .data import per_sample_loss
from .elbow import ELBOWS, choose_k_star, energy_elbow, log_gap_elbow
from .hf import hf_causal_lm_loss
from .kronecker import KroneckerProjector
from .per_sample import PerSampleGrad
from .pipeline import extract_stats
from .projectors import (
    PROJECTORS,
    BasisProjector,
    GaussianProjector,
    PaperProjector,
    Projector,
    SJLTProjector,
    make_projector,
)

__all__ = [
    "ExtractConfig", "extract_stats", "per_sample_loss", "hf_causal_lm_loss",
    "make_projector", "PROJECTORS", "Projector", "GaussianProjector", "SJLTProjector", "PaperProjector",
    "BasisProjector", "KroneckerProjector", "PerSampleGrad", "CURVATURES", "fisher_eigen", "lanczos",
    "ELBOWS", "choose_k_star", "energy_elbow", "log_gap_elbow",
]
