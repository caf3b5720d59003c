"""A tiny byte-level GPT (vocabulary 256) for fast, download-free experiments.

Design choices (all documented because the extractor and projectors rely on them):

* Every learned matrix that touches activations is an ``nn.Linear`` (fused ``qkv``,
  attention output ``proj``, MLP ``fc``/``out``, and the output head ``lm_head``), so
  Kronecker/LoGra projectors can hook layer inputs and output gradients.
* Embeddings are **untied** by default (``GPTConfig.tie_embeddings=False``). Tying stays
  available: the ``kronecker`` projector then projects the embedding and the head as one
  summed Kronecker block (their gradient is the sum of a lookup term and a Linear term).
* The forward pass is functional-friendly: no in-place ops on inputs, no
  data-dependent control flow. Attention defaults to an explicit masked softmax
  (``attn_impl="manual"``), which has native ``torch.func.vmap`` batching rules;
  ``attn_impl="sdpa"`` uses ``F.scaled_dot_product_attention`` (also correct under
  vmap, but on CPU torch falls back to a slow per-sample loop there and warns).
* Initialisation is deterministic from ``seed`` and uses a private
  ``torch.Generator``: building a model never touches the global RNG.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VOCAB_SIZE = 256


@dataclass(frozen=True)
class GPTConfig:
    """Architecture of :class:`TinyGPT`.

    ``seq_len`` is the context length T: a training sample is T+1 bytes (inputs are
    the first T, targets the last T).
    """

    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    seq_len: int = 64
    dropout: float = 0.0
    tie_embeddings: bool = False
    attn_impl: str = "manual"
    vocab_size: int = VOCAB_SIZE

    def __post_init__(self) -> None:
        if self.d_model % self.n_head != 0:
            raise ValueError(
                f"d_model={self.d_model} must be divisible by n_head={self.n_head}; "
                "pick n_head among the divisors of d_model."
            )
        if min(self.n_layer, self.n_head, self.d_model, self.seq_len) <= 0:
            raise ValueError("n_layer, n_head, d_model and seq_len must all be positive.")
        if self.attn_impl not in ("manual", "sdpa"):
            raise ValueError(f"attn_impl={self.attn_impl!r}; known: 'manual', 'sdpa'.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must lie in [0, 1).")

    def to_dict(self) -> dict:
        """Plain-dict form (JSON-serialisable) for metadata files."""
        return asdict(self)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: (B, T, D) -> (B, T, D)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.d_model = cfg.d_model
        self.dropout = cfg.dropout
        self.attn_impl = cfg.attn_impl
        self.attn_drop = nn.Dropout(cfg.dropout)
        causal = torch.ones(cfg.seq_len, cfg.seq_len, dtype=torch.bool).tril()
        self.register_buffer("causal_mask", causal, persistent=False)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        h = self.n_head
        q, k, v = self.qkv(x).split(D, dim=-1)
        # (B, T, D) -> (B, h, T, D/h)
        q = q.reshape(B, T, h, D // h).transpose(1, 2)
        k = k.reshape(B, T, h, D // h).transpose(1, 2)
        v = v.reshape(B, T, h, D // h).transpose(1, 2)
        if self.attn_impl == "sdpa":
            p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D // h))  # (B, h, T, T)
            att = att.masked_fill(~self.causal_mask[:T, :T], float("-inf"))
            y = self.attn_drop(att.softmax(dim=-1)) @ v
        y = y.transpose(1, 2).reshape(B, T, D)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward block: (B, T, D) -> (B, T, D), hidden 4D, GELU."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
        self.out = nn.Linear(4 * cfg.d_model, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.out(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """Byte-level GPT: LongTensor (B, T) of bytes, T <= seq_len -> logits (B, T, 256).

    Args:
        config: architecture; defaults to ``GPTConfig()`` (2 layers, 4 heads, d=64,
            T=64; about 0.12 M parameters untied).
        seed: initialisation seed (GPT-2 style: N(0, 0.02), residual projections
            scaled by 1/sqrt(2 n_layer), zero biases). Uses a private generator.
    """

    def __init__(self, config: GPTConfig | None = None, seed: int = 0) -> None:
        super().__init__()
        cfg = config if config is not None else GPTConfig()
        self.config = cfg
        # torch's default layer init draws from the global RNG; fork it so building a
        # model leaves the caller's RNG state untouched (our init overwrites it anyway)
        with torch.random.fork_rng(devices=[]):
            self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
            self.pos_emb = nn.Embedding(cfg.seq_len, cfg.d_model)
            self.drop = nn.Dropout(cfg.dropout)
            self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
            self.ln_f = nn.LayerNorm(cfg.d_model)
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        self.register_buffer("pos_ids", torch.arange(cfg.seq_len), persistent=False)
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """Deterministic re-initialisation from ``seed`` (global RNG untouched)."""
        gen = torch.Generator().manual_seed(int(seed))
        resid_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, mod in self.named_modules():
            if isinstance(mod, nn.Linear):
                if self.config.tie_embeddings and mod is self.lm_head:
                    continue  # shares the embedding matrix, initialised below
                std = resid_std if name.endswith(("attn.proj", "mlp.out")) else 0.02
                nn.init.normal_(mod.weight, 0.0, std, generator=gen)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.Embedding):
                nn.init.normal_(mod.weight, 0.0, 0.02, generator=gen)
            elif isinstance(mod, nn.LayerNorm):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)

    def num_parameters(self) -> int:
        """Number of distinct trainable scalars (tied weights counted once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: Tensor) -> Tensor:
        """idx: integer tensor (B, T) with values in [0, 256) -> logits (B, T, 256) float."""
        T = idx.shape[-1]
        if T > self.config.seq_len:
            raise ValueError(
                f"input length {T} exceeds the model context seq_len={self.config.seq_len}; "
                "cut the batch into windows of at most seq_len tokens."
            )
        x = self.tok_emb(idx.long()) + self.pos_emb(self.pos_ids[:T])
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))
