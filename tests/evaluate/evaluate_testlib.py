"""A tiny, fast setup for the harness tests: a 1-layer TinyGPT, structured byte data."""

from __future__ import annotations

import numpy as np
import torch

from direct_opt.evaluate import AnnealSchedule
from direct_opt.extract import ExtractConfig
from direct_opt.lm import GPTConfig, TinyGPT, pretrain

SEQ = 16
CFG = GPTConfig(n_layer=1, n_head=2, d_model=16, seq_len=SEQ)
WORDS = ["def", "return", "self", "value", "the", "list", "of", "items", "and", "index", "None", "if"]
#: 3 optimizer steps, eval after every step, batches of 4 (a few ms per run)
SCHEDULE = AnnealSchedule(steps=3, batch_size=4, eval_every=1)
EXTRACT = ExtractConfig(k_sketch=16, projector="sjlt", batch_size=32, verbose=False, seed=0)


def _text(rng: np.random.Generator, n_words: int) -> bytes:
    return " ".join(rng.choice(WORDS, size=n_words)).encode()


def _windows(text: bytes, n: int, start: int = 0) -> torch.Tensor:
    arr = np.frombuffer(text, dtype=np.uint8)
    rows = [arr[start + i * (SEQ + 1): start + (i + 1) * (SEQ + 1)] for i in range(n)]
    return torch.from_numpy(np.stack(rows).astype(np.int64))


def tiny_data(seed: int = 0, n_pool: int = 32, n_val: int = 8, n_test: int = 12, n_pretrain: int = 48) -> dict:
    """pool (half clean word text, half uniform random bytes), val/test/pretrain clean; no shared rows."""
    rng = np.random.default_rng(seed)
    n_clean = n_pool // 2
    total = n_clean + n_val + n_test + n_pretrain
    text = _text(rng, total * (SEQ + 1) // 3 + 50)
    rows = _windows(text, total)
    assert len({tuple(r.tolist()) for r in rows}) == total, "tiny_data: duplicate windows, change the seed"
    clean, rest = rows[:n_clean], rows[n_clean:]
    val, test, pre = rest[:n_val], rest[n_val:n_val + n_test], rest[n_val + n_test:]
    noise = torch.from_numpy(rng.integers(0, 256, size=(n_pool - n_clean, SEQ + 1)).astype(np.int64))
    pool = torch.cat([clean, noise])
    groups = np.array(["clean:words"] * n_clean + ["degraded:random"] * (n_pool - n_clean))
    return {"pool": pool, "val": val, "test": test, "pretrain": pre, "groups": groups}


def tiny_state(data: dict, steps: int = 4):
    """A stable-phase checkpoint (weights, AdamW state, EMA) after a few pretraining steps."""
    return pretrain(TinyGPT(CFG, seed=0), data["pretrain"], steps=steps, lr=3e-3, batch_size=8, seed=0,
                    ema_decay=0.5)
