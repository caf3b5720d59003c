"""Bad input to the harness fails early with an error naming the problem and the fix."""

from __future__ import annotations

import pytest

from direct_opt.errors import InvalidInputError, InvalidParameterError, UnknownNameError
from direct_opt.evaluate import AnnealSchedule, DataOverlapError, evaluate
from direct_opt.lm import TinyGPT, lm_loss
from direct_opt.selectors import available_selectors, select

from .evaluate_testlib import CFG, SCHEDULE


def _call(state, data, selectors=("random",), k=4, seeds=(0,), **kw):
    args = {"pool": data["pool"], "val": data["val"], "test": data["test"], **kw.pop("replace", {})}
    return evaluate(state, lm_loss, args["pool"], args["val"], args["test"], list(selectors), k=k, seeds=list(seeds),
                    schedule=kw.pop("schedule", SCHEDULE), progress=False, plot=False, **kw)


def test_k_larger_than_pool(state, data):
    n = data["pool"].shape[0]
    with pytest.raises(InvalidParameterError, match=rf"k={n + 1} exceeds the pool size N={n}"):
        _call(state, data, k=n + 1)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InvalidParameterError, match="positive integer"):
            _call(state, data, k=bad)


def test_test_rows_overlapping_pool_or_val(state, data):
    test = data["test"].clone()
    test[5] = data["pool"][17]
    with pytest.raises(DataOverlapError, match=r"1 of 12 test rows also occur in the pool \(first: test row 5\)"):
        _call(state, data, replace={"test": test})
    test = data["test"].clone()
    test[0] = data["val"][2]
    with pytest.raises(DataOverlapError, match="validation set"):
        _call(state, data, replace={"test": test})
    assert issubclass(DataOverlapError, ValueError)


def test_unknown_selector_lists_known_ones(state, data):
    with pytest.raises(UnknownNameError, match=r"unknown selector\(s\) \['lesss'\]") as exc:
        _call(state, data, selectors=["random", "lesss"])
    for name in available_selectors():
        assert repr(name) in str(exc.value)


def test_unknown_selector_option_fails_before_any_work(state, data, monkeypatch):
    """A misspelt option (direct:bakend=...) is an error up front, before extraction or annealing."""
    import direct_opt.evaluate.harness as harness
    from direct_opt.evaluate.annealer import TinyGPTAnnealer

    def no_work(*a, **k):  # pragma: no cover - reaching it is the failure
        raise AssertionError("the harness started working before checking the options")

    monkeypatch.setattr(TinyGPTAnnealer, "anneal", no_work)
    monkeypatch.setattr(harness, "extract_phase", no_work)
    with pytest.raises(InvalidParameterError, match=r"no option\(s\) \['bakend'\].*'backend'"):
        _call(state, data, selectors=["random", "direct:bakend=greedy"])
    with pytest.raises(InvalidParameterError, match=r"no option\(s\) \['block_size'\]"):  # fw-block's, not sca-exact's
        _call(state, data, selectors=["direct:backend=sca-exact,block_size=8"])
    with pytest.raises(UnknownNameError, match="unknown backend 'scaa'"):
        _call(state, data, selectors=["direct:backend=scaa"])
    with pytest.raises(InvalidParameterError, match=r"no option\(s\) \['topk'\]"):
        _call(state, data, selectors=["less:topk=3"])


def test_excess_loss_without_reference_or_model(state, data):
    # the harness: a bare TinyGPT has no EMA, so excess-loss has no reference model
    model = TinyGPT(CFG)
    model.load_state_dict(state.model_state)
    sched = AnnealSchedule(steps=2, batch_size=4, optimizer_state="reset")
    with pytest.raises(ValueError, match=r"'excess-loss' needs a reference model .*reference="):
        _call(model, data, selectors=["excess-loss"], schedule=sched)
    # the selector API: only stats given -> names everything that is missing
    from tests.selectors.selectors_testlib import random_stats

    stats = random_stats(n=10)[0]
    with pytest.raises(ValueError, match=r"'excess-loss' needs model, loss_fn, pool and reference; got stats only"):
        select("excess-loss", k=3, stats=stats)


def test_faithful_less_without_optimizer_state_stops_before_work(state, data, tmp_path):
    model = TinyGPT(CFG)  # a bare model: no AdamW state, so no Adam features for LESS
    model.load_state_dict(state.model_state)
    sched = AnnealSchedule(steps=2, batch_size=4, optimizer_state="reset")
    with pytest.raises(InvalidInputError, match=r"faithful LESS.*no optimizer state.*less:features=sgd.*mean-gradient"):
        _call(model, data, selectors=["less"], schedule=sched, out_dir=tmp_path / "e")
    assert not (tmp_path / "e").exists()
    with pytest.raises(InvalidInputError, match=r"'taylor-fisher'.*no optimizer state.*taylor-fisher:step=sgd"):
        _call(model, data, selectors=["random", "taylor-fisher"], schedule=sched, out_dir=tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_other_bad_inputs(state, data):
    with pytest.raises(InvalidParameterError, match="seeds is empty"):
        _call(state, data, seeds=())
    with pytest.raises(InvalidParameterError, match="duplicates"):
        _call(state, data, seeds=(1, 1))
    with pytest.raises(InvalidInputError, match=r"pool_groups has shape \(3,\)"):
        _call(state, data, pool_groups=["a", "b", "c"])
    with pytest.raises(InvalidInputError, match="integer token/byte ids"):
        _call(state, data, replace={"pool": data["pool"].float()})
    model = TinyGPT(CFG)
    with pytest.raises(InvalidParameterError, match="optimizer_state='restore' needs the optimizer state"):
        _call(model, data)
    with pytest.raises(InvalidParameterError, match="unknown schedule key"):
        _call(state, data, schedule={"shape": "linear", "warmup": 3})
