"""Faithful LESS (Xia et al., 2024) against a brute-force computation of the paper's formulas.

The sketch is an exact rotation here (a random orthonormal d x d basis as the projector), so
cosines of the sketches equal those of the explicit per-sample gradients in parameter space.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from direct_opt.errors import InvalidInputError, InvalidParameterError
from direct_opt.extract import ExtractConfig, extract_stats
from direct_opt.extract.projectors import BasisProjector
from direct_opt.selectors import cosine_scores, select
from direct_opt.stats import GradientStats

from .selectors_testlib import TinyReg, make_pairs, mse, random_stats

BETAS, EPS = (0.8, 0.99), 1e-3


def _model() -> torch.nn.Module:
    return TinyReg(0, dtype=torch.float32)


def _adam_state(model: torch.nn.Module, seed: int, step: int) -> dict:
    """A hand-built AdamW state_dict: random moments (v >= 0), given step, betas and eps."""
    g = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    state = {i: {"step": torch.tensor(float(step)), "exp_avg": 0.3 * torch.randn(p.shape, generator=g),
                 "exp_avg_sq": 0.2 * torch.rand(p.shape, generator=g) ** 2} for i, p in enumerate(params)}
    return {"state": state, "param_groups": [{"params": list(range(len(params))), "betas": BETAS, "eps": EPS,
                                              "lr": 1e-3, "weight_decay": 0.1}]}


def _grads(model: torch.nn.Module, samples) -> np.ndarray:
    """(n, d) explicit per-sample gradients (plain autograd, one sample at a time)."""
    params = list(model.parameters())
    rows = []
    for x, y in samples:
        loss = mse(model, (x[None].float(), y[None].float())).sum()
        rows.append(torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params)]).double())
    return torch.stack(rows).numpy()


def _adam_dir(state: dict, g: np.ndarray) -> np.ndarray:
    """The paper's Γ = m̂ / (√v̂ + ε) with the moments updated by g and bias-corrected at step t+1."""
    st = state["state"]
    m = np.concatenate([st[i]["exp_avg"].reshape(-1).double().numpy() for i in sorted(st)])
    v = np.concatenate([st[i]["exp_avg_sq"].reshape(-1).double().numpy() for i in sorted(st)])
    t = float(st[0]["step"])
    b1, b2 = BETAS
    m_hat = (b1 * m + (1 - b1) * g) / (1 - b1 ** (t + 1))
    v_hat = (b2 * v + (1 - b2) * g * g) / (1 - b2 ** (t + 1))
    return m_hat / (np.sqrt(v_hat) + EPS)


def _brute_less(train: np.ndarray, val: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """(N, G) mean over each validation group of cos(train_i, val_j)."""
    cos = (train / np.linalg.norm(train, axis=1, keepdims=True)) @ (val / np.linalg.norm(val, axis=1, keepdims=True)).T
    if groups is None:
        return cos.mean(1, keepdims=True)
    return np.stack([cos[:, groups == lab].mean(1) for lab in np.unique(groups)], 1)


def _extract(model, pool, val, state, groups, seed=0):
    d = sum(p.numel() for p in model.parameters())
    basis = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]
    cfg = ExtractConfig(k_sketch=d, projector=BasisProjector(basis.float()), batch_size=7, verbose=False,
                        optimizer_state=state)
    return extract_stats(model, mse, pool, val, cfg, val_groups=groups)


@pytest.fixture(scope="module")
def setup():
    model = _model()
    pool, val = make_pairs(24, 1, torch.float32), make_pairs(9, 2, torch.float32)
    groups = np.array(["a", "b", "c"] * 3)
    states = [_adam_state(model, 5, 3), _adam_state(model, 6, 10)]
    g_pool, g_val = _grads(model, pool), _grads(model, val)
    stats = [_extract(model, pool, val, s, groups) for s in states]
    return model, pool, val, groups, states, g_pool, g_val, stats


def test_faithful_less_equals_brute_force_paper_formulas(setup):
    _, _, _, groups, states, g_pool, g_val, stats = setup
    want = _brute_less(_adam_dir(states[0], g_pool), g_val, groups).max(1)
    sel = select("less", k=6, stats=stats[0])
    np.testing.assert_allclose(sel.scores, want, atol=2e-5)
    order = np.argsort(-want, kind="stable")
    assert want[order[5]] - want[order[6]] > 1e-3  # a clear gap at the K-th place on this data
    np.testing.assert_array_equal(sel.indices, np.sort(order[:6]))
    assert sel.diagnostics["val_groups"] == ["a", "b", "c"]
    # one mean over all validation examples; plain (SGD) training features
    no_max = select("less", k=6, stats=stats[0], group_max=False).scores
    np.testing.assert_allclose(no_max, _brute_less(_adam_dir(states[0], g_pool), g_val, None)[:, 0], atol=2e-5)
    sgd = select("less", k=6, stats=stats[0], features="sgd").scores
    np.testing.assert_allclose(sgd, _brute_less(g_pool, g_val, groups).max(1), atol=2e-5)


