"""Hugging Face causal-LM adapter (optional extra: ``pip install direct_opt[hf]``).

``hf_causal_lm_loss`` needs no ``transformers`` import itself (it works with any model whose
output has ``.logits`` or is a logits tensor); the loaders import ``transformers`` lazily.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

_HINT = "Hugging Face support needs transformers: pip install direct_opt[hf]  (or pip install transformers)"


def require_transformers() -> Any:
    """Import and return ``transformers`` or raise an ImportError saying how to install it."""
    try:
        import transformers  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(_HINT) from exc
    return transformers


def hf_causal_lm_loss(ignore_index: int = -100) -> Callable[[torch.nn.Module, Any], torch.Tensor]:
    """Per-sample mean next-token cross-entropy for causal LMs.

    The returned ``loss_fn(model, batch) -> (B,)`` takes ``batch`` as a dict with
    ``input_ids`` (B, T) and optionally ``attention_mask`` (B, T) and ``labels`` (B, T; -100 =
    ignored), or a plain (B, T) ``input_ids`` tensor. Padding positions (mask 0) are ignored.
    """

    def loss_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        if isinstance(batch, torch.Tensor):
            batch = {"input_ids": batch}
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        labels = batch.get("labels")
        if labels is None:
            labels = ids if mask is None else ids.masked_fill(mask == 0, ignore_index)
        kwargs = {"input_ids": ids}
        if mask is not None:
            kwargs["attention_mask"] = mask
        out = model(**kwargs)
        logits = out.logits if hasattr(out, "logits") else out
        logits = logits[:, :-1].float()
        target = labels[:, 1:]
        tok = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                              ignore_index=ignore_index, reduction="none").reshape(target.shape)
        valid = (target != ignore_index).to(tok.dtype)
        return (tok * valid).sum(1) / valid.sum(1).clamp_min(1.0)

    return loss_fn


def load_causal_lm(name_or_path: str, device: str = "cpu") -> tuple[torch.nn.Module, Any]:
    """(model, tokenizer) from a Hugging Face model id or local path (needs transformers)."""
    tf = require_transformers()
    tok = tf.AutoTokenizer.from_pretrained(name_or_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = tf.AutoModelForCausalLM.from_pretrained(name_or_path).to(device)
    return model, tok


def tokenize_texts(tokenizer: Any, texts: Sequence[str], max_length: int = 128) -> list[dict[str, torch.Tensor]]:
    """One sample per text: {'input_ids': (T,), 'attention_mask': (T,)} padded/truncated to max_length."""
    enc = tokenizer(list(texts), max_length=max_length, truncation=True, padding="max_length", return_tensors="pt")
    return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i]} for i in range(len(texts))]
