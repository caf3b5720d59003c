"""Paired differences over seeds with Student-t intervals, checked against scipy and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from direct_opt.evaluate import build_summary, paired_difference, summarize, t_critical

X = [2.91, 2.87, 2.95, 2.90]
Y = [2.95, 2.93, 2.96, 2.97]


def test_matches_scipy_and_hand_computation():
    d = paired_difference(X, Y)
    diff = np.subtract(X, Y)
    ci = st.ttest_rel(X, Y).confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    # by hand: t_{0.975, 3} = 3.182446305...
    half = 3.182446305284263 * diff.std(ddof=1) / math.sqrt(4)
    assert d.mean == pytest.approx(diff.mean()) and d.low == pytest.approx(diff.mean() - half)
    assert d.t_crit == pytest.approx(3.182446305284263)
    assert d.n == 4 and d.significant  # all four differences are negative and the interval excludes 0
    d90 = paired_difference(X, Y, level=0.9)
    assert d90.high - d90.low < d.high - d.low


def test_pairing_by_seed_and_edge_cases():
    # mappings pair only the common seeds, in seed order
    d = paired_difference({0: 1.0, 1: 2.0, 5: 4.0}, {1: 1.5, 5: 3.0, 7: 9.0})
    assert d.seeds == (1, 5) and d.mean == pytest.approx((0.5 + 1.0) / 2)
    one = paired_difference([1.0], [2.0])
    assert one.n == 1 and math.isnan(one.low) and not one.significant
    assert one.to_dict()["low"] is None
    assert not paired_difference([1.0, 1.2], [1.1, 1.0]).significant
    assert math.isnan(t_critical(1))
    assert summarize([1.0, 3.0]).std == pytest.approx(math.sqrt(2))
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1.0, 2.0], [1.0])


def _rec(label, seed, test, val):
    return {"label": label, "seed": seed, "final": {"test": test, "val": val}, "before": {"test": 3.0, "val": 3.0},
            "selection_time_s": 0.1, "anneal_time_s": 1.0, "indices": [seed, 10 + seed], "curves": {},
            "composition": {"clean:a": 0.5, "degraded:x": 0.5}, "program": None}


def test_summary_differences_are_paired_by_seed():
    runs = [_rec("random", s, y, y + 0.01) for s, y in enumerate(Y)] + \
           [_rec("less", s, x, x + 0.02) for s, x in enumerate(X)]
    summ = build_summary(runs, ["random", "less"], [0, 1, 2, 3], "random", "clean:a")
    ref = paired_difference(X, Y).to_dict()
    got = summ["less"]["diff_test_vs_baseline"]
    assert got.pop("seeds") == ref.pop("seeds") == [0, 1, 2, 3]
    assert got == pytest.approx(ref)
    assert summ["random"]["diff_test_vs_baseline"] is None
    assert summ["less"]["test"]["mean"] == pytest.approx(np.mean(X))
    assert summ["less"]["test"]["std"] == pytest.approx(np.std(X, ddof=1))
    assert summ["less"]["target_fraction"] == 0.5 and summ["less"]["degraded_fraction"] == 0.5
