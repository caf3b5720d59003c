"""Torch extraction side: model + data -> :class:`direct_opt.stats.GradientStats`.

    from direct_opt.extract import ExtractConfig, extract_stats
    stats = extract_stats(model, loss_fn, train_samples, val_samples, ExtractConfig(k_sketch=2048))

See docs/extract.md for the loss_fn contract, projectors, curvature, elbow and the
on-disk/resume format.

The names below are imported on first use (module ``__getattr__``), so importing this
package, :mod:`.config` or :mod:`.shards` does not import torch; only the names that
need it (``extract_stats``, the projectors, ...) do.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_LAZY = {
    "ExtractConfig": "config",
    "CURVATURES": "curvature", "fisher_eigen": "curvature", "lanczos": "curvature",
    "per_sample_loss": "data",
    "ELBOWS": "elbow", "choose_k_star": "elbow", "energy_elbow": "elbow", "log_gap_elbow": "elbow",
    "hf_causal_lm_loss": "hf",
    "KroneckerProjector": "kronecker",
    "PerSampleGrad": "per_sample",
    "extract_stats": "pipeline",
    "PROJECTORS": "projector_registry", "BasisProjector": "projectors", "GaussianProjector": "projectors",
    "PaperProjector": "projectors", "Projector": "projectors", "SJLTProjector": "projectors",
    "make_projector": "projector_registry", "register_projector": "projector_registry",
}

__all__ = [
    "ExtractConfig", "extract_stats", "per_sample_loss", "hf_causal_lm_loss",
    "make_projector", "register_projector", "PROJECTORS", "Projector", "GaussianProjector", "SJLTProjector", "PaperProjector",
    "BasisProjector", "KroneckerProjector", "PerSampleGrad", "CURVATURES", "fisher_eigen", "lanczos",
    "ELBOWS", "choose_k_star", "energy_elbow", "log_gap_elbow",
]


def __getattr__(name: str) -> Any:
    """Import the submodule defining ``name`` on first access (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
