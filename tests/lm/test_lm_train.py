"""Pretraining, WSD schedules, annealing determinism and exact checkpoint restore."""

from __future__ import annotations

import math

import pytest
import torch

from direct_opt.errors import InvalidParameterError, UnknownNameError
from direct_opt.lm import (
    GPTConfig, TinyGPT, TrainState, anneal, evaluate_loss, load_model, pretrain, wsd_lr,
)

CFG = GPTConfig(n_layer=1, n_head=2, d_model=32, seq_len=16)


def _text_data(n: int, seed: int) -> torch.Tensor:
    """Learnable byte windows: snippets of a fixed English text at random offsets."""
    text = (b"the quick brown fox jumps over the lazy dog while the cat sleeps in the sun. " * 8)
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(text) - 17, (n,), generator=g)
    return torch.tensor([list(text[s:s + 17]) for s in starts.tolist()], dtype=torch.long)


@pytest.fixture(scope="module")
def state() -> TrainState:
    return pretrain(TinyGPT(CFG, seed=0), _text_data(128, 0), steps=40, lr=3e-3, batch_size=16, seed=0)


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt"])
def test_wsd_lr_shapes(shape: str) -> None:
    vals = [wsd_lr(s, 50, 0.01, shape) for s in range(51)]
    assert vals[0] == pytest.approx(0.01) and vals[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(vals, vals[1:]))
    assert wsd_lr(80, 50, 0.01, shape) == 0.0 and wsd_lr(-3, 50, 0.01, shape) == pytest.approx(0.01)
    assert wsd_lr(25, 50, 1.0, "cosine") == pytest.approx(0.5)
    assert wsd_lr(25, 100, 1.0, "1-sqrt") == pytest.approx(0.5)


def test_wsd_lr_errors() -> None:
    with pytest.raises(UnknownNameError):
        wsd_lr(0, 10, 1.0, "zigzag")
    with pytest.raises(InvalidParameterError):
        wsd_lr(0, 0, 1.0, "linear")


def test_pretrain_lowers_loss_and_keeps_ema(state: TrainState) -> None:
    data = _text_data(64, 1)
    init = evaluate_loss(TinyGPT(CFG, seed=0), data)
    trained = evaluate_loss(state.model(), data)
    assert init > 5.0 and trained < init - 1.0
    assert len(state.losses) == 40 == state.steps and state.losses[-1] < state.losses[0]
    ema = state.ema_model()
    assert evaluate_loss(ema, data) < init  # the EMA follows the trajectory
    assert not torch.equal(ema.tok_emb.weight, state.model().tok_emb.weight)
    assert state.optim_state["state"], "AdamW moments are part of the checkpoint"


def test_pretrain_deterministic_and_rng_untouched() -> None:
    rng = torch.random.get_rng_state()
    a = pretrain(TinyGPT(CFG, seed=1), _text_data(32, 2), steps=5, batch_size=8, seed=3, ema_decay=0.0)
    b = pretrain(TinyGPT(CFG, seed=1), _text_data(32, 2), steps=5, batch_size=8, seed=3, ema_decay=0.0)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert a.losses == b.losses
    for k in a.model_state:
        assert torch.equal(a.model_state[k], b.model_state[k])
        assert torch.equal(a.model_state[k], a.ema_state[k])  # decay 0: EMA == weights


def test_anneal_deterministic_and_checkpoint_untouched(state: TrainState) -> None:
    sel, evals = _text_data(24, 3), {"val": _text_data(16, 4), "test": _text_data(16, 5)}
    before_m = {k: v.clone() for k, v in state.model_state.items()}
    before_o = {i: {k: v.clone() for k, v in s.items()} for i, s in state.optim_state["state"].items()}
    kw = dict(steps=7, peak_lr=3e-3, shape="cosine", batch_size=8, seed=11, eval_sets=evals,
              eval_every=3, config=CFG)
    r1 = anneal(state.model_state, state.optim_state, sel, **kw)
    r2 = anneal(state.model_state, state.optim_state, sel, **kw)
    assert r1.curves == r2.curves and r1.final == r2.final and r1.train_losses == r2.train_losses
    assert [s for s, _ in r1.curves["val"]] == [0, 3, 6, 7]
    for k in r1.model_state:
        assert torch.equal(r1.model_state[k], r2.model_state[k])
    for k, v in before_m.items():  # checkpoint tensors never mutated
        assert torch.equal(state.model_state[k], v)
    for i, s in before_o.items():
        for k, v in s.items():
            assert torch.equal(state.optim_state["state"][i][k], v)
    # step-0 point is exactly the restored checkpoint
    assert r1.curves["test"][0][1] == evaluate_loss(load_model(state.model_state, CFG), evals["test"])
    assert r1.lrs[0] == pytest.approx(3e-3) and r1.lrs == [wsd_lr(t, 7, 3e-3, "cosine") for t in range(7)]
    r3 = anneal(state.model_state, state.optim_state, sel, **{**kw, "seed": 12})
    assert r3.train_losses != r1.train_losses


def test_anneal_optimizer_state_modes_and_epochs(state: TrainState) -> None:
    sel, ev = _text_data(20, 6), {"val": _text_data(8, 7)}
    kw = dict(epochs=2, peak_lr=3e-3, batch_size=8, seed=0, eval_sets=ev, eval_every=100, config=CFG)
    restored = anneal(state.model_state, state.optim_state, sel, **kw)
    reset = anneal(state.model_state, None, sel, optimizer_state="reset", **kw)
    assert restored.steps == reset.steps == math.ceil(2 * 20 / 8)
    assert restored.curves["val"][0] == reset.curves["val"][0]
    assert restored.final["val"] != reset.final["val"]
    assert restored.final["val"] < restored.curves["val"][0][1]  # annealing on in-domain data helps
    with pytest.raises(InvalidParameterError):
        anneal(state.model_state, None, sel, **kw)
    with pytest.raises(InvalidParameterError):
        anneal(state.model_state, state.optim_state, sel, steps=3, **kw)
    with pytest.raises(InvalidParameterError):
        anneal(state.model_state, state.optim_state, torch.zeros(4, 40, dtype=torch.long), steps=2,
               config=CFG)


def test_pretrain_progress_bar_shows_steps_and_changes_nothing(capsys) -> None:
    quiet = pretrain(TinyGPT(CFG, seed=1), _text_data(32, 2), steps=3, batch_size=8, seed=3)
    shown = pretrain(TinyGPT(CFG, seed=1), _text_data(32, 2), steps=3, batch_size=8, seed=3, progress=True)
    err = capsys.readouterr().err
    assert "pretraining" in err and "3/3" in err
    assert quiet.losses == shown.losses
