"""Helpers both annealers share (the TinyGPT one in :mod:`.annealer`, the Hugging Face one in
:mod:`.hf_annealer`): order-stable hashes of checkpoints and data, token-dict samples."""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import numpy as np
import torch


def hash_obj(h: "hashlib._Hash", obj: Any) -> None:
    """Feed tensors / arrays / mappings / sequences / scalars into ``h`` (order-stable)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        h.update(f"A{obj.shape}{obj.dtype}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, Mapping):
        h.update(b"{")
        for k in sorted(obj, key=str):
            h.update(str(k).encode() + b":")
            hash_obj(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for v in obj:
            hash_obj(h, v)
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def short_hash(obj: Any) -> str:
    """16-hex-digit SHA-256 of :func:`hash_obj`."""
    h = hashlib.sha256()
    hash_obj(h, obj)
    return h.hexdigest()[:16]


def samples_of(data: Sequence[Any]) -> list[dict[str, torch.Tensor]]:
    """Token-dict samples (``input_ids`` and optional ``attention_mask``/``labels``) as tensors."""
    out = []
    for s in data:
        out.append({k: torch.as_tensor(v) for k, v in s.items() if k in ("input_ids", "attention_mask", "labels")})
    return out
