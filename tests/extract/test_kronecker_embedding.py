"""Kronecker projector: embeddings, tied embedding/head, LayerNorm hooks, against explicit
per-sample gradients projected by the corresponding Kronecker / dense matrices."""

import pytest
import torch
import torch.nn.functional as F

from direct_opt.extract.kronecker import KroneckerProjector
from direct_opt.extract.per_sample import PerSampleGrad
from direct_opt.extract.sketch import KroneckerSketcher

V, D, T, B = 13, 5, 6, 4


class TiedLM(torch.nn.Module):
    """Token + position embeddings, LayerNorm, an MLP, and a head tied to the token embedding."""

    def __init__(self, pos: str = "1d", tied: bool = True, padding_idx: int | None = None) -> None:
        super().__init__()
        self.pos = pos
        self.wte = torch.nn.Embedding(V, D, padding_idx=padding_idx)
        self.wpe = torch.nn.Embedding(T, D)
        self.ln = torch.nn.LayerNorm(D)
        self.fc = torch.nn.Linear(D, D)
        self.head = torch.nn.Linear(D, V, bias=False)
        if tied:
            self.head.weight = self.wte.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        pos = torch.arange(t)
        pos = {"1d": pos, "lead1": pos[None], "batched": pos.expand(ids.shape[0], t)}[self.pos]
        x = self.wte(ids) + self.wpe(pos)
        x = x + torch.tanh(self.fc(self.ln(x)))
        return self.head(x)


def lm_loss(model, ids):
    logits = model(ids)[:, :-1]
    tok = F.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1), reduction="none")
    return tok.reshape(ids.shape[0], -1).mean(1)


def explicit_grads(model, ids):
    params = dict(model.named_parameters())  # a tied parameter appears once
    out = []
    for i in range(ids.shape[0]):
        loss = lm_loss(model, ids[i : i + 1]).sum()
        gs = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        out.append({n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(params.items(), gs)})
    return out


def run(model, ids, **opts):
    names = [n for n, _ in model.named_parameters()]
    proj = KroneckerProjector(model, names, k=60, seed=4, **opts)
    eng = PerSampleGrad(model, lm_loss, names, torch.device("cpu"))
    fb = PerSampleGrad(model, lm_loss, proj.vmap_names, torch.device("cpu")) if proj.vmap_names else None
    return proj, KroneckerSketcher(eng, proj, fb).sketch(ids, ids.shape[0], 0, "pool")


