"""Small randomly initialised Hugging Face models and a word-level tokenizer, built locally.

For examples, tests and benchmarks that need a stock ``transformers`` causal LM without a
download: :func:`tiny_causal_lm` builds GPT-2, Llama or GPT-NeoX from a config (optionally
wrapped with LoRA adapters by ``peft``), :func:`word_tokenizer` builds a
``PreTrainedTokenizerFast`` from local texts. Both need ``transformers`` (and ``tokenizers``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..errors import UnknownNameError
from .hf import require_transformers

FAMILIES = ("gpt2", "llama", "neox")


def tiny_causal_lm(family: str, vocab: int = 96, hidden: int = 32, layers: int = 2, heads: int = 2,
                   max_len: int = 64, seed: int = 0, lora: bool = False) -> torch.nn.Module:
    """A random-init ``transformers`` causal LM of ``family`` (``gpt2``, ``llama``, ``neox``) with
    stock defaults (e.g. ``sdpa`` attention), in eval mode. ``lora=True`` wraps it with rank-4 LoRA
    adapters on the attention projections (``peft``): then only the adapters are trainable."""
    tf = require_transformers()
    torch.manual_seed(seed)
    if family == "gpt2":
        cfg = tf.GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=heads, n_positions=max_len,
                            bos_token_id=0, eos_token_id=0)
        model, targets = tf.GPT2LMHeadModel(cfg), ["c_attn"]
    elif family == "llama":
        cfg = tf.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                             num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_len,
                             bos_token_id=0, eos_token_id=0, pad_token_id=0)
        model, targets = tf.LlamaForCausalLM(cfg), ["q_proj", "v_proj"]
    elif family == "neox":
        cfg = tf.GPTNeoXConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                               num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=max_len,
                               bos_token_id=0, eos_token_id=0)
        model, targets = tf.GPTNeoXForCausalLM(cfg), ["query_key_value"]
    else:
        raise UnknownNameError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}.")
    if lora:
        import peft

        model = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets,
                                                           lora_dropout=0.0, init_lora_weights=False))
    return model.eval()


def word_tokenizer(texts: Sequence[str], max_vocab: int = 96) -> Any:
    """A whitespace word-level ``PreTrainedTokenizerFast`` over the ``max_vocab`` most frequent
    words of ``texts`` (ids 0..3: ``<pad>``, ``<unk>``, ``<s>``, ``</s>``; a ``<s>`` is prepended)."""
    tf = require_transformers()
    from collections import Counter

    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    special = ["<pad>", "<unk>", "<s>", "</s>"]
    counts = Counter(w for t in texts for w in t.split())
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][: max_vocab - len(special)]
    vocab = {w: i for i, w in enumerate(special + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                      eos_token="</s>")
