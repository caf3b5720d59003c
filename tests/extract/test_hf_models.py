"""Extraction on stock transformers causal LMs (tiny random-init configs, default sdpa attention):
every projector equals explicit autograd per-sample gradients, with right/left/dynamic padding,
HF collators, and the PEFT default filter."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from direct_opt.errors import InvalidParameterError  # noqa: E402
from direct_opt.extract import ExtractConfig, extract_stats, hf_causal_lm_loss  # noqa: E402
from direct_opt.extract.data import to_device  # noqa: E402
from direct_opt.extract.hf import pad_collate  # noqa: E402
from direct_opt.extract.hf_tiny import tiny_causal_lm, word_tokenizer  # noqa: E402
from direct_opt.extract.params import select_params  # noqa: E402
from direct_opt.extract.per_sample import PerSampleGrad  # noqa: E402
from direct_opt.extract.pipeline import _make_sketcher  # noqa: E402

V, T = 64, 12


def samples(n: int, seed: int = 0, lengths=None) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    lengths = lengths or [T] * n
    return [{"input_ids": torch.randint(1, V, (L,), generator=g), "attention_mask": torch.ones(L, dtype=torch.long)}
            for L in lengths]


def left_pad(batch_samples):
    longest = max(len(s["input_ids"]) for s in batch_samples)
    ids, mask = [], []
    for s in batch_samples:
        pad = longest - len(s["input_ids"])
        ids.append(torch.cat([torch.zeros(pad, dtype=torch.long), s["input_ids"]]))
        mask.append(torch.cat([torch.zeros(pad, dtype=torch.long), s["attention_mask"]]))
    return {"input_ids": torch.stack(ids), "attention_mask": torch.stack(mask)}


def explicit(model, loss_fn, names, sample):
    """Plain autograd gradient of one unpadded sample: {name: grad}."""
    params = dict(model.named_parameters())
    batch = {k: v[None] for k, v in sample.items()}
    loss = loss_fn(model, batch).sum()
    gs = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
    return {n: torch.zeros_like(params[n]) if g is None else g for n, g in zip(names, gs)}


def expected_sketch(sketcher, names, g):
    proj = sketcher.projector
    if proj.name != "kronecker":
        flat = torch.cat([g[n].reshape(-1) for n in names])
        return proj.project(flat[None])[0], flat.square().sum()
    parts = []
    for layer in proj.layers:
        w = g[layer.weight].T if layer.transposed else g[layer.weight]
        if layer.bias is not None:
            w = torch.cat([w, g[layer.bias][:, None]], 1)
        parts.append((layer.p_out.T @ w @ layer.p_in).reshape(-1))
    if proj.fallback is not None:
        parts.append(proj.fallback.project(torch.cat([g[n].reshape(-1) for n in proj.fallback_names])[None])[0])
    return torch.cat(parts), sum(t.square().sum() for t in g.values())


def check_batch(model, batch, pool, projector, k=128):
    loss_fn = hf_causal_lm_loss()
    names = select_params(model, None)
    engine = PerSampleGrad(model, loss_fn, names, torch.device("cpu"))
    sk = _make_sketcher(model, loss_fn, engine, ExtractConfig(k_sketch=k, projector=projector), torch.device("cpu"))
    losses, z, sq = sk.sketch(to_device(batch, torch.device("cpu")), len(pool), 0, "pool")
    for i, s in enumerate(pool):
        g = explicit(model, loss_fn, names, s)
        ez, esq = expected_sketch(sk, names, g)
        torch.testing.assert_close(z[i], ez, rtol=2e-4, atol=2e-5)
        assert sq[i].item() == pytest.approx(esq.item(), rel=1e-4)
    return sk


@pytest.mark.parametrize("family", ["gpt2", "llama", "neox"])
@pytest.mark.parametrize("projector", ["gaussian", "sjlt", "kronecker"])
def test_every_projector_equals_explicit_gradients_dynamic_padding(family, projector):
    model = tiny_causal_lm(family, vocab=V)
    assert model.config._attn_implementation == "sdpa"
    pool = samples(3, lengths=[T, T - 4, T - 7])
    sk = check_batch(model, pad_collate(pool), pool, projector)
    assert model.config._attn_implementation == "sdpa"  # restored after the vmap pass
    if projector == "kronecker":  # LayerNorm / RMSNorm weights come from the hooks: no vmap pass
        assert sk.projector.vmap_names == []


@pytest.mark.parametrize("family", ["gpt2", "llama", "neox"])
@pytest.mark.parametrize("projector", ["gaussian", "kronecker"])
def test_left_padding_equals_unpadded(family, projector):
    model = tiny_causal_lm(family, vocab=V)
    pool = samples(3, seed=1, lengths=[T, T - 3, T - 6])
    check_batch(model, left_pad(pool), pool, projector)


def test_hf_collator_batch_encoding_and_peft_default_filter():
    from transformers import DataCollatorWithPadding

    texts = ["the cat sat on the mat", "a dog ran", "the bird sang a long song today", "cats and dogs"]
    tok = word_tokenizer(texts, max_vocab=V)
    model = tiny_causal_lm("llama", vocab=V, lora=True)
    names = select_params(model, None)
    assert names and all("lora_" in n for n in names)  # the adapters only, not the frozen base
    feats = [dict(tok(t)) for t in texts]
    collator = DataCollatorWithPadding(tok)
    batch = collator(feats)
    assert type(batch).__name__ == "BatchEncoding"
    pool = [{"input_ids": torch.tensor(f["input_ids"]), "attention_mask": torch.tensor(f["attention_mask"])}
            for f in feats]
    for projector in ("sjlt", "kronecker"):
        check_batch(model, batch, pool, projector)
    st = extract_stats(model, hf_causal_lm_loss(), feats, feats[:2],
                       ExtractConfig(k_sketch=64, projector="sjlt", batch_size=3, verbose=False, collate_fn=collator))
    assert st.config["model"]["n_selected"] == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_reductions():
    model = tiny_causal_lm("gpt2", vocab=V)
    pool = samples(2, lengths=[T, T - 5])
    batch = pad_collate(pool)
    mean = hf_causal_lm_loss()(model, batch)
    total = hf_causal_lm_loss(reduction="sum")(model, batch)
    weighted = hf_causal_lm_loss(reduction="token-weighted", mean_tokens=7.5)(model, batch)
    torch.testing.assert_close(total, mean * torch.tensor([T - 1.0, T - 6.0]))
    torch.testing.assert_close(weighted, total / 7.5)
    with pytest.raises(InvalidParameterError, match="mean_tokens"):
        hf_causal_lm_loss(reduction="token-weighted")
    with pytest.raises(InvalidParameterError, match="reduction"):
        hf_causal_lm_loss(reduction="avg")


def test_plain_id_tensors_with_a_pad_token_id():
    """GPT-2 with pad_token_id set and (B, T) id tensors (no mask): no data-dependent pad check under vmap."""
    import transformers

    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=2,
                                                                 n_positions=T, pad_token_id=0)).eval()
    g = torch.Generator().manual_seed(3)
    ids = [torch.randint(0, V, (T,), generator=g) for _ in range(6)]
    st = extract_stats(model, hf_causal_lm_loss(), ids[:4], ids[4:],
                       ExtractConfig(k_sketch=32, projector="gaussian", batch_size=4, verbose=False))
    assert st.n == 4 and st.token_counts.tolist() == [T] * 4
