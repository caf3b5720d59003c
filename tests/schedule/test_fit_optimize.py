"""fit/predict JSON round trip, bootstrap intervals, fit input errors, and optimize vs its grid."""

import numpy as np
import pytest

from direct_opt.errors import InvalidInputError, InvalidParameterError
from direct_opt.schedule import (WSD, Constant, Cosine, fit, get_law, law_from_dict, load_law, optimize,
                                 LAWS)

T, PK = 200, 3e-3
TRUTH = get_law("multi-power")(dict(L0=1.5, A=0.8, alpha=0.4, B=0.5, C=2.0, beta=0.6, gamma=0.4), lr_scale=PK)


def _curves(law=TRUTH, noise=5e-4):
    rng = np.random.default_rng(0)
    out = []
    for s in (Constant(T, PK, 10), WSD(T, PK, 0.3, "linear", 10), Cosine(T, PK, 10)):
        steps = np.arange(12, T + 1, 4)
        out.append(dict(lrs=s.lrs(), steps=steps, losses=law.predict(s, steps) + rng.normal(0, noise, steps.size),
                        name=s.label))
    return out


@pytest.fixture(scope="module")
def fitted():
    return fit(_curves(), law="multi-power", bootstrap=6, n_starts=3)


def test_predict_json_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "law.json")
    back = load_law(path)
    s = WSD(T, PK, 0.2, "1-sqrt", 10)
    assert back.predict(s) == pytest.approx(fitted.predict(s), rel=1e-14)
    assert back.params == fitted.params and back.fit_info["goodness"] == fitted.fit_info["goodness"]
    lo, hi = back.predict_interval(s, level=0.9)
    assert np.all(lo <= hi) and lo.shape == (T,)
    for k, (a, b) in back.param_intervals(0.9).items():
        assert a <= b, k
    assert law_from_dict(fitted.to_dict()).summary() == fitted.summary()


def test_fit_input_errors():
    with pytest.raises(InvalidInputError, match="at least one curve"):
        fit([], law="momentum")
    with pytest.raises(InvalidInputError, match="model size"):
        fit(_curves()[:1], law="forward-momentum")
    with pytest.raises(InvalidInputError, match="NaN"):
        fit([dict(lrs=[1.0, 1.0], steps=[1, 2], losses=[1.0, float("nan")])], law="momentum")
    with pytest.raises(Exception, match="known"):
        fit(_curves(), law="power")
    with pytest.raises(InvalidInputError, match="after step"):
        fit([dict(lrs=[0.1, 0.2, 0.3], steps=[1, 2], losses=[3.0, 2.0])], law="momentum")


def test_single_size_forward_momentum_cannot_extrapolate_in_n():
    law = fit(_curves()[:2], law="forward-momentum", model_size=1e6, bootstrap=0, n_starts=2)
    assert law.fixed == ("B", "alpha_N")
    s = WSD(T, PK, 0.2)
    assert np.isfinite(law.final_loss(s))
    with pytest.raises(InvalidParameterError, match="one model size"):
        law.final_loss(s, model_size=4e6)


@pytest.mark.parametrize("name", ["momentum", "multi-power", "forward-momentum"])
def test_optimize_is_never_worse_than_its_grid(name):
    law = TRUTH if name == "multi-power" else get_law(name)(
        dict(L0=1.5, A=0.8, alpha=0.4, C=0.002, lam=0.97) if name == "momentum" else
        dict(L0=1.5, A=0.8, alpha_S=0.4, B=0.0, alpha_N=0.3, C=0.0008), lr_scale=PK, model_size=1e6, n_scale=1e6)
    opt = optimize(law, 300, warmup_steps=10, knots=16)
    finite = opt.grid[np.isfinite(opt.grid)]
    assert opt.best_loss <= finite.min() + 1e-12
    assert opt.best_grid_loss == pytest.approx(finite.min())
    assert law.final_loss(opt.best) == pytest.approx(opt.best_loss)
    ff = opt.free_form.lrs()
    assert ff[10] == pytest.approx(PK) and np.all(np.diff(ff[10:]) <= 1e-15) and ff.min() >= 0
    assert opt.free_form_loss <= opt.best_grid_loss + 1e-3  # started from the (knot-projected) best grid point
    r, v = opt.best_ratio("linear")
    assert v == pytest.approx(np.nanmin(opt.grid[0, opt.shapes.index("linear")]))
    assert opt.to_dict()["best_loss"] == opt.best_loss


def test_optimize_input_errors():
    with pytest.raises(InvalidParameterError, match="cannot choose a peak LR"):
        optimize(TRUTH, 100, peak_lr=[1e-3, 3e-3])
    with pytest.raises(InvalidParameterError, match="fractions"):
        optimize(TRUTH, 100, ratios=[1.5])
    with pytest.raises(InvalidParameterError, match="total_steps"):
        optimize(TRUTH, 1)
    assert "multi-power" in LAWS


def test_a_law_with_the_peak_lr_capability_gets_the_peak_searched():
    from direct_opt.schedule.laws import LossLaw, Param

    class PeakLaw(LossLaw):
        """Toy law with an interior optimum at peak 1: L = L0 + (max η - 1)² - 0.01·Σ Δ."""

        name = "toy-peak"
        PARAMS = (Param("L0", 0.0, 10.0),)

        @classmethod
        def evaluate(cls, theta, prepared, n):
            _, eta, idx = prepared
            return theta[0] + (eta.max() - 1.0) ** 2 - 0.01 * (eta.max() - eta[idx])

    LAWS.add("toy-peak", PeakLaw, capabilities={"peak_lr": True})
    try:
        opt = optimize(PeakLaw({"L0": 1.0}), 50, peak_lr=[0.5, 1.0, 2.0], shapes=["linear"], ratios=[0.2, 0.5],
                       free_form=False)
        assert opt.best_grid.peak_lr == 1.0 and opt.grid.shape == (3, 1, 2)
    finally:
        LAWS.remove("toy-peak")