def test_checkpoint_average_weighted_by_learning_rate(setup):
    _, _, _, groups, states, g_pool, g_val, stats = setup
    lrs = (3e-3, 1e-3)
    per = [_brute_less(_adam_dir(s, g_pool), g_val, groups) for s in states]
    want = ((lrs[0] * per[0] + lrs[1] * per[1]) / sum(lrs)).max(1)  # max after the weighted sum
    sel = select("less", k=5, stats=stats[0], checkpoints=list(zip(stats, lrs)))
    np.testing.assert_allclose(sel.scores, want, atol=2e-5)
    json.dumps(sel.to_dict())
    with pytest.raises(InvalidParameterError, match="learning rate"):
        select("less", k=5, stats=stats[0], checkpoints=[(stats[0], 0.0)])
    with pytest.raises(InvalidParameterError, match="pairs"):
        select("less", k=5, stats=stats[0], checkpoints=[stats[0]])


def test_fields_survive_save_and_load(setup, tmp_path):
    stats = setup[-1][0]
    back = GradientStats.load(stats.save(tmp_path / "s"))
    for name in ("val_coords", "adam_coords", "val_groups"):
        np.testing.assert_array_equal(getattr(back, name), getattr(stats, name))
    np.testing.assert_array_equal(select("less", k=4, stats=back).indices, select("less", k=4, stats=stats).indices)


def test_missing_adam_state_names_the_options(tmp_path):
    st, _, _ = random_stats(n=20, seed=3)
    st.adam_coords = None
    with pytest.raises(InvalidInputError, match=r"optimizer_state.*features='sgd'.*variant='mean-gradient'"):
        select("less", k=3, stats=st)
    # stats saved by an earlier version (format 2: no per-example validation gradients) still load
    st.val_coords = None
    path = st.save(tmp_path / "old")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 2
    (path / "manifest.json").write_text(json.dumps(manifest))
    old = GradientStats.load(path)
    assert old.val_coords is None and old.adam_coords is None
    with pytest.raises(InvalidInputError, match="variant='mean-gradient'"):
        select("less", k=3, stats=old)
    assert select("less", k=3, stats=old, variant="mean-gradient").k == 3


def test_mean_gradient_variant_is_the_old_less_exactly():
    st, _, _ = random_stats(n=50, seed=7)
    sel = select("less", k=9, stats=st, variant="mean-gradient")
    np.testing.assert_array_equal(sel.scores, cosine_scores(st))
    np.testing.assert_array_equal(sel.indices, np.sort(np.argsort(-cosine_scores(st), kind="stable")[:9]))
    with pytest.raises(InvalidParameterError, match="variant"):
        select("less", k=9, stats=st, variant="paper")
    with pytest.raises(InvalidParameterError, match="no features"):
        select("less", k=9, stats=st, variant="mean-gradient", features="sgd")


def test_optimizer_state_errors():
    model = _model()
    with pytest.raises(InvalidParameterError, match="state_dict"):
        ExtractConfig(optimizer_state={"exp_avg": 1}).validate()
    with pytest.raises(InvalidParameterError, match="kronecker"):
        ExtractConfig(optimizer_state=_adam_state(model, 0, 1), projector="kronecker").validate()
    other = torch.nn.Linear(2, 2)
    with pytest.raises(InvalidInputError, match="covers 4 parameters"):
        extract_stats(other, lambda m, b: m(b).sum(1), [torch.zeros(2)] * 3, [torch.zeros(2)] * 2,
                      ExtractConfig(k_sketch=3, verbose=False, optimizer_state=_adam_state(model, 0, 1)))


def test_hessian_mode_and_resume_give_the_same_features(setup, tmp_path):
    model, pool, val, groups, states, g_pool, g_val, _ = setup
    d = g_pool.shape[1]
    cfg = ExtractConfig(k_sketch=d, curvature="hessian-lanczos", batch_size=7, verbose=False,
                        optimizer_state=states[0], out_dir=str(tmp_path / "run"))
    st = extract_stats(model, mse, pool, val, cfg, val_groups=groups)  # full Hessian basis: a rotation
    want = _brute_less(_adam_dir(states[0], g_pool), g_val, groups).max(1)
    np.testing.assert_allclose(select("less", k=6, stats=st).scores, want, atol=1e-4)
    shutil.rmtree(tmp_path / "run" / "stats")
    again = extract_stats(model, mse, pool, val, cfg, val_groups=groups)  # resumed from the shards
    assert again.checksum() == st.checksum()
