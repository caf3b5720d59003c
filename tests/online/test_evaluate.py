"""evaluate_online: equal steps and equal compute against the static harness; CLI checks names first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from direct_opt.errors import InvalidParameterError, UnknownNameError
from direct_opt.evaluate import AnnealSchedule
from direct_opt.evaluate.online import evaluate_online
from direct_opt.lm import lm_loss
from tests.evaluate.evaluate_testlib import tiny_data, tiny_state

ROOT = Path(__file__).resolve().parents[2]
SCHED = AnnealSchedule(steps=6, batch_size=2, eval_every=3)


@pytest.fixture(scope="module")
def setup():
    data = tiny_data()
    return data, tiny_state(data)


def test_equal_steps_and_equal_compute(setup, tmp_path):
    data, state = setup
    rep = evaluate_online(state, lm_loss, data["pool"], data["val"], data["test"], online=["blade", "uniform"],
                          static=["random"], k=8, seeds=[0, 1], schedule=SCHED, super_batch_factor=4,
                          pool_groups=data["groups"], target_group="clean:words", out_dir=tmp_path, progress=False)
    s = rep["summary"]
    assert rep["config"]["B"] == 8 and rep["config"]["n_steps"] == 6
    assert s["equal_steps"]["blade"]["steps"] == [6] and s["equal_steps"]["uniform"]["steps"] == [6]
    # blade: 2 candidate forwards x B, reference step on b + val rows (fwd + 2 bwd)
    assert s["equal_steps"]["blade"]["extra_units_per_step"] == 2 * 8 + 3 * (2 + 8)
    # equal compute: uniform costs a plain step, blade gets floor(3*2*6 / (6 + 46)) = 0 steps
    assert s["equal_compute"]["uniform"]["steps"] == [6]
    assert s["equal_compute"]["blade"]["unaffordable"]
    assert s["equal_steps"]["blade"]["diff_test_vs_random"]["n"] == 2
    for f in ("results.json", "table.md", "online_curves.png", "online_composition.png"):
        assert (tmp_path / f).is_file()
    assert json.loads((tmp_path / "results.json").read_text())["format"] == "direct_opt.online_eval"
    # resumed from the run files: same numbers
    again = evaluate_online(state, lm_loss, data["pool"], data["val"], data["test"], online=["blade", "uniform"],
                            static=["random"], k=8, seeds=[0, 1], schedule=SCHED, pool_groups=data["groups"],
                            target_group="clean:words", out_dir=tmp_path, progress=False, plot=False)
    assert again["summary"] == rep["summary"]


def test_names_checked_before_work(setup):
    data, state = setup
    kw = dict(k=8, seeds=[0], schedule=SCHED, progress=False)
    with pytest.raises(UnknownNameError):
        evaluate_online(state, lm_loss, data["pool"], data["val"], data["test"], online=["nope"], **kw)
    with pytest.raises(UnknownNameError):
        evaluate_online(state, lm_loss, data["pool"], data["val"], data["test"], static=["nope"], **kw)
    with pytest.raises(InvalidParameterError, match="exceeds the pool"):
        evaluate_online(state, lm_loss, data["pool"], data["val"], data["test"], super_batch_factor=64, **kw)


def test_cli_lists_and_rejects_bad_names_fast():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "direct_opt.cli", "online"]
    ok = subprocess.run(cmd + ["--list"], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0 and "blade" in ok.stdout and "greats" in ok.stdout
    bad = subprocess.run(cmd + ["--online", "blade:penalty=-1", "--corpus", "stdlib"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "penalty" in bad.stderr and "corpus" not in bad.stdout
