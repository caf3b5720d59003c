"""Decay shapes (linear, cosine, 1-sqrt) and decay length in steps or epochs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from direct_opt.errors import InvalidParameterError, UnknownNameError
from direct_opt.evaluate import AnnealSchedule

PEAK = 2e-3


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt"])
def test_shape_starts_at_peak_ends_at_zero_and_decreases(shape):
    s = AnnealSchedule(shape=shape, steps=40)
    lrs = np.array(s.lrs(k=100, peak_lr=PEAK))
    assert lrs.shape == (40,)
    assert lrs[0] == pytest.approx(PEAK)
    assert s.lr(40, 100, PEAK) == 0.0  # reaches 0 at the end of the decay
    assert 0 < lrs[-1] < PEAK / 10
    assert np.all(np.diff(lrs) < 0)  # strictly decreasing over the updates


def test_shape_values_in_between():
    n = 100
    lin, cos, sq = (AnnealSchedule(shape=s, steps=n) for s in ("linear", "cosine", "1-sqrt"))
    assert lin.lr(50, 1, PEAK) == pytest.approx(PEAK / 2)
    assert cos.lr(50, 1, PEAK) == pytest.approx(PEAK / 2)
    assert cos.lr(25, 1, PEAK) == pytest.approx(PEAK * (1 + math.cos(math.pi / 4)) / 2)
    assert sq.lr(25, 1, PEAK) == pytest.approx(PEAK / 2)  # 1 - sqrt(1/4)
    # cosine stays above linear early, 1-sqrt drops below it
    assert cos.lr(10, 1, PEAK) > lin.lr(10, 1, PEAK) > sq.lr(10, 1, PEAK)


def test_length_in_steps_or_epochs():
    assert AnnealSchedule(steps=7).n_steps(k=1000) == 7
    assert AnnealSchedule(epochs=2, batch_size=32).n_steps(k=100) == math.ceil(2 * 100 / 32)
    assert AnnealSchedule(epochs=0.01, batch_size=32).n_steps(k=10) == 1
    assert AnnealSchedule(batch_size=10).n_steps(k=25) == 10  # default: 4 epochs
    assert AnnealSchedule.from_dict({"shape": "cosine", "epochs": 3}).to_dict()["epochs"] == 3


def test_bad_schedules():
    with pytest.raises(UnknownNameError, match=r"unknown decay shape 'exp'; known: \['linear', 'cosine', '1-sqrt', 'exponential', 'step'\]"):
        AnnealSchedule(shape="exp")
    with pytest.raises(InvalidParameterError, match="not both"):
        AnnealSchedule(steps=3, epochs=1)
    with pytest.raises(InvalidParameterError, match="positive integer"):
        AnnealSchedule(steps=0)
    with pytest.raises(InvalidParameterError, match="epochs"):
        AnnealSchedule(epochs=-1.0)
    with pytest.raises(UnknownNameError, match="optimizer_state"):
        AnnealSchedule(optimizer_state="keep")
