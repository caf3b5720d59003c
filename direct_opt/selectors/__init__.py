"""Selectors: which K samples of the pool to anneal on, chosen by name.

    from direct_opt.selectors import select, available_selectors
    sel = select("less", k=K, stats=stats)                         # GradientStats-based
    sel = select("direct", k=K, stats=stats, backend="sca-exact", tau_rel=0.1)
    sel = select("excess-loss", k=K, model=model, loss_fn=loss_fn, pool=pool, reference=ema_model)
    sel.indices      # (K,) sorted int64, distinct
    sel.diagnostics  # JSON-safe dict; sel.time_s; sel.scores (N,) where the selector has scores

Built-in selectors (every one deterministic given ``seed``):

=============  ===================================================  ==========================
name           rule                                                 needs
=============  ===================================================  ==========================
random         uniform K-subset (``default_rng(seed).choice``)      N (stats, pool or ``n=``)
direct         the DiReCT program (docs/math.md) via a backend       stats
less           top-K LESS score (Xia et al. 2024; docs/less.md)          stats with val_coords, adam_coords
direct-aligned max β‖Gw‖²/m + c̃ᵀw, c = LESS scores, stiff budget   stats (as direct and less)
less-diverse   max c̃ᵀw − ½λ‖Gw‖²/m: LESS minus flat redundancy     stats (as less)
grad-norm      top-K ||g_i||                                         stats with grad_norms
loss           top-K loss                                            stats.losses or model+loss_fn+pool
excess-loss    top-K ℓ(x;θ) − ℓ(x;θ_ref) (BLADE / RHO-LOSS)         model, loss_fn, pool, reference
taylor         greedy 2nd-order Taylor loss decrease (GREATS)       stats with G_stiff, val_grad
taylor-fisher  ``taylor`` with the Adam step (sketched Fisher)       stats with adam_coords
=============  ===================================================  ==========================

Adding a selector takes a function and one decorator. The function receives a
:class:`SelectorInputs` (``k``, ``n``, ``stats``, ``model``, ``loss_fn``, ``pool``,
``reference``, ``seed``) plus its own keyword options, and returns a :class:`Pick`;
:func:`select` checks the name, K (1 <= K <= N), unknown options and the returned
indices (K distinct, in range) and times it::

    import numpy as np
    from direct_opt.selectors import Pick, register_selector, select, top_k

    @register_selector("small-loss")
    def small_loss(inp, *, power: float = 1.0):
        \"\"\"Top-K of -loss**power (easiest samples first).\"\"\"
        if inp.stats is None or inp.stats.losses is None:
            raise inp.missing_error("stats with losses")   # InvalidInputError naming what is missing
        scores = -np.asarray(inp.stats.losses, float) ** power
        return Pick(top_k(scores, inp.k), {"power": power}, scores)

    sel = select("small-loss", k=100, stats=stats, power=2.0)

Which selector to use by default is an empirical question (docs/evaluation.md): see
:data:`DEFAULT_SELECTOR`.
"""

from .base import (
    Pick,
    Selection,
    SelectorInputs,
    available_selectors,
    describe_selectors,
    register_selector,
    score_summary,
    select,
    top_k,
    unregister_selector,
)
from . import aligned, direct, gradient, loss, random  # noqa: F401,E402  (register the built-in selectors)
from .gradient import DEFAULT_TAYLOR_ETA, cosine_scores, less_scores, greedy_taylor, stats_taylor_terms, taylor_gain
from .loss import pool_losses

#: The selector the toolkit recommends for annealing selection, from the protocol in
#: docs/evaluation.md ("Does anything beat LESS?"): 22 configurations of three new selectors
#: tuned on the stdlib corpus only, the best of each confirmed with 5 seeds on two corpora never
#: tuned on (K = 200 of 2000). ``less-diverse`` (λ = 100) beat faithful ``less`` on both:
#: −0.070 nats/byte (95% CI [−0.077, −0.063]) on site-packages and −0.053 ([−0.056, −0.050]) on
#: c-headers (and −0.055 on stdlib), and beat random by −0.078 to −0.080 on all three.
DEFAULT_SELECTOR = "less-diverse"

__all__ = [
    "DEFAULT_SELECTOR",
    "DEFAULT_TAYLOR_ETA",
    "Pick",
    "Selection",
    "SelectorInputs",
    "available_selectors",
    "cosine_scores",
    "describe_selectors",
    "greedy_taylor",
    "less_scores",
    "pool_losses",
    "register_selector",
    "score_summary",
    "select",
    "stats_taylor_terms",
    "taylor_gain",
    "top_k",
    "unregister_selector",
]
