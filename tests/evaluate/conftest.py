"""Shared tiny checkpoint and one full 7-selector evaluation for the harness tests."""

from __future__ import annotations

import pytest

from direct_opt.evaluate import ALL_SELECTORS, evaluate
from direct_opt.lm import lm_loss

from .evaluate_testlib import EXTRACT, SCHEDULE, tiny_data, tiny_state

#: at the paper's tau_rel = 0.1 no K-subset of this tiny pool fits the stiff budget
TAU_REL = 1.0
FULL_SELECTORS = [s if s != "direct" else {"name": "direct", "options": {"tau_rel": TAU_REL}, "label": "direct"}
                  for s in ALL_SELECTORS]


@pytest.fixture(scope="session")
def data():
    return tiny_data()


@pytest.fixture(scope="session")
def state(data):
    return tiny_state(data)


@pytest.fixture(scope="session")
def full_report(data, state, tmp_path_factory):
    """Every built-in selector, 2 seeds, K = 8 of 32, written to a directory."""
    out = tmp_path_factory.mktemp("eval_full")
    rep = evaluate(state, lm_loss, data["pool"], data["val"], data["test"], FULL_SELECTORS, k=8,
                   seeds=[0, 1], schedule=SCHEDULE, extract_config=EXTRACT, pool_groups=data["groups"],
                   target_group="clean:words", out_dir=out, progress=False, program_tau_rel=TAU_REL)
    return rep, out
