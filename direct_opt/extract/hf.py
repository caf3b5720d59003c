"""Hugging Face causal-LM adapter (optional extra: ``pip install direct_opt[hf]``).

* :func:`hf_causal_lm_loss` — the per-sample next-token loss of any causal LM whose output
  has ``.logits`` (or is a logits tensor); position ids follow the attention mask, so
  left-padded batches give the gradients of the unpadded samples.
* :func:`vmap_attention` — the context the extractor enters around ``vmap``: a
  ``transformers`` model whose attention implementation is not ``eager`` (``sdpa``, flash)
  builds its masks with data-dependent branches that ``torch.func.vmap`` cannot trace; it
  runs ``eager`` attention (the same maths) for the duration and is restored afterwards.
* :func:`pad_collate` — the default collate for dict samples of unequal length (right
  padding with ``attention_mask`` 0, exact); ``transformers`` collators
  (``DataCollatorWithPadding``, ...) are accepted as ``collate_fn`` too.
* :func:`load_causal_lm`, :func:`tokenize_texts` — model/tokenizer loading (optionally with
  a PEFT/LoRA adapter directory on top, :func:`check_adapter_dir`) and tokenising for the
  CLI (these import ``transformers``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..errors import ExtractionError, InvalidParameterError

log = logging.getLogger("direct_opt.extract")
_HINT = "Hugging Face support needs transformers: pip install direct_opt[hf]  (or pip install transformers)"

#: per-sample reductions of the token losses (see :func:`hf_causal_lm_loss`)
REDUCTIONS = ("mean", "sum", "token-weighted")


def require_transformers() -> Any:
    """Import and return ``transformers`` or raise an ImportError saying how to install it."""
    try:
        import transformers  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(_HINT) from exc
    return transformers


@functools.lru_cache(maxsize=64)
def _takes(forward: Callable[..., Any], name: str) -> bool:
    """Whether ``forward`` accepts keyword ``name`` (explicitly or through ``**kwargs``)."""
    try:
        params = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) positions counting only attended tokens: 0, 1, ... from each sample's first real
    token (left padding gets the positions the unpadded sample has; pads get 0)."""
    return (mask.long().cumsum(-1) - 1).clamp_min(0)


def hf_causal_lm_loss(ignore_index: int = -100, reduction: str = "mean",
                      mean_tokens: float | None = None) -> Callable[[torch.nn.Module, Any], torch.Tensor]:
    """Per-sample next-token cross-entropy for causal LMs.

    The returned ``loss_fn(model, batch) -> (B,)`` takes ``batch`` as a dict (or
    ``BatchEncoding``) with ``input_ids`` (B, T) and optionally ``attention_mask`` (B, T) and
    ``labels`` (B, T; -100 = ignored), or a plain (B, T) ``input_ids`` tensor. Padding
    positions (mask 0) are ignored; with a mask, ``position_ids`` = running count of real
    tokens are passed (unless the batch has its own), so left and right padding are exact.

    Args:
        ignore_index: label value that is not predicted.
        reduction: how a sample's token losses become its loss:
            ``mean`` — average over its predicted tokens (every sample weighs the same);
            ``sum`` — sum over its tokens (long samples weigh more);
            ``token-weighted`` — sum / ``mean_tokens``: the pool mean of these losses is the
            token-level mean that ``transformers.Trainer`` minimises (every token weighs the same).
        mean_tokens: average predicted tokens per sample of the pool (``token-weighted`` only).
    """
    if reduction not in REDUCTIONS:
        raise InvalidParameterError(f"reduction={reduction!r}; choose one of {', '.join(REDUCTIONS)}.")
    if reduction == "token-weighted":
        if mean_tokens is None or not float(mean_tokens) > 0:
            raise InvalidParameterError(
                "reduction='token-weighted' needs mean_tokens > 0, the average number of predicted tokens per "
                "sample of the pool (e.g. token_counts.mean() - 1 from tokenize_texts).")
    elif mean_tokens is not None:
        raise InvalidParameterError(f"mean_tokens is used by reduction='token-weighted' only (got {reduction!r}).")

    def loss_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        if isinstance(batch, torch.Tensor):
            batch = {"input_ids": batch}
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        if mask is None and _takes(type(model).forward, "attention_mask"):
            # an explicit all-ones mask: without one, GPT-2 checks input_ids for pad tokens (data-dependent
            # control flow that vmap cannot trace)
            mask = torch.ones_like(ids)
        labels = batch.get("labels")
        if labels is None:
            labels = ids if mask is None else ids.masked_fill(mask == 0, ignore_index)
        kwargs = {"input_ids": ids}
        if mask is not None:
            kwargs["attention_mask"] = mask
            if batch.get("position_ids") is not None:
                kwargs["position_ids"] = batch["position_ids"]
            elif _takes(type(model).forward, "position_ids"):
                kwargs["position_ids"] = position_ids_from_mask(mask)
        out = model(**kwargs)
        logits = out.logits if hasattr(out, "logits") else out
        logits = logits[:, :-1].float()
        target = labels[:, 1:]
        tok = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                              ignore_index=ignore_index, reduction="none").reshape(target.shape)
        valid = target != ignore_index
        if mask is not None:  # a prediction made at a padding position (left padding) is no prediction
            valid = valid & (mask[:, :-1] != 0)
        valid = valid.to(tok.dtype)
        total = (tok * valid).sum(1)
        if reduction == "sum":
            return total
        if reduction == "token-weighted":
            return total / float(mean_tokens)  # type: ignore[arg-type]
        return total / valid.sum(1).clamp_min(1.0)

    loss_fn.__qualname__ = f"hf_causal_lm_loss(reduction={reduction!r})"
    return loss_fn


