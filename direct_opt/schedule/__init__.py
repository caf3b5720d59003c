"""The annealing schedule: loss laws that predict a training curve from the LR schedule,
fitted on a few runs, used to pick the decay (ratio, shape) and a free-form schedule.

    from direct_opt.schedule import available_laws, fit, optimize, WSD
    law = fit([dict(steps=steps, lrs=lrs, losses=losses), ...], law="multi-power")
    curve = law.predict(WSD(total_steps=10_000, peak_lr=3e-3, decay_ratio=0.2, shape="1-sqrt"))
    opt = optimize(law, total_steps=10_000)
    print(opt.summary())

:func:`collect` (needs torch) trains the embedded TinyGPT under a set of schedules and
returns the curves. See docs/schedule.md.
"""

from .curves import Curve, as_curve, load_curves, load_lrs, save_curves
from .fit import fit, goodness
from .laws import (
    LAWS,
    ForwardMomentumLaw,
    LossLaw,
    MomentumLaw,
    MultiPowerLaw,
    adam_momentum,
    available_laws,
    decrements,
    forward_area,
    get_law,
    law_from_dict,
    load_law,
    momentum_area,
    multi_power_ld,
    warmup_length,
)
from .optimize import DEFAULT_RATIOS, ScheduleOptimum, optimize
from .schedules import (
    DECAY_SHAPES,
    WSD,
    Constant,
    Cosine,
    PerStep,
    as_lrs,
    decay_factor,
    parse_schedule,
    schedule_from_dict,
    wsd_grid,
)


def collect(*args, **kwargs):  # noqa: D401 - thin lazy wrapper, documented in .collect
    """Train TinyGPT under several schedules and return the curves (see :mod:`direct_opt.schedule.lm_runs`)."""
    from .lm_runs import collect as _collect

    return _collect(*args, **kwargs)


__all__ = [
    "Constant", "Cosine", "Curve", "DECAY_SHAPES", "DEFAULT_RATIOS", "ForwardMomentumLaw", "LAWS", "LossLaw",
    "MomentumLaw", "MultiPowerLaw", "PerStep", "ScheduleOptimum", "WSD", "adam_momentum", "as_curve", "as_lrs",
    "available_laws", "collect", "decay_factor", "decrements", "fit", "forward_area", "get_law", "goodness",
    "law_from_dict", "load_curves", "load_law", "load_lrs", "momentum_area", "multi_power_ld", "optimize",
    "parse_schedule", "save_curves", "schedule_from_dict", "warmup_length", "wsd_grid",
]
