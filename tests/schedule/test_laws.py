"""The laws' building blocks against hand-computed values, the fast multi-power LD sum against
the O(T²) definition, and every law recovering its own parameters from noisy curves it generated."""

import numpy as np
import pytest

import direct_opt.schedule.laws as laws_mod
from direct_opt.schedule import (WSD, Constant, Cosine, adam_momentum, available_laws, decrements, fit,
                                 forward_area, get_law, momentum_area, multi_power_ld, warmup_length)


def test_registry_lists_the_three_laws():
    assert available_laws() == ["forward-momentum", "momentum", "multi-power"]
    assert laws_mod.LAWS.entry("forward-momentum").capabilities["model_size"] is True


def test_s1_s2_by_hand():
    eta = np.array([1.0, 1.0, 0.5, 0.25])
    assert forward_area(eta).tolist() == [1.0, 2.0, 2.5, 2.75]
    assert decrements(eta).tolist() == [0.0, 0.0, 0.5, 0.25]
    # m_i = λ m_{i-1} + Δ_i with λ = 0.5: 0, 0, 0.5, 0.5 -> S2 = 0, 0, 0.5, 1.0
    assert momentum_area(eta, 0.5) == pytest.approx([0.0, 0.0, 0.5, 1.0])
    # the double sum of the definition, term by term
    lam, d = 0.9, decrements(eta)
    s2 = [sum(d[k] * lam ** (i - k) for j in range(i + 1) for k in [j]) for i in range(4)]
    assert momentum_area(eta, lam) == pytest.approx(np.cumsum(s2))


def test_warmup_is_not_a_decrement():
    eta = np.array([0.25, 0.5, 1.0, 1.0, 0.5])
    assert warmup_length(eta) == 3
    assert decrements(eta).tolist() == [0.0, 0.0, 0.0, 0.0, 0.5]
    assert warmup_length(np.ones(3)) == 1


def test_adam_momentum_by_hand():
    eta = np.array([1.0, 1.0, 0.5, 0.25])
    b1, b2 = 0.9, 0.999
    m = v = 0.0
    want, acc = [], 0.0
    for i, d in enumerate([0.0, 0.0, 0.5, 0.25], start=1):
        m, v = b1 * m + (1 - b1) * d, b2 * v + (1 - b2) * d * d
        acc += (m / (1 - b1 ** i)) / (np.sqrt(v / (1 - b2 ** i)) + 1e-8)
        want.append(acc)
    assert adam_momentum(eta) == pytest.approx(want, rel=1e-12)
    # step 3: m̂ = 0.05/(1-0.729), v̂ = 0.00025/(1-0.999³): ratio 0.6388...
    assert want[2] == pytest.approx(0.05 / 0.271 / np.sqrt(0.00025 / (1 - 0.999 ** 3)), rel=1e-6)


def _ld_definition(eta, B, C, beta, gamma):
    d, out = decrements(eta), np.zeros(eta.size)
    e = np.maximum(eta, 1e-12 * eta.max())
    for t in range(eta.size):
        out[t] = B * sum(d[k] * (1 - (C * e[k] ** -gamma * eta[k:t + 1].sum() + 1) ** -beta)
                         for k in range(t + 1) if d[k] != 0)
    return out


@pytest.mark.parametrize("sched", [Cosine(60, 1.0, 5), WSD(60, 1.0, 0.4, "step", 3), WSD(60, 2.0, 0.3, "1-sqrt")])
def test_multi_power_ld_matches_its_definition(sched):
    eta = sched.lrs()
    want = _ld_definition(eta, 0.7, 2.0, 0.6, 0.4)
    assert multi_power_ld(eta, np.arange(eta.size), 0.7, 2.0, 0.6, 0.4) == pytest.approx(want, rel=1e-10, abs=1e-14)
    law = get_law("multi-power")(dict(L0=1.0, A=0.5, alpha=0.3, B=0.7, C=2.0, beta=0.6, gamma=0.4))
    curve = law.predict(eta)
    assert curve == pytest.approx(1.0 + 0.5 * np.cumsum(eta) ** -0.3 - want, rel=1e-10)
    assert law.final_loss(eta) == pytest.approx(curve[-1], rel=1e-12)


def test_long_curves_use_grouped_ld_accurately(monkeypatch):
    eta = WSD(20_000, 1.0, 0.4, "cosine", 100).lrs()
    idx = np.arange(0, 20_000, 50)
    exact = multi_power_ld(eta, idx, 0.5, 2.0, 0.6, 0.4)
    monkeypatch.setattr(laws_mod, "LD_EXACT_BUDGET", 1000)
    monkeypatch.setattr(laws_mod, "LD_GROUPS", 256)
    approx = multi_power_ld(eta, idx, 0.5, 2.0, 0.6, 0.4)
    assert np.max(np.abs(approx - exact)) < 1e-3 * exact.max()


TRUE = {
    "momentum": dict(L0=1.5, A=0.8, alpha=0.4, C=0.002, lam=0.97),
    "forward-momentum": dict(L0=1.5, A=0.8, alpha_S=0.4, B=0.3, alpha_N=0.3, C=0.0008),
    "multi-power": dict(L0=1.5, A=0.8, alpha=0.4, B=0.5, C=2.0, beta=0.6, gamma=0.4),
}
#: parameters the curves determine well (C/β of the multi-power law trade off against each other)
CHECK = {"momentum": ("L0", "A", "alpha", "C", "lam"), "forward-momentum": ("L0", "A", "alpha_S", "B", "alpha_N", "C"),
         "multi-power": ("L0", "A", "alpha", "B", "gamma")}


@pytest.mark.parametrize("name", sorted(TRUE))
def test_each_law_recovers_its_own_parameters(name):
    rng = np.random.default_rng(1)
    T, pk = 300, 3e-3
    cls = get_law(name)
    sizes = (1e5, 4e5, 1.6e6) if name == "forward-momentum" else (None,)  # 3 sizes identify L0, B, α_N
    truth = cls(TRUE[name], lr_scale=pk, n_scale=1e5)
    curves = []
    for n in sizes:
        for s in (Constant(T, pk, 10), WSD(T, pk, 0.3, "linear", 10), Cosine(T, pk, 10)):
            steps = np.arange(12, T + 1, 4)
            y = truth.predict(s, steps, model_size=n) + rng.normal(0, 5e-4, steps.size)
            curves.append(dict(lrs=s.lrs(), steps=steps, losses=y, name=f"{s.label}-{n}", model_size=n))
    law = fit(curves, law=name, bootstrap=0, n_starts=4)
    for p in CHECK[name]:
        assert law.params[p] == pytest.approx(TRUE[name][p], rel=0.1), (p, law.params)
    held = WSD(T, pk, 0.15, "1-sqrt", 10)
    assert law.final_loss(held, model_size=sizes[-1]) == pytest.approx(
        truth.final_loss(held, model_size=sizes[-1]), abs=2e-3)
    assert law.fit_info["goodness"]["r2"] > 0.99
