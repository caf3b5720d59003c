"""Your Hugging Face model, end to end: extract -> select (less, direct) -> write back -> anneal -> evaluate.

Everything is built locally (no download): a small Llama-style model from a config, a
word-level tokenizer, and a `datasets.Dataset` of local text. A short "stable phase" gives
the checkpoint and its AdamW state that the anneal restores.

    python examples/hf_end_to_end.py [--out runs/hf_example] [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import datasets
import torch
import transformers

from direct_opt.evaluate import AnnealSchedule, evaluate
from direct_opt.evaluate.hf_annealer import HFAnnealer, own_loss
from direct_opt.extract import ExtractConfig, extract_stats, hf_causal_lm_loss
from direct_opt.extract.hf import pad_collate
from direct_opt.extract.hf_tiny import word_tokenizer
from direct_opt.extract.writeback import selected_rows, write_back
from direct_opt.selectors import select

ANIMALS = "cat dog bird fox owl".split()
PLACES = "mat log tree den nest".split()
VERBS = "sat slept sang hid ran".split()


def corpus(n: int, rng: random.Random, clean: bool) -> list[str]:
    """Sentences 'the <animal> <verb> on the <place>' (clean) or the same words shuffled (noise)."""
    out = []
    for _ in range(n):
        words = ["the", rng.choice(ANIMALS), rng.choice(VERBS), "on", "the", rng.choice(PLACES)]
        if not clean:
            rng.shuffle(words)
        out.append(" ".join(words))
    return out


def tokenized(tok, texts: list[str]) -> datasets.Dataset:
    ds = datasets.Dataset.from_dict({"text": texts})
    ds = ds.map(lambda b: tok(b["text"]), batched=True)
    return ds.with_format("torch", columns=["input_ids", "attention_mask"])


def main(out: Path, seeds: list[int]) -> dict:
    datasets.disable_progress_bars()
    rng = random.Random(0)
    pool_text = corpus(48, rng, clean=True) + corpus(48, rng, clean=False)
    rng.shuffle(pool_text)
    val_text, test_text = corpus(16, rng, clean=True), corpus(16, rng, clean=True)
    test_text = [t for t in test_text if t not in set(pool_text) | set(val_text)]

    tok = word_tokenizer(pool_text + val_text, max_vocab=32)
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                      eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)  # random init, default (sdpa) attention
    pool, val, test = tokenized(tok, pool_text), tokenized(tok, val_text), tokenized(tok, test_text)

    # a short stable phase: the checkpoint θ_s and its AdamW state
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(30):
        batch = pad_collate([pool[(4 * step + i) % len(pool)] for i in range(8)])
        opt.zero_grad()
        own_loss(model, batch).backward()
        opt.step()
    model.eval()

    # 1. extract gradient statistics of the pool at the checkpoint
    stats = extract_stats(model, hf_causal_lm_loss(), pool, val,
                          ExtractConfig(k_sketch=256, projector="kronecker", batch_size=16, verbose=False))
    print(f"stats: N={stats.n}, k*={stats.k_star}, r={stats.r}, tokens={int(stats.token_counts.sum())}")

    # 2. select K samples with LESS and with the DiReCT program (default budget: always feasible)
    k = 16
    # (the kronecker sketch forms no per-sample gradients, so LESS runs on plain gradients here;
    # projector="sjlt" with ExtractConfig(optimizer_state=opt.state_dict()) gives the paper's Adam features)
    picks = {"less": select("less", k=k, stats=stats, features="sgd"), "direct": select("direct", k=k, stats=stats)}
    for name, sel in picks.items():
        clean = sum(pool_text[i].startswith("the ") and pool_text[i].split()[3] == "on" for i in sel.indices)
        print(f"{name:6s}: {clean}/{k} clean sentences selected")

    # 3. write the chosen rows back (JSONL + index file); Dataset.select gives the same rows
    out.mkdir(parents=True, exist_ok=True)
    source = out / "pool.jsonl"
    datasets.Dataset.from_dict({"text": pool_text}).to_json(str(source))
    sel = picks["direct"]
    rows = selected_rows(stats, sel.indices, source)
    write_back(rows, out / "direct.jsonl", {"indices": sel.indices.tolist()}, overwrite=True)
    assert [r["text"] for r in rows] == datasets.Dataset.from_dict({"text": pool_text}).select(sel.indices)["text"]
    print(f"wrote {len(rows)} rows to {out / 'direct.jsonl'} (+ {out / 'direct.jsonl.index.json'})")

    # 4. anneal the checkpoint on the selection (WSD decay, AdamW state restored)
    annealer = HFAnnealer(model, optim_state=opt.state_dict())
    schedule = AnnealSchedule(steps=12, batch_size=8, eval_every=4, peak_lr=3e-3)
    res = annealer.anneal([pool[int(i)] for i in sel.indices], schedule=schedule, peak_lr=3e-3, seed=0,
                          eval_sets={"val": val}, eval_batch_size=32)
    print(f"anneal on direct's selection: val loss {res.curves['val'][0][1]:.4f} -> {res.final['val']:.4f}")

    # 5. evaluate: every selector x seed from the same checkpoint, paired against random
    report = evaluate(annealer, hf_causal_lm_loss(), pool, val, test, [LESS_SGD, "direct"], k=k, seeds=seeds,
                      schedule=schedule, stats=stats, out_dir=out / "eval", progress=False, plot=False)
    print(report.table())
    return {"stats": stats, "picks": picks, "anneal": res, "report": report}


#: LESS's scores on plain gradients (no Adam features with a kronecker sketch), labelled "less"
LESS_SGD = {"name": "less", "options": {"features": "sgd"}, "label": "less"}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/hf_example")
    ap.add_argument("--seeds", default="0,1")
    a = ap.parse_args()
    main(Path(a.out), [int(s) for s in a.seeds.split(",")])
