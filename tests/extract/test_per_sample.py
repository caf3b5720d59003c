import pytest
import torch

from direct_opt.extract import ExtractConfig, extract_stats, per_sample_loss
from direct_opt.extract.kronecker import KroneckerProjector
from direct_opt.extract.per_sample import PerSampleGrad
from direct_opt.extract.sketch import KroneckerSketcher
from direct_opt.extract.params import select_params

from .extract_testlib import TinyMLP, make_data, mse_loss


def loop_grads(model, loss_fn, samples, names):
    """Reference: one autograd call per sample."""
    params = dict(model.named_parameters())
    out = []
    for s in samples:
        batch = tuple(t.unsqueeze(0) for t in s)
        loss = loss_fn(model, batch).sum()
        gs = torch.autograd.grad(loss, [params[n] for n in names])
        out.append(torch.cat([g.reshape(-1) for g in gs]))
    return torch.stack(out)


def test_batched_equals_loop():
    torch.manual_seed(0)
    model = TinyMLP().double().eval()
    samples = make_data(6, dtype=torch.float64)
    names = [n for n, _ in model.named_parameters()]
    eng = PerSampleGrad(model, mse_loss, names, torch.device("cpu"))
    batch = tuple(torch.stack(c) for c in zip(*samples))
    losses, grads = eng.losses_and_grads(batch)
    ref = loop_grads(model, mse_loss, samples, names)
    torch.testing.assert_close(eng.flatten(grads).double(), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses.double(), mse_loss(model, batch).detach(), rtol=1e-6, atol=1e-6)


def test_per_sample_loss_adapter_and_dict_batches():
    torch.manual_seed(0)
    model = TinyMLP().eval()

    def one(model, sample):  # sample: dict of un-batched tensors
        return (model(sample["x"].unsqueeze(0))[0] - sample["y"]) ** 2

    lf = per_sample_loss(one)
    samples = [{"x": x, "y": y} for x, y in make_data(5)]
    names = [n for n, _ in model.named_parameters()]
    eng = PerSampleGrad(model, lf, names, torch.device("cpu"))
    batch = {"x": torch.stack([s["x"] for s in samples]), "y": torch.stack([s["y"] for s in samples])}
    losses, grads = eng.losses_and_grads(batch)
    ref = loop_grads(model, mse_loss, [(s["x"], s["y"]) for s in samples], names)
    torch.testing.assert_close(eng.flatten(grads), ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(lf(model, batch), mse_loss(model, (batch["x"], batch["y"])))


def test_param_filter_list_and_predicate(mlp, pool, val):
    assert select_params(mlp, ["fc2.weight"]) == ["fc2.weight"]
    assert select_params(mlp, lambda n: n.startswith("fc1")) == ["fc1.weight", "fc1.bias"]
    cfg = dict(k_sketch=8, batch_size=8, verbose=False)
    st = extract_stats(mlp, mse_loss, pool, val, ExtractConfig(param_filter=["fc2.weight", "fc2.bias"], **cfg))
    assert st.config["model"]["selected"] == ["fc2.weight", "fc2.bias"]
    ref = loop_grads(mlp, mse_loss, pool, ["fc2.weight", "fc2.bias"]).norm(dim=1)
    torch.testing.assert_close(torch.from_numpy(st.grad_norms), ref, rtol=1e-4, atol=1e-6)
    # non-selected params untouched and model mode restored
    assert mlp.training


def test_buffers_and_eval_mode():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.5),
                                torch.nn.Linear(8, 1))
    model.train()
    model(torch.randn(32, 5))  # populate running stats
    lf = lambda m, b: (m(b[0]).squeeze(-1) - b[1]) ** 2  # noqa: E731
    pool, val = make_data(10, seed=3), make_data(6, seed=4)
    base = dict(k_sketch=16, batch_size=4, verbose=False)
    st32 = extract_stats(model, lf, pool, val, ExtractConfig(**base))
    model.eval()
    ref = loop_grads(model, lf, pool, [n for n, _ in model.named_parameters()]).norm(dim=1)
    torch.testing.assert_close(torch.from_numpy(st32.grad_norms), ref, rtol=1e-4, atol=1e-6)


def test_bfloat16_autocast_close_to_float32(mlp, pool, val):
    base = dict(k_sketch=16, batch_size=8, verbose=False)
    st32 = extract_stats(mlp, mse_loss, pool, val, ExtractConfig(**base))
    st16 = extract_stats(mlp, mse_loss, pool, val, ExtractConfig(dtype="bf16", **base))
    assert st16.config["extract"]["dtype"] == "bfloat16"
    torch.testing.assert_close(torch.from_numpy(st16.grad_norms), torch.from_numpy(st32.grad_norms),
                               rtol=0.05, atol=1e-2)
    torch.testing.assert_close(torch.from_numpy(st16.losses), torch.from_numpy(st32.losses), rtol=0.05, atol=1e-2)


class SeqNet(torch.nn.Module):
    """(B, T, 5) -> LayerNorm (fallback params) -> Linear -> tanh -> Linear -> mean over T."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(5)
        self.a = torch.nn.Linear(5, 6)
        self.b = torch.nn.Linear(6, 3, bias=False)

    def forward(self, x):
        return self.b(torch.tanh(self.a(self.norm(x)))).mean(1)


def test_kronecker_equals_explicit_kronecker_projection():
    torch.manual_seed(0)
    model = SeqNet().double().eval()
    x = torch.randn(4, 4, 5, dtype=torch.float64)
    y = torch.randn(4, 3, dtype=torch.float64)
    lf = lambda m, b: ((m(b[0]) - b[1]) ** 2).sum(-1)  # noqa: E731
    names = [n for n, _ in model.named_parameters()]
    proj = KroneckerProjector(model, names, k=40, seed=3)
    assert proj.fallback_names == ["norm.weight", "norm.bias"]
    assert (proj.k_in, proj.k_out) == (3, 3) and proj.k_fallback == 40 - 18
    eng = PerSampleGrad(model, lf, names, torch.device("cpu"))
    fb = PerSampleGrad(model, lf, proj.fallback_names, torch.device("cpu"))
    losses, z, sq = KroneckerSketcher(eng, proj, fb).sketch((x, y), 4, 0, "pool")
    params = dict(model.named_parameters())
    for i in range(4):
        loss = lf(model, (x[i : i + 1], y[i : i + 1])).sum()
        g = dict(zip(names, torch.autograd.grad(loss, list(params.values()))))
        full = torch.cat([t.reshape(-1) for t in g.values()])
        assert sq[i].item() == pytest.approx(full.square().sum().item(), rel=1e-5)
        wa = torch.cat([g["a.weight"], g["a.bias"][:, None]], 1)  # (6, 5 + 1): bias folded in
        la, lb = proj.layers
        for off, layer, w in ((0, la, wa), (9, lb, g["b.weight"])):
            kron = torch.kron(layer.p_out.double(), layer.p_in.double())  # (d_out*d_in', k_out*k_in)
            expect = kron.T @ w.reshape(-1)
            torch.testing.assert_close(z[i, off : off + 9].double(), expect, rtol=1e-4, atol=1e-5)
        fbm = proj.fallback.matrix().double()
        expect_fb = torch.cat([g["norm.weight"], g["norm.bias"]]) @ fbm
        torch.testing.assert_close(z[i, 18:].double(), expect_fb, rtol=1e-4, atol=1e-5)