# ------------------------------------------------------------------ vmap and attention
def _hf_model(model: torch.nn.Module) -> Any:
    """The first ``transformers`` model inside ``model`` (itself, a PEFT wrapper's base, ...), else None."""
    for mod in model.modules():
        cfg = getattr(mod, "config", None)
        if hasattr(mod, "set_attn_implementation") and hasattr(cfg, "_attn_implementation"):
            return mod
    return None


@contextlib.contextmanager
def vmap_attention(model: torch.nn.Module) -> Iterator[None]:
    """Run a ``transformers`` model with ``eager`` attention inside the block, then restore it.

    ``sdpa``/flash attention build their masks with data-dependent control flow that
    ``torch.func.vmap`` (per-sample gradients) cannot trace; ``eager`` computes the same
    attention. No-op for other models or models already on ``eager``.
    """
    hf = _hf_model(model)
    old = getattr(getattr(hf, "config", None), "_attn_implementation", None)
    if hf is None or old in (None, "eager"):
        yield
        return
    hf.set_attn_implementation("eager")
    try:
        yield
    finally:
        hf.set_attn_implementation(old)


# ------------------------------------------------------------------------- batches
def _is_token_sample(s: Any) -> bool:
    return isinstance(s, Mapping) and "input_ids" in s


def pad_collate(samples: list[Any], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Dict samples {'input_ids': (T_i,), 'attention_mask'?, 'labels'?} -> a right-padded batch.

    Pads ``input_ids`` with ``pad_id``, ``attention_mask`` with 0 and ``labels`` with -100 to
    the longest sample (right padding changes no gradient). Other keys must have equal shapes.
    """
    longest = max(len(s["input_ids"]) for s in samples)
    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": -100, "position_ids": 0}
    keys = list(samples[0].keys())
    if "attention_mask" not in keys:
        keys.append("attention_mask")
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        rows = []
        for s in samples:
            if key == "attention_mask" and key not in s:
                t = torch.ones(len(s["input_ids"]), dtype=torch.long)
            else:
                t = torch.as_tensor(s[key])
            if key in fill and t.ndim == 1 and t.shape[0] < longest:
                t = torch.cat([t, torch.full((longest - t.shape[0],), fill[key], dtype=t.dtype)])
            rows.append(t)
        try:
            out[key] = torch.stack(rows)
        except RuntimeError as exc:
            raise ExtractionError(f"samples' {key!r} entries have different shapes ({exc}); pass a collate_fn "
                                  "(e.g. transformers.DataCollatorWithPadding) that pads them.") from None
    return out


def collate(samples: list[Any]) -> Any:
    """The default collate: :func:`pad_collate` for token dicts of unequal length, else
    ``torch.utils.data.default_collate`` (stack along a new leading dimension)."""
    from torch.utils.data import default_collate

    if _is_token_sample(samples[0]) and len({len(s["input_ids"]) for s in samples}) > 1:
        return pad_collate(samples)
    return default_collate(samples)


def plain_batch(batch: Any) -> Any:
    """``BatchEncoding`` and other Mapping types -> plain dicts (vmap and pytrees know dicts only)."""
    if isinstance(batch, Mapping) and type(batch) is not dict:
        return {k: plain_batch(v) for k, v in batch.items()}
    if isinstance(batch, dict):
        return {k: plain_batch(v) for k, v in batch.items()}
    return batch


def token_counts(samples: Sequence[Any]) -> Any:
    """(N,) int64 real tokens per sample (``attention_mask`` sum, else ``input_ids`` length), or
    None when the samples are not token dicts / id tensors."""
    import numpy as np

    out = np.empty(len(samples), dtype=np.int64)
    for i, s in enumerate(samples):
        if _is_token_sample(s):
            m = s.get("attention_mask")
            out[i] = int(torch.as_tensor(m).sum()) if m is not None else len(s["input_ids"])
        elif isinstance(s, torch.Tensor) and s.ndim == 1 and not s.dtype.is_floating_point:
            out[i] = s.shape[0]
        else:
            return None
    return out


# ------------------------------------------------------------------------ loading
@dataclass
class Tokenized:
    """Tokenised texts: one dict sample per text, with the truncation count."""

    samples: list[dict[str, torch.Tensor]]
    token_counts: Any  # (N,) int64 tokens kept per sample
    truncated: int  # samples longer than max_length (cut to it)


def check_adapter_dir(path: str | Path) -> Path:
    """The PEFT adapter directory ``path`` (as ``PeftModel.save_pretrained`` writes it), checked
    before any loading: it exists, holds ``adapter_config.json``, and ``peft`` is installed."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise InvalidParameterError(f"adapter {path}: no such directory (pass the directory that "
                                    "PeftModel.save_pretrained wrote).")
    if not (p / "adapter_config.json").is_file():
        raise InvalidParameterError(f"adapter {path}: no adapter_config.json in it, so it is not a PEFT adapter "
                                    "directory (pass the directory that PeftModel.save_pretrained wrote).")
    if importlib.util.find_spec("peft") is None:
        raise ImportError(f"adapter {path}: loading a PEFT adapter needs peft: pip install peft  "
                          "(or pip install direct_opt[hf])")
    return p


def load_causal_lm(name_or_path: str, device: str = "cpu", dtype: str | None = None, attention: str | None = None,
                   trust_remote_code: bool = False, adapter: str | Path | None = None) -> tuple[torch.nn.Module, Any]:
    """(model, tokenizer) from a Hugging Face model id or local directory (needs transformers).

    ``dtype``: ``float32``/``bfloat16``/``float16`` weights (None: as stored); ``attention``:
    ``attn_implementation`` (``eager``, ``sdpa``, ...; None: transformers' default). Remote code
    runs only with ``trust_remote_code=True``. A tokenizer without a pad token gets its EOS token.
    ``adapter``: a PEFT adapter directory (LoRA, ...) loaded on top of the base model with
    ``peft.PeftModel.from_pretrained(..., is_trainable=True)``: the adapter weights are the
    trainable parameters, the base stays frozen; the tokenizer is the base model's.
    """
    tf = require_transformers()
    adapter_dir = check_adapter_dir(adapter) if adapter is not None else None
    kw: dict[str, Any] = {"trust_remote_code": bool(trust_remote_code)}
    tok = tf.AutoTokenizer.from_pretrained(name_or_path, **kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if dtype is not None:
        kw["dtype"] = getattr(torch, dtype)
    if attention is not None:
        kw["attn_implementation"] = attention
    model = tf.AutoModelForCausalLM.from_pretrained(name_or_path, **kw)
    if adapter_dir is not None:
        import peft  # noqa: PLC0415

        model = peft.PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)
        log.info("adapter %s: %d trainable of %d parameters", adapter_dir,
                 sum(p.numel() for p in model.parameters() if p.requires_grad),
                 sum(p.numel() for p in model.parameters()))
    return model.to(device), tok


def tokenize_texts(tokenizer: Any, texts: Sequence[str], max_length: int = 128) -> Tokenized:
    """One sample per text: {'input_ids': (T,), 'attention_mask': (T,)}, T <= max_length, unpadded
    (batches are padded by the collate). Texts longer than ``max_length`` tokens are cut and counted."""
    import numpy as np

    enc = tokenizer(list(texts), truncation=False, padding=False)
    samples, counts, truncated = [], np.empty(len(texts), dtype=np.int64), 0
    for i, ids in enumerate(enc["input_ids"]):
        if len(ids) > max_length:
            truncated += 1
            ids = ids[:max_length]
        t = torch.tensor(ids, dtype=torch.long)
        samples.append({"input_ids": t, "attention_mask": torch.ones_like(t)})
        counts[i] = len(ids)
    return Tokenized(samples, counts, truncated)
