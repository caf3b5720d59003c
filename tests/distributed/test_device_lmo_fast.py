"""The device LMO's cheap paths (narrow warm start, top-k based shrink selection, pinned
host copies) and the O(N) cheapest-fill of the rounding: same answers as the plain paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from direct_opt import SelectionProblem
from direct_opt.oracle import device as device_oracle
from direct_opt.oracle.device import TorchPolytope, _kth_largest
from direct_opt.linop import to_host
from direct_opt.oracle import DirectPolytope
from direct_opt.rounding import _State


def test_kth_largest_equals_kthvalue_on_both_sides_and_with_ties():
    rng = np.random.default_rng(0)
    for x in (torch.from_numpy(rng.standard_normal(1001)), torch.from_numpy(np.round(rng.standard_normal(1000), 1))):
        n = x.numel()
        for m in (1, 2, 17, n // 2, n // 2 + 1, n - 3, n):
            assert _kth_largest(torch, x, m).item() == torch.kthvalue(x, n - m + 1).values.item()


def _count_full_topk(monkeypatch, n: int) -> list:
    calls = []
    orig = torch.topk

    def counted(x, *args, **kwargs):
        if x.numel() > n // 2:
            calls.append(x.numel())
        return orig(x, *args, **kwargs)

    monkeypatch.setattr(torch, "topk", counted)
    return calls


def test_narrow_start_is_exact_and_needs_two_full_size_selections(monkeypatch):
    """Slowly drifting directions (an SCA solve's): after two calls every call starts on a
    narrow bracket around the previous multiplier -> the shrink's two selections are the only
    full-size ones, and the vertex equals the numpy oracle's."""
    rng = np.random.default_rng(3)
    n, k = 40000, 4000
    a = rng.lognormal(0.0, 1.0, n) ** 2
    tau = 0.1 * a.mean() * k
    ref, dev = DirectPolytope(a, k, tau), TorchPolytope(a, k, tau, device="cpu")
    c = rng.standard_normal(n) * np.sqrt(a)
    calls = _count_full_topk(monkeypatch, n)
    per_call = []
    for step in range(6):
        cs = c + 1e-4 * step * rng.standard_normal(n)
        before = len(calls)
        np.testing.assert_allclose(dev.lmo(cs), ref.lmo(cs), atol=1e-9)
        per_call.append(len(calls) - before)
    assert per_call[0] > 4  # cold start: the full-size search
    assert per_call[-3:] == [2, 2, 2], per_call
    assert dev._hint_width < 0.01


def test_narrow_start_that_misses_walks_outwards_exactly_and_widens(monkeypatch):
    """Jumps of the multiplier outside the narrow bracket (up by 7x, then down by 50x): the
    bracket is walked outwards on the full set, the answers stay exact, the next bracket is wider,
    and the walk costs fewer full-size selections than a cold start."""
    rng = np.random.default_rng(4)
    n, k = 20000, 2000
    a = rng.lognormal(0.0, 1.0, n) ** 2
    tau = 0.1 * a.mean() * k
    ref, dev = DirectPolytope(a, k, tau), TorchPolytope(a, k, tau, device="cpu")
    c = rng.standard_normal(n) * np.sqrt(a)
    calls = _count_full_topk(monkeypatch, n)
    np.testing.assert_allclose(dev.lmo(c), ref.lmo(c), atol=1e-9)
    cold = len(calls)
    for cs in (c + 1e-5 * rng.standard_normal(n), c + 2e-5 * rng.standard_normal(n)):
        np.testing.assert_allclose(dev.lmo(cs), ref.lmo(cs), atol=1e-9)
    narrow, mu = dev._hint_width, dev._mu_hint
    for scale in (7.0, 7.0 / 50):
        before = len(calls)
        np.testing.assert_allclose(dev.lmo(scale * c), ref.lmo(scale * c), atol=1e-9)
        assert len(calls) - before < cold
    assert narrow < 0.01 and dev._hint_width > narrow and dev._mu_hint < mu


def test_unbinding_budget_is_not_skipped_by_the_hint():
    """With a hint from a binding call, a direction whose top-K fits the budget still gets the
    plain top-K (the narrow start only claims a binding budget when its bracket proves it)."""
    rng = np.random.default_rng(5)
    n, k = 10000, 1000
    a = rng.lognormal(0.0, 1.0, n) ** 2
    tau = 0.3 * a.mean() * k
    ref, dev = DirectPolytope(a, k, tau), TorchPolytope(a, k, tau, device="cpu")
    c = rng.standard_normal(n) * np.sqrt(a)
    np.testing.assert_allclose(dev.lmo(c), ref.lmo(c), atol=1e-9)
    cheap = -a  # prefers the cheapest samples: the budget is slack
    np.testing.assert_allclose(dev.lmo(cheap), ref.lmo(cheap), atol=1e-9)
    assert float(a @ dev.lmo(cheap)) < tau


def test_to_host_of_a_cpu_tensor_is_its_values():
    t = torch.arange(5, dtype=torch.float64)
    np.testing.assert_array_equal(to_host(t), np.arange(5.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned copies need CUDA")
def test_to_host_from_cuda_is_pinned_and_exact():
    t = torch.randn(1000, dtype=torch.float64, device="cuda")
    h = to_host(t)
    np.testing.assert_array_equal(h, t.cpu().numpy())
    h2 = to_host(t * 2)
    np.testing.assert_array_equal(h, t.cpu().numpy())  # the first array is not overwritten
    np.testing.assert_array_equal(h2, (t * 2).cpu().numpy())


def test_cheapest_equals_the_stable_argsort_order():
    rng = np.random.default_rng(6)
    n = 5000
    a = np.round(rng.lognormal(0.0, 1.0, n), 1)  # many ties
    G = rng.standard_normal((3, n))
    st = _State(SelectionProblem(G, a, k=50, tau=float(a.mean() * 50)), track_gains=False)
    order = np.argsort(a, kind="stable")
    for frac in (1.0, 0.5, 0.01):
        avail = rng.random(n) < frac
        for m in (0, 1, 7, 300, int(avail.sum()), int(avail.sum()) + 5):
            np.testing.assert_array_equal(st.cheapest(avail, m), order[avail[order]][:m])


def test_structured_polytope_stays_numpy_for_cpu_problems():
    rng = np.random.default_rng(7)
    P = SelectionProblem(rng.standard_normal((3, 50)), rng.random(50), k=5, tau=1.0)
    assert type(device_oracle.structured_polytope(P)) is DirectPolytope


def test_sampled_hint_for_cold_and_jumping_calls_is_exact(monkeypatch):
    """Without a usable previous multiplier the search starts from an estimate on a strided
    sample (made small here so that the path runs at test size): the vertices stay exact, the
    estimate is near the solved multiplier, and the cold call needs few full-size selections."""
    monkeypatch.setattr(device_oracle, "_SAMPLE", 1024)
    rng = np.random.default_rng(8)
    n, k = 40000, 4000
    a = rng.lognormal(0.0, 0.5, n) ** 2
    tau = 0.25 * a.mean() * k
    ref, dev = DirectPolytope(a, k, tau), TorchPolytope(a, k, tau, device="cpu")
    estimates = []
    orig = TorchPolytope._sample_hint

    def spy(self, cf, af, kk):
        orig(self, cf, af, kk)
        estimates.append(self._mu_hint)

    monkeypatch.setattr(TorchPolytope, "_sample_hint", spy)
    calls = _count_full_topk(monkeypatch, n)
    c = rng.standard_normal(n) * np.sqrt(a)
    np.testing.assert_allclose(dev.lmo(c), ref.lmo(c), atol=1e-9)
    assert len(calls) <= 6 and estimates and 0.5 < estimates[0] / dev._mu_hint < 2.0
    for cs in (-c, 10.0 * c, rng.standard_normal(n), -a):
        np.testing.assert_allclose(dev.lmo(cs), ref.lmo(cs), atol=1e-9)
    for cs in (a, np.zeros(n)):  # every budget-tight K-set is optimal: compare values
        x = dev.lmo(cs)
        assert cs @ x == pytest.approx(cs @ ref.lmo(cs), abs=1e-9 * tau) and a @ x <= tau * (1 + 1e-12)
        assert x.sum() == pytest.approx(k) and x.min() >= 0 and x.max() <= 1
    assert len(estimates) >= 4  # jumping directions keep the width at its maximum: re-estimated
