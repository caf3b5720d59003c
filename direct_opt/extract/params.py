"""Parameter selection (the filter) and the model fingerprint recorded with every run."""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

import torch

from ..errors import ExtractionError, InvalidParameterError


def select_params(
    model: torch.nn.Module, param_filter: Sequence[str] | Callable[[str], bool] | None
) -> list[str]:
    """Names of the parameters to differentiate, in ``model.named_parameters()`` order.

    ``param_filter`` is None (the trainable parameters, ``requires_grad=True`` — e.g. only the
    LoRA adapters of a PEFT model; all parameters when none is trainable), a list of exact
    names, or a predicate ``name -> bool``. Unknown names raise InvalidParameterError; an
    empty selection raises ExtractionError.
    """
    names = [n for n, _ in model.named_parameters()]
    if param_filter is None:
        chosen = [n for n, p in model.named_parameters() if p.requires_grad] or names
    elif callable(param_filter):
        chosen = [n for n in names if param_filter(n)]
    else:
        if isinstance(param_filter, str):
            raise InvalidParameterError(
                "param_filter must be a list of parameter names or a predicate, not a single string; "
                f"use [{param_filter!r}]."
            )
        wanted = list(param_filter)
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise InvalidParameterError(
                f"param_filter names unknown parameters {unknown[:5]}; the model has e.g. {names[:8]}."
            )
        keep = set(wanted)
        chosen = [n for n in names if n in keep]
    if not chosen:
        raise ExtractionError("param_filter selects no parameter; select at least one (e.g. param_filter=None).")
    return chosen


def model_fingerprint(model: torch.nn.Module, selected: Sequence[str]) -> dict[str, Any]:
    """Names, shapes, dtypes and a SHA-256 of every parameter and buffer value."""
    h = hashlib.sha256()
    params: list[list[Any]] = []
    for kind, items in (("param", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in items:
            arr = t.detach().cpu().contiguous()
            h.update(f"{kind}:{name}:{arr.dtype}:{tuple(arr.shape)};".encode())
            if arr.numel():
                h.update(arr.reshape(-1).view(torch.uint8).numpy().tobytes())
            if kind == "param":
                params.append([name, list(arr.shape), str(arr.dtype).replace("torch.", "")])
    return {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "parameters": params,
        "selected": list(selected),
        "n_selected": int(sum(p.numel() for n, p in model.named_parameters() if n in set(selected))),
        "sha256": h.hexdigest(),
    }
