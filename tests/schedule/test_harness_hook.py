"""The evaluation harness anneals with any schedule object and weighs selection against schedule."""

import pytest

from direct_opt.errors import InvalidInputError, InvalidParameterError
from direct_opt.evaluate import AnnealSchedule, evaluate, schedule_gain
from direct_opt.lm import lm_loss
from direct_opt.schedule import WSD, PerStep, get_law
from tests.evaluate.evaluate_testlib import tiny_data, tiny_state


def test_anneal_schedule_takes_a_schedule_object():
    s = AnnealSchedule(lr_schedule=WSD(6, 2e-3, 0.5, "exponential"), batch_size=4)
    assert s.n_steps(k=100) == 6 and s.lrs(100, 9.9) == pytest.approx(WSD(6, 2e-3, 0.5, "exponential").lrs())
    assert AnnealSchedule.from_dict(s.to_dict()) == s
    assert "lr_schedule" not in AnnealSchedule().to_dict()  # old records still resume
    with pytest.raises(InvalidParameterError, match="leave shape"):
        AnnealSchedule(lr_schedule=PerStep([1e-3]), steps=3)
    assert AnnealSchedule(shape="step", steps=3).lrs(1, 1.0)[1:] == pytest.approx([0.1 ** (1 / 3), 0.1 ** (2 / 3)])


def test_harness_runs_the_schedule_and_reports_both_gains():
    data = tiny_data()
    state = tiny_state(data)
    lrs = [2e-3, 2e-3, 1e-3, 5e-4]
    law = get_law("momentum")(dict(L0=1.0, A=1.0, alpha=0.5, C=0.5, lam=0.9), lr_scale=2e-3)
    gain = schedule_gain(law, [2e-3] * 20 + lrs, ratios=[0.1, 0.2, 0.5])
    assert gain["gain"] >= 0 and gain["best"] <= gain["current"]
    rep = evaluate(state, lm_loss, data["pool"], data["val"], data["test"], ["random", "loss"], k=8, seeds=[0],
                   schedule=AnnealSchedule(lr_schedule=PerStep(lrs), batch_size=4, eval_every=2),
                   progress=False, schedule_gain=gain)
    assert rep.run("random", 0)["lrs"] == pytest.approx(lrs)
    assert rep.run("random", 0)["anneal_steps"] == 4
    line = rep.table().splitlines()[-1]
    assert line.startswith("Selection vs schedule: the best selection (loss)") and "momentum law" in line
    with pytest.raises(InvalidInputError, match="schedule_gain"):
        evaluate(state, lm_loss, data["pool"], data["val"], data["test"], ["random"], k=8, seeds=[0],
                 progress=False, schedule_gain={"best": 1.0})
