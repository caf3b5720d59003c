"""TinyGPT forward pass, deterministic init, loss contract, and vmap(grad) per-sample gradients."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from direct_opt.lm import GPTConfig, TinyGPT, lm_loss

SMALL = GPTConfig(n_layer=2, n_head=2, d_model=16, seq_len=12)


def _batch(b: int, t: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, t + 1), generator=torch.Generator().manual_seed(seed))


def test_forward_shapes_and_default_config() -> None:
    model = TinyGPT(seed=0)
    assert model.config == GPTConfig()
    x = _batch(3, 64)[:, :-1]
    assert model(x).shape == (3, 64, 256)
    assert model(x[:, :10]).shape == (3, 10, 256)
    with pytest.raises(ValueError, match="seq_len"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_linear_layers_are_hookable_and_untied() -> None:
    model = TinyGPT(SMALL)
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert "lm_head" in linears and "blocks.0.attn.qkv" in linears and "blocks.1.mlp.out" in linears
    assert model.lm_head.weight is not model.tok_emb.weight
    tied = TinyGPT(GPTConfig(n_layer=1, n_head=2, d_model=16, seq_len=8, tie_embeddings=True))
    assert tied.lm_head.weight is tied.tok_emb.weight
    assert tied(torch.zeros(2, 8, dtype=torch.long)).shape == (2, 8, 256)


def test_init_deterministic_and_rng_untouched() -> None:
    state = torch.random.get_rng_state()
    a, b, c = TinyGPT(SMALL, seed=3), TinyGPT(SMALL, seed=3), TinyGPT(SMALL, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (n, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(p, q), n
    assert not torch.equal(a.tok_emb.weight, c.tok_emb.weight)


def test_bad_config_rejected() -> None:
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(d_model=10, n_head=4)
    with pytest.raises(ValueError, match="attn_impl"):
        GPTConfig(attn_impl="flash")


def test_lm_loss_per_sample_matches_manual_ce() -> None:
    model = TinyGPT(SMALL, seed=1).eval()
    batch = _batch(4, 12)
    losses = lm_loss(model, batch.to(torch.uint8))
    assert losses.shape == (4,)
    logits = model(batch[:, :-1])
    ref = torch.stack([F.cross_entropy(logits[i], batch[i, 1:]) for i in range(4)])
    torch.testing.assert_close(losses, ref)
    assert lm_loss(model, batch[:1]).shape == (1,)
    with pytest.raises(ValueError, match="shape"):
        lm_loss(model, batch[0])


def test_manual_attention_matches_sdpa() -> None:
    a = TinyGPT(SMALL, seed=2).eval()
    b = TinyGPT(GPTConfig(**{**SMALL.to_dict(), "attn_impl": "sdpa"}), seed=2).eval()
    x = _batch(3, 12)[:, :-1]
    torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_vmap_grad_equals_per_sample_loop(impl: str) -> None:
    model = TinyGPT(GPTConfig(**{**SMALL.to_dict(), "attn_impl": impl}), seed=5).eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    batch = _batch(5, 12, seed=7)

    def single(p: dict, sample: torch.Tensor) -> torch.Tensor:
        return lm_loss(lambda x: functional_call(model, p, (x,)), sample[None])[0]

    with warnings.catch_warnings():
        if impl == "manual":  # the manual path has native batching rules: no fallback warning
            warnings.simplefilter("error")
        else:
            warnings.simplefilter("ignore")
        per_sample = vmap(grad(single), in_dims=(None, 0))(params, batch)
    for i in range(batch.shape[0]):
        loss = lm_loss(model, batch[i:i + 1])[0]
        ref = torch.autograd.grad(loss, list(model.parameters()))
        for (name, _), r in zip(model.named_parameters(), ref):
            torch.testing.assert_close(per_sample[name][i], r, atol=1e-6, rtol=1e-4)
