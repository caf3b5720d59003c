"""The Adam update direction of a per-sample gradient (LESS's training features, Xia et al. 2024).

Given the checkpoint's Adam(W) moments m, v at step t and a per-sample gradient g, the
direction Adam would step in if its next batch were that one sample is

    m' = β1 m + (1 − β1) g,      v' = β2 v + (1 − β2) g²,
    Γ(g) = m̂ / (√v̂ + ε),        m̂ = m' / (1 − β1^(t+1)),  v̂ = v' / (1 − β2^(t+1))

(the paper's formula; the public LESS code omits the bias correction and puts ε inside the
square root, see docs/selectors.md). Weight decay is not part of the direction.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..errors import InvalidParameterError


def describe_optimizer_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A small JSON-safe summary (step, betas, eps, SHA-256 of the moments) of an Adam state dict."""
    groups, per_param = _check_state_dict(state)
    h = hashlib.sha256()
    for i in sorted(per_param):
        for key in ("exp_avg", "exp_avg_sq"):
            h.update(per_param[i][key].detach().cpu().float().contiguous().numpy().tobytes())
    g0 = groups[0]
    steps = sorted({float(torch.as_tensor(s["step"]).item()) for s in per_param.values()})
    return {"kind": "adam", "betas": [float(b) for b in g0.get("betas", (0.9, 0.999))], "eps": float(g0.get("eps", 1e-8)),
            "steps": steps, "n_params": len(per_param), "sha256": h.hexdigest()}


def load_optimizer_state(path: str | Path) -> dict[str, Any]:
    """An Adam/AdamW ``state_dict()`` saved with ``torch.save`` (e.g. a ``transformers.Trainer``
    checkpoint's ``optimizer.pt``), loaded on the CPU with ``weights_only=True`` (never a pickle)
    and checked with :func:`describe_optimizer_state`; InvalidParameterError names the problem."""
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"{path}: no such file (pass the optimizer.pt of the checkpoint).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:
            detail = re.search(r"WeightsUnpickler error: \s*(.*)", str(exc))
            raise InvalidParameterError(f"{path}: not a torch.save file ({detail.group(1) if detail else 'unpickling failed'})."
                                        ) from None
        raise InvalidParameterError(
            f"{path} holds a Python object ({found.group(1)}) that torch.load(weights_only=True) refuses to unpickle; "
            "save the optimizer's state_dict() alone with torch.save (tensors, numbers, lists and dicts only).") from None
    except Exception as exc:  # noqa: BLE001 - torch.load raises KeyError, IndexError, RuntimeError, ... on junk
        detail = (str(exc).splitlines() or [""])[0]
        raise InvalidParameterError(f"{path}: not a readable torch.save file ({type(exc).__name__}: {detail}).") from None
    try:
        describe_optimizer_state(state)
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"{path}: {exc}") from None
    return state


def _check_state_dict(state: Any) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    if not isinstance(state, Mapping) or "state" not in state or "param_groups" not in state:
        raise InvalidParameterError(
            "optimizer_state must be a torch Adam/AdamW optimizer.state_dict() (keys 'state' and 'param_groups'), "
            f"got {type(state).__name__}{' with keys ' + str(sorted(state)[:5]) if isinstance(state, Mapping) else ''}."
        )
    per_param = dict(state["state"])
    groups = list(state["param_groups"])
    if not per_param or not groups:
        raise InvalidParameterError("optimizer_state holds no moments (the optimizer never stepped); "
                                    "LESS's Adam features need a checkpoint after at least one step.")
    for i, s in per_param.items():
        missing = [key for key in ("exp_avg", "exp_avg_sq", "step") if key not in s]
        if missing:
            raise InvalidParameterError(f"optimizer_state['state'][{i}] lacks {missing}: not an Adam/AdamW state.")
    return groups, per_param


