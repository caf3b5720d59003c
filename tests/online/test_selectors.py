"""Online selectors: contract (b distinct in-range indices, determinism), references, bad input, registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from direct_opt.errors import InvalidInputError, InvalidParameterError, UnknownNameError, UnsupportedConstraintError
from direct_opt.lm import TinyGPT, lm_loss
from direct_opt.online import (ONLINE, OnlineSelector, available_online_selectors, make_online_selector,
                               register_online_selector)
from tests.evaluate.evaluate_testlib import CFG, tiny_data

B, b = 16, 4
FAST = {"rho-loss": {"ref_steps": 2}}


@pytest.fixture(scope="module")
def data():
    return tiny_data()


def _make(name, data, seed=0, model=None, **opts):
    model = model if model is not None else TinyGPT(CFG, seed=0)
    return make_online_selector(name, model=model, loss_fn=lm_loss, val=data["val"], b=b, seed=seed,
                                **{**FAST.get(name, {}), **opts})


def _run(sel, data, steps=2):
    """Select, take one SGD step on the chosen rows, update; the chosen indices per step."""
    model = sel.model
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = []
    for t in range(steps):
        cand = data["pool"][t * B:(t + 1) * B]
        idx = sel.select(cand, t, groups=data["groups"][t * B:(t + 1) * B])
        loss = lm_loss(model, cand[torch.from_numpy(idx)]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sel.update(model, t)
        out.append(idx)
    return out


@pytest.mark.parametrize("name", ["blade", "blade-ema", "rho-loss", "greats", "loss", "uniform"])
def test_b_distinct_in_range_and_deterministic(name, data):
    opts = {"reference": "ema"} if name == "blade-ema" else {}
    name = name.replace("-ema", "")
    runs = [_run(_make(name, data, **opts), data) for _ in range(2)]
    for idx in runs[0]:
        assert idx.dtype == np.int64 and idx.shape == (b,) and np.unique(idx).size == b
        assert idx.min() >= 0 and idx.max() < B
    assert all(np.array_equal(x, y) for x, y in zip(*runs)), "same seed must give the same choices"
    other = _run(_make(name, data, seed=1, **opts), data)
    if name == "uniform":
        assert not all(np.array_equal(x, y) for x, y in zip(runs[0], other))


def test_all_builtins_registered():
    assert set(available_online_selectors()) >= {"blade", "rho-loss", "greats", "loss", "uniform"}


def _ref_params(sel):
    return torch.cat([p.detach().flatten().clone() for p in sel.reference.parameters()])


@pytest.mark.parametrize("reference", ["lagrangian", "lockstep", "ema"])
def test_dynamic_reference_moves(reference, data):
    sel = _make("blade", data, reference=reference)
    before = _ref_params(sel)
    _run(sel, data, steps=1)
    assert not torch.equal(before, _ref_params(sel)), "blade's reference must move with training"


def test_static_reference_does_not_move(data):
    sel = _make("rho-loss", data)
    before = _ref_params(sel)
    _run(sel, data, steps=2)
    assert torch.equal(before, _ref_params(sel))
    assert sel.setup_cost["backward"] > 0  # it was trained once on the validation rows


def test_quotas_honoured_online(data):
    groups = data["groups"]
    for name in ("blade", "loss", "uniform"):
        sel = _make(name, data, max_fraction={"degraded:random": 0.25})
        for t in range(2):
            cand = torch.cat([data["pool"][t * 8:(t + 1) * 8], data["pool"][16 + t * 8:16 + (t + 1) * 8]])
            g = np.concatenate([groups[t * 8:(t + 1) * 8], groups[16 + t * 8:16 + (t + 1) * 8]])
            idx = sel.select(cand, t, groups=g)
            assert (g[idx] == "degraded:random").sum() <= 1
            assert sel.diagnostics["composition"].get("degraded:random", 0) <= 1


def test_bad_input_errors(data):
    sel = _make("loss", data)
    with pytest.raises(InvalidInputError, match="exceeds the super-batch"):
        sel.select(data["pool"][:b - 1], 0)
    with pytest.raises(InvalidInputError, match="empty"):
        sel.select(data["pool"][:0], 0)
    per_token = lambda m, x: torch.nn.functional.cross_entropy(  # noqa: E731
        m(x[:, :-1]).transpose(1, 2), x[:, 1:], reduction="none")
    for name in ("loss", "blade", "greats"):
        s = make_online_selector(name, model=TinyGPT(CFG), loss_fn=per_token, val=data["val"], b=b)
        with pytest.raises(InvalidInputError, match="per-token losses"):
            s.select(data["pool"][:B], 0)
    scalar = lambda m, x: lm_loss(m, x).mean()  # noqa: E731
    with pytest.raises(InvalidInputError, match="scalar"):
        make_online_selector("loss", model=TinyGPT(CFG), loss_fn=scalar, b=b).select(data["pool"][:B], 0)
    with pytest.raises(UnknownNameError, match="known"):
        make_online_selector("nope", model=TinyGPT(CFG), loss_fn=lm_loss, b=b)
    with pytest.raises(InvalidParameterError, match="no option"):
        _make("blade", data, bogus=1)
    with pytest.raises(InvalidParameterError, match="reference"):
        _make("blade", data, reference="frozen")
    with pytest.raises(InvalidParameterError, match="b=0"):
        make_online_selector("uniform", model=TinyGPT(CFG), loss_fn=lm_loss, b=0)
    with pytest.raises(UnsupportedConstraintError, match="quotas"):
        _make("greats", data, max_fraction={"x": 0.5})
    with pytest.raises(InvalidInputError, match="val"):
        make_online_selector("rho-loss", model=TinyGPT(CFG), loss_fn=lm_loss, b=b)
    with pytest.raises(InvalidParameterError, match="groups"):
        _make("loss", data, max_fraction={"degraded:random": 0.5}).select(data["pool"][:B], 0)


def test_user_registered_selector_in_a_few_lines(data):
    @register_online_selector("short-rows", description="prefer rows with many spaces")
    class ShortRows(OnlineSelector):
        def scores(self, batch, n, step, rng):
            return (batch == 32).sum(1).double().numpy(), {}

    try:
        assert "short-rows" in available_online_selectors()
        sel = make_online_selector("short-rows", model=TinyGPT(CFG), loss_fn=lm_loss, b=b)
        idx = sel.select(data["pool"][:B], 0)
        spaces = (data["pool"][:B] == 32).sum(1).numpy()
        assert spaces[idx].min() >= np.sort(spaces)[-b]
    finally:
        ONLINE.remove("short-rows")
