"""Schedule objects, curves and their loaders: values, validation, file formats."""

import json

import numpy as np
import pytest

from direct_opt.errors import InvalidInputError, InvalidParameterError, NonFiniteError, UnknownNameError
from direct_opt.schedule import (WSD, Constant, Cosine, Curve, PerStep, as_lrs, decay_factor, load_curves,
                                 parse_schedule, save_curves, schedule_from_dict)


def test_wsd_values():
    lr = WSD(10, 1.0, 0.4, "linear", warmup_steps=2).lrs()
    assert lr.tolist() == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])
    assert WSD(8, 2.0, 0.5, "step").lrs()[-4:] == pytest.approx(2.0 * 0.1 ** (np.array([1, 2, 3, 3]) / 3))
    assert WSD(5, 1.0, 0.0).lrs().tolist() == [1.0] * 5
    assert Constant(4, 3.0, 1).lrs().tolist() == [3.0] * 4
    cos = Cosine(5, 1.0, final_lr=0.1).lrs()
    assert cos[0] == pytest.approx(0.1 + 0.9 * (1 + np.cos(np.pi / 5)) / 2) and cos[-1] == pytest.approx(0.1)


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt", "exponential", "step"])
def test_shapes_start_at_one_and_do_not_increase(shape):
    f = decay_factor(np.linspace(0, 1, 101), shape)
    assert f[0] == 1.0 and np.all(np.diff(f) <= 1e-15) and f[-1] >= 0


def test_dict_round_trip_and_spec():
    for s in (WSD(100, 3e-3, 0.2, "1-sqrt", 10), Cosine(50, 1e-3, 5, 1e-4), Constant(7, 1.0), PerStep([1, 0.5])):
        assert schedule_from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert parse_schedule("wsd:ratio=0.3,shape=cosine,warmup=5", total_steps=100, peak_lr=1e-3) == \
        WSD(100, 1e-3, 0.3, "cosine", 5)
    with pytest.raises(UnknownNameError, match="known"):
        parse_schedule("triangle", total_steps=10, peak_lr=1.0)
    with pytest.raises(InvalidParameterError, match="needs total steps"):
        parse_schedule("constant")


@pytest.mark.parametrize("bad, err, msg", [
    (lambda: WSD(10, -1.0), InvalidParameterError, "must be > 0"),
    (lambda: WSD(10, 1.0, 0.5, "zigzag"), UnknownNameError, "known"),
    (lambda: WSD(10, 1.0, 1.0, warmup_steps=2), InvalidParameterError, "decay steps"),
    (lambda: Constant(0, 1.0), InvalidParameterError, "total_steps"),
    (lambda: PerStep([1.0, -0.1]), InvalidInputError, "negative learning rate"),
    (lambda: PerStep([]), InvalidInputError, "empty"),
    (lambda: as_lrs([1.0, float("nan")]), NonFiniteError, "NaN"),
    (lambda: as_lrs([0.0, 0.0]), InvalidInputError, "zero at every step"),
])
def test_schedules_reject_bad_input(bad, err, msg):
    with pytest.raises(err, match=msg):
        bad()


@pytest.mark.parametrize("kw, err, msg", [
    (dict(steps=[2, 1], losses=[1, 1]), InvalidInputError, "strictly increasing"),
    (dict(steps=[1, 1], losses=[1, 1]), InvalidInputError, "strictly increasing"),
    (dict(steps=[], losses=[]), InvalidInputError, "empty"),
    (dict(steps=[1, 2], losses=[1.0, float("nan")]), NonFiniteError, "NaN"),
    (dict(steps=[1, 9], losses=[1, 1]), InvalidInputError, "1..T=4"),
    (dict(steps=[1, 2], losses=[1, 1], lrs=[1, -1, 1, 1]), InvalidInputError, "negative"),
])
def test_curves_reject_bad_input(kw, err, msg):
    kw = {"lrs": [1.0] * 4, **kw}
    with pytest.raises(err, match=msg):
        Curve(**kw)


def test_csv_jsonl_json_loaders(tmp_path):
    lrs = WSD(6, 1.0, 0.5).lrs()
    rows = ["step,lr,loss"] + [f"{t},{lrs[t - 1]},{'' if t % 2 else 3.0 - 0.1 * t}" for t in range(1, 7)]
    (tmp_path / "run.csv").write_text("\n".join(rows))
    c = load_curves(tmp_path / "run.csv", model_size=1e6)[0]
    assert c.steps.tolist() == [2, 4, 6] and c.lrs == pytest.approx(lrs) and c.name == "run" and c.model_size == 1e6
    (tmp_path / "run.jsonl").write_text("\n".join(json.dumps({"step": t, "lr": lrs[t - 1], "loss": 3.0 - 0.1 * t,
                                                              "tokens": 1}) for t in range(1, 7)))
    assert load_curves(tmp_path / "run.jsonl")[0].losses.size == 6
    # sparse logging: lr only where the loss was logged -> need the per-step schedule
    (tmp_path / "sparse.csv").write_text("step,lr,loss\n2,1.0,2.9\n6,0.0,2.5\n")
    with pytest.raises(InvalidInputError, match="missing at 4 step"):
        load_curves(tmp_path / "sparse.csv")
    np.save(tmp_path / "lrs.npy", lrs)
    assert load_curves(tmp_path / "sparse.csv", schedule=tmp_path / "lrs.npy")[0].lrs == pytest.approx(lrs)
    save_curves(tmp_path / "set.json", [c, c], {"note": "x"})
    back = load_curves(tmp_path / "set.json")
    assert len(back) == 2 and back[0].to_dict() == c.to_dict()
    (tmp_path / "one.json").write_text(json.dumps({"lrs": lrs.tolist(), "steps": [3], "losses": [2.0]}))
    assert load_curves(tmp_path / "one.json")[0].final_loss == 2.0
    (tmp_path / "bad.csv").write_text("step,loss\n1,2.0\n")
    with pytest.raises(InvalidInputError, match="step, lr, loss"):
        load_curves(tmp_path / "bad.csv")
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_curves(tmp_path / "nope.csv")