def check_against_explicit(model, ids, proj, z, sq):
    grads = explicit_grads(model, ids)
    kk = proj.k_in * proj.k_out
    fbm = proj.fallback.matrix().double() if proj.fallback is not None else None
    for i, g in enumerate(grads):
        full = torch.cat([t.reshape(-1) for t in g.values()])
        assert sq[i].item() == pytest.approx(full.square().sum().item(), rel=1e-4)
        for j, layer in enumerate(proj.layers):
            w = g[layer.weight]
            if layer.bias is not None:
                w = torch.cat([w, g[layer.bias][:, None]], 1)
            kron = torch.kron(layer.p_out.double(), layer.p_in.double())  # (rows*cols', k_out*k_in)
            torch.testing.assert_close(z[i, j * kk : (j + 1) * kk].double(), kron.T @ w.reshape(-1),
                                       rtol=1e-4, atol=1e-6)
        if fbm is not None:
            flat = torch.cat([g[n].reshape(-1) for n in proj.fallback_names])
            torch.testing.assert_close(z[i, len(proj.layers) * kk :].double(), flat @ fbm, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("pos", ["1d", "lead1", "batched"])
def test_tied_embedding_head_equals_explicit_kronecker(pos):
    torch.manual_seed(0)
    model = TiedLM(pos).double().eval()
    ids = torch.randint(0, V, (B, T))
    ids[0, :3] = ids[0, 3]  # repeated tokens in one sample
    proj, (losses, z, sq) = run(model, ids)
    by_weight = {l.weight: [(u.module_name, u.kind) for u in l.uses] for l in proj.layers}
    assert by_weight["wte.weight"] == [("wte", "embedding"), ("head", "linear")]  # one block, both uses
    assert by_weight["wpe.weight"] == [("wpe", "embedding")]
    assert "head.weight" not in by_weight and len(proj.layers) == 3
    assert proj.fallback_names == ["ln.weight", "ln.bias"] and proj.vmap_names == []  # LayerNorm from hooks
    torch.testing.assert_close(losses.double(), lm_loss(model, ids).detach(), rtol=1e-6, atol=1e-7)
    check_against_explicit(model, ids, proj, z, sq)
    # deterministic given the seed; the device cache of the fallback block changes no value
    for opts in ({}, {"cache_bytes": 0}):
        assert torch.equal(run(model, ids, **opts)[1][1], z)
    names = [n for n, _ in model.named_parameters()]
    other = KroneckerProjector(model, names, k=60, seed=5)
    assert not torch.equal(other.layers[0].p_out, proj.layers[0].p_out)


def test_untied_padding_idx_and_embeddings_off():
    torch.manual_seed(1)
    model = TiedLM("1d", tied=False, padding_idx=0).double().eval()
    ids = torch.randint(0, V, (B, T))
    ids[:, 2] = 0  # padding rows get no gradient
    proj, (_, z, sq) = run(model, ids)
    assert [l.weight for l in proj.layers] == ["wte.weight", "wpe.weight", "fc.weight", "head.weight"]
    check_against_explicit(model, ids, proj, z, sq)
    # embeddings=False: embeddings go to the dense fallback (vmap), still exact
    proj_off, (_, z_off, sq_off) = run(model, ids, embeddings=False)
    assert proj_off.vmap_names == ["wte.weight", "wpe.weight"]
    check_against_explicit(model, ids, proj_off, z_off, sq_off)


def test_bad_embedding_ids_shape_is_named():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.e = torch.nn.Embedding(7, 3)

        def forward(self, x):
            return self.e(torch.zeros(3, 2, dtype=torch.long)).sum() + x.sum(1) * 0

    model = Odd().eval()
    proj = KroneckerProjector(model, ["e.weight"], k=4)
    eng = PerSampleGrad(model, lambda m, x: m(x), ["e.weight"], torch.device("cpu"))
    with pytest.raises(Exception, match="embedding 'e'.*embeddings"):
        KroneckerSketcher(eng, proj, None).sketch(torch.ones(2, 4), 2, 0, "pool")


def test_functional_use_of_a_hooked_weight_is_refused():
    class FunctionalHead(TiedLM):
        def forward(self, ids):
            x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
            return x @ self.wte.weight.T  # head term outside any hooked module

    torch.manual_seed(2)
    model = FunctionalHead(tied=False).double().eval()
    with pytest.raises(Exception, match="wte.weight.*functionally"):
        run(model, torch.randint(0, V, (B, T)))
    # with embeddings routed to the dense (vmap) fallback it is exact
    ids = torch.randint(0, V, (B, T))
    proj, (_, z, sq) = run(model, ids, embeddings=False)
    assert "wte.weight" in proj.vmap_names
    check_against_explicit(model, ids, proj, z, sq)


@pytest.mark.parametrize("tied", [True, False])
def test_kronecker_is_a_projector_whose_flat_map_equals_the_hooked_sketch(tied):
    from direct_opt.extract import Projector, make_projector

    torch.manual_seed(3)
    model = TiedLM("1d", tied=tied).double().eval()
    ids = torch.randint(0, V, (B, T))
    proj, (_, z, _) = run(model, ids)
    assert isinstance(proj, Projector) and proj.input == "model" and proj.k_sketch == 60
    names = [n for n, _ in model.named_parameters()]
    eng = PerSampleGrad(model, lm_loss, names, torch.device("cpu"))
    flat = eng.flatten(eng.losses_and_grads(ids)[1])
    assert proj.dim == flat.shape[1]
    torch.testing.assert_close(proj.project(flat).double(), z.double(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(proj.project(flat), flat.float() @ proj.matrix(), rtol=1e-4, atol=1e-6)
    # an object is used as given when it fits the extraction, refused when it does not
    assert make_projector(proj, k=60, dim=proj.dim, model=model, names=names) is proj
    with pytest.raises(Exception, match="other selected parameters"):
        make_projector(proj, k=60, dim=proj.dim, model=model, names=names[::-1])
    with pytest.raises(Exception, match="expects"):
        proj.project(flat[:, 1:])
