"""Online batch selection (BLADE) while training a Hugging Face causal LM.

A tiny GPT-2 is built from a config (random init, nothing downloaded) over a byte vocabulary;
the data are byte windows of this Python installation's standard-library sources. Each step
`OnlineBatches` draws a super-batch of B windows, `blade` scores all of them in batched
forward passes and the loop trains on the b it chose; the selector's dynamic reference is
updated after every optimiser step.

    python examples/online_hf.py --steps 20 --selector blade
"""

from __future__ import annotations

import argparse
import sysconfig
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from direct_opt.online import OnlineBatches, available_online_selectors, make_online_selector

SEQ = 64


def byte_windows(n: int, seed: int) -> torch.Tensor:
    """n windows of SEQ + 1 bytes from the standard library's sources (token id = byte)."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:60]
    text = b"".join(f.read_bytes() for f in files)
    buf = np.frombuffer(text, dtype=np.uint8)
    starts = np.random.default_rng(seed).choice(len(buf) - SEQ - 1, size=n, replace=False)
    return torch.from_numpy(np.stack([buf[s:s + SEQ + 1] for s in starts]).astype(np.int64))


def per_sample_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of each row: (n, SEQ + 1) ids -> (n,)."""
    logits = model(input_ids=batch[:, :-1]).logits
    nll = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")
    return nll.mean(dim=1)


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--selector", default="blade", choices=available_online_selectors())
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("-b", type=int, default=8, help="rows trained on per step")
    p.add_argument("--super-batch", type=int, default=32, help="B, candidates scored per step")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    config = GPT2Config(vocab_size=256, n_positions=SEQ, n_embd=64, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config)
    data, val = byte_windows(512, args.seed), byte_windows(32, args.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sel = make_online_selector(args.selector, model=model, loss_fn=per_sample_loss, val=val, b=args.b,
                               seed=args.seed, eta=3e-3, **({"ref_steps": 5} if args.selector == "rho-loss" else {}))
    with torch.no_grad():
        before = float(per_sample_loss(model.eval(), val).mean())
    for batch in OnlineBatches(sel, data, super_batch=args.super_batch, steps=args.steps, seed=args.seed):
        model.train()
        loss = per_sample_loss(model, batch.data).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(per_sample_loss(model.eval(), val).mean())
    print(f"{args.selector}: {args.steps} steps, b={args.b} of B={args.super_batch}; validation loss "
          f"{before:.3f} -> {after:.3f} nats/byte; selector forward passes {sel.cost['forward']}, "
          f"backward {sel.cost['backward']}")
    return {"before": before, "after": after}


if __name__ == "__main__":
    main()
