"""Throughput of the extraction projectors vs the paper-faithful per-sample loop.

CPU (default): a small GPT-style LM; prints samples/s of each projector and its ratio to
the ``paper`` mode (one sample at a time, plain autograd, Gaussian matrix regenerated
for every sample)::

    python benchmarks/extract.py                      # CPU, small model
    python benchmarks/extract.py --device cuda --gpt2 # GPT-2-small-sized (124M), seq 128, k 2048

Timings cover the pool pass only (per-sample losses + sketches), after one warm-up batch.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch
import torch.nn.functional as F

from direct_opt.extract import ExtractConfig
from direct_opt.extract.data import to_device
from direct_opt.extract.params import select_params
from direct_opt.extract.per_sample import PerSampleGrad
from direct_opt.extract.pipeline import _make_sketcher


class Block(torch.nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim)
        self.qkv, self.proj = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)
        self.fc, self.out = torch.nn.Linear(dim, 4 * dim), torch.nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads)
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class TinyGPT(torch.nn.Module):
    """GPT-2-style decoder (tied embeddings). GPT-2 small: vocab 50257, ctx 1024, 12x768, 12 heads."""

    def __init__(self, vocab: int, ctx: int, layers: int, dim: int, heads: int) -> None:
        super().__init__()
        self.wte, self.wpe = torch.nn.Embedding(vocab, dim), torch.nn.Embedding(ctx, dim)
        self.blocks = torch.nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln_f = torch.nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.wte(ids) + self.wpe(pos)
        for blk in self.blocks:
            x = blk(x)
        return self.ln_f(x) @ self.wte.weight.T


def lm_loss(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Per-sample mean next-token cross-entropy, ids (B, T) -> (B,)."""
    logits = model(ids)[:, :-1]
    tok = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
    return tok.reshape(ids.shape[0], -1).mean(1)


def throughput(model, samples, cfg: ExtractConfig, n_samples: int) -> float:
    """Samples/s of the pool pass of ``cfg.projector`` over ``n_samples`` samples (after warm-up)."""
    device = torch.device(cfg.device)
    model.to(device).eval()
    engine = PerSampleGrad(model, lm_loss, select_params(model, cfg.param_filter), device, cfg.torch_dtype_name)
    sketcher = _make_sketcher(model, lm_loss, engine, cfg, device)
    bs = cfg.batch_size
    sketcher.sketch(to_device(torch.stack(samples[:bs]), device), bs, 0, "pool")  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    done = 0
    while done < n_samples:
        batch = torch.stack(samples[done : done + bs])
        sketcher.sketch(to_device(batch, device), batch.shape[0], done, "pool")
        done += batch.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return done / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpt2", action="store_true", help="GPT-2-small-sized model, seq 128, k 2048, all params")
    ap.add_argument("--k", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--samples", type=int, default=64, help="pool samples timed per fast projector")
    ap.add_argument("--paper-samples", type=int, default=8, help="samples timed in paper mode")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.gpt2:
        vocab, ctx, layers, dim, heads, seq, k = 50257, 1024, 12, 768, 12, 128, args.k or 2048
    else:
        vocab, ctx, layers, dim, heads, seq, k = 256, 64, 2, 64, 4, 32, args.k or 1024
    model = TinyGPT(vocab, ctx, layers, dim, heads)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {layers}x{dim}, vocab {vocab}, {n_params / 1e6:.2f}M params; seq {seq}; k {k}; "
          f"batch {args.batch_size}; device {args.device}; torch {torch.__version__}; "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available here: model constructed, nothing timed.")
        return
    samples = list(torch.randint(0, vocab, (max(args.samples, args.batch_size), seq)))
    gen = "device" if args.device.startswith("cuda") else "cpu"
    modes = {
        "paper": ExtractConfig(k_sketch=k, projector="paper", batch_size=1, device=args.device, dtype=args.dtype,
                               projector_options={"generator": gen}, verbose=False),
        "gaussian": ExtractConfig(k_sketch=k, projector="gaussian", batch_size=args.batch_size, device=args.device,
                                  dtype=args.dtype, projector_options={"generator": gen}, verbose=False),
        "sjlt": ExtractConfig(k_sketch=k, projector="sjlt", batch_size=args.batch_size, device=args.device,
                              dtype=args.dtype, verbose=False),
        "kronecker": ExtractConfig(k_sketch=k, projector="kronecker", batch_size=args.batch_size,
                                   device=args.device, dtype=args.dtype, verbose=False),
    }
    rates = {}
    for name, cfg in modes.items():
        n = args.paper_samples if name == "paper" else args.samples
        rates[name] = throughput(model, samples, cfg, n)
        print(f"  {name:<10} {rates[name]:10.2f} samples/s   x{rates[name] / rates['paper']:8.1f} vs paper", flush=True)


if __name__ == "__main__":
    main()