class AdamDirection:
    """Γ(g) for flat per-sample gradients over the differentiated parameters ``names``.

    Args:
        state: ``optimizer.state_dict()`` of torch Adam/AdamW built on ``model.parameters()``
            (all parameters) or on the trainable ones, in the model's order, or a
            ``transformers.Trainer`` checkpoint's ``optimizer.pt`` (decay / no-decay groups).
        model: the network (to map the optimizer's parameter indices to names).
        names: the differentiated parameter names, in flattening order.
        device: where the moments live.
    """

    def __init__(self, state: Mapping[str, Any], model: torch.nn.Module, names: Sequence[str],
                 device: torch.device) -> None:
        groups, per_param = _check_state_dict(state)
        index = check_optimizer_state(state, model, names)
        shapes = dict(model.named_parameters())
        group_of = {i: g for g in groups for i in g["params"]}
        ms, vs, b1s, b2s, epss, ts = [], [], [], [], [], []
        for n in names:
            idx = index[n]
            s = per_param[idx]
            g = group_of[idx]
            beta1, beta2 = g.get("betas", (0.9, 0.999))
            size = shapes[n].numel()
            ms.append(s["exp_avg"].detach().reshape(-1).float())
            vs.append(s["exp_avg_sq"].detach().reshape(-1).float())
            for lst, val in ((b1s, beta1), (b2s, beta2), (epss, g.get("eps", 1e-8)),
                             (ts, float(torch.as_tensor(s["step"]).item()))):
                lst.append(torch.full((size,), float(val), dtype=torch.float64))
        self.m = torch.cat(ms).to(device)
        self.v = torch.cat(vs).to(device)
        b1, b2, t = torch.cat(b1s), torch.cat(b2s), torch.cat(ts)
        self.beta1, self.beta2 = b1.float().to(device), b2.float().to(device)
        self.eps = torch.cat(epss).float().to(device)
        self.corr1 = (1.0 - b1 ** (t + 1)).float().to(device)  # bias corrections of the next step
        self.corr2 = (1.0 - b2 ** (t + 1)).float().to(device)

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        """(B, d) per-sample gradients -> (B, d) Adam update directions Γ(g)."""
        g = g.float()
        m_hat = (self.beta1 * self.m + (1 - self.beta1) * g) / self.corr1
        v_hat = (self.beta2 * self.v + (1 - self.beta2) * g.square()) / self.corr2
        return m_hat / (v_hat.sqrt() + self.eps)


def check_optimizer_state(state: Mapping[str, Any], model: torch.nn.Module, names: Sequence[str]) -> dict[str, int]:
    """The optimizer index of each differentiated parameter in ``names`` (cheap: shapes only).

    The optimizer may have been built on ``model.named_parameters()`` (the state then records the
    names), ``model.parameters()``, the trainable ones (a PEFT adapter's), or — ``transformers.Trainer``
    — the trainable ones split into two groups (weight decay, then no decay: biases and norms); the
    first of these orders in which every moment has its parameter's shape is taken. InvalidParameterError when none fits or a parameter in
    ``names`` has no moments (the state belongs to another model or another parameter choice).
    """
    groups, per_param = _check_state_dict(state)
    order = [i for g in groups for i in g["params"]]
    named = list(model.named_parameters())
    trainable = [(n, p) for n, p in named if p.requires_grad]

    def fits(cand: list[tuple[str, torch.nn.Parameter]]) -> bool:
        return all(tuple(per_param[i]["exp_avg"].shape) == tuple(p.shape) for (_, p), i in zip(cand, order)
                   if i in per_param)

    def trainer_order() -> list[tuple[str, torch.nn.Parameter]]:
        decay = _trainer_decay_names(model) if len(groups) == 2 else None
        if decay is None:
            return []
        return [(n, p) for n, p in trainable if n in decay] + [(n, p) for n, p in trainable if n not in decay]

    def recorded_order() -> list[tuple[str, torch.nn.Parameter]]:  # an optimizer built on named_parameters()
        recorded = [n for g in groups for n in g.get("param_names", ())]
        by_name = dict(named)
        return [(n, by_name[n]) for n in recorded] if recorded and all(n in by_name for n in recorded) else []

    sized = False
    for make in (recorded_order, lambda: named, lambda: trainable, trainer_order):
        cand = make()
        if len(cand) != len(order):
            continue
        sized = True
        if fits(cand):
            break
    else:
        if not sized:
            raise InvalidParameterError(
                f"optimizer_state covers {len(order)} parameters but the model has {len(named)} ({len(trainable)} "
                "trainable); pass the state of the optimizer built on this model's parameters (model.parameters(), "
                "the trainable ones, or a transformers Trainer checkpoint's optimizer.pt).")
        raise InvalidParameterError(
            f"optimizer_state covers {len(order)} parameters like the model, but their moments' shapes match the "
            "parameters in no order tried (model order, trainable ones, Trainer's decay/no-decay groups): the "
            "state belongs to another model.")
    index = {n: i for (n, _), i in zip(cand, order)}
    for n in names:
        if index.get(n) not in per_param:
            raise InvalidParameterError(
                f"optimizer_state has no moments for parameter {n!r}: the optimizer did not train it; differentiate "
                "the parameters it trained (the default: the trainable ones) or pass the matching optimizer state.")
    return {n: index[n] for n in names}


def _trainer_decay_names(model: torch.nn.Module) -> set[str] | None:
    """The parameters ``transformers.Trainer`` puts in its weight-decay group (None without transformers)."""
    try:
        from transformers import Trainer

        return set(Trainer.get_decay_parameter_names(None, model))  # uses no Trainer state
    except (ImportError, AttributeError, RuntimeError):  # no transformers, or one without this rule
        return None
