"""Online batch selection during annealing: every step, train on the b most useful of B candidates.

    from direct_opt.online import available_online_selectors, make_online_selector, OnlineBatches
    sel = make_online_selector("blade", model=model, loss_fn=loss_fn, val=val, b=16, seed=0)
    chosen = sel.select(candidates, step)   # (b,) distinct indices into the B candidates
    sel.update(model, step)                 # after the optimiser step

    for batch in OnlineBatches(sel, data, super_batch=64, steps=100):   # the training-loop wrapper
        loss = loss_fn(model, batch.data).mean(); opt.zero_grad(); loss.backward(); opt.step()

Built-in selectors: ``blade`` (excess loss against a dynamic reference, penalised selection by
memoryless randomized block-coordinate Frank–Wolfe over the shared oracle), ``rho-loss``
(static reference trained once on the validation data), ``greats`` (online Taylor estimate of
the validation-loss decrease from last-layer gradient inner products), ``loss`` (top-b loss),
``uniform``. Register your own with :func:`register_online_selector` (see docs/online.md).
"""

from . import selectors  # noqa: F401  (registers the built-in selectors)
from .base import (
    COMMON_OPTIONS,
    ONLINE,
    OnlineSelector,
    available_online_selectors,
    check_options,
    make_online_selector,
    register_online_selector,
    take,
)
from .features import LastLayerFeatures
from .frank_wolfe import StepPolytope, block_frank_wolfe, quota_rows
from .loop import OnlineBatch, OnlineBatches

__all__ = [
    "COMMON_OPTIONS", "LastLayerFeatures", "ONLINE", "OnlineBatch", "OnlineBatches", "OnlineSelector", "StepPolytope",
    "available_online_selectors", "block_frank_wolfe", "check_options", "make_online_selector", "quota_rows",
    "register_online_selector", "take",
]
