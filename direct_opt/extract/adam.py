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
from typing import Any, Mapping, Sequence

import torch

from ..errors import InvalidInputError, InvalidParameterError


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
            (all parameters) or on the trainable ones, in the model's order.
        model: the network (to map the optimizer's parameter indices to names).
        names: the differentiated parameter names, in flattening order.
        device: where the moments live.
    """

    def __init__(self, state: Mapping[str, Any], model: torch.nn.Module, names: Sequence[str],
                 device: torch.device) -> None:
        groups, per_param = _check_state_dict(state)
        order = [i for g in groups for i in g["params"]]
        named = list(model.named_parameters())
        trainable = [(n, p) for n, p in named if p.requires_grad]
        cands = [c for c in (named, trainable) if len(c) == len(order)]
        if not cands:
            raise InvalidInputError(
                f"optimizer_state covers {len(order)} parameters but the model has {len(named)} "
                f"({len(trainable)} trainable); pass the state of the optimizer built on model.parameters()."
            )
        by_name = {n: idx for (n, _), idx in zip(cands[0], order)}
        shapes = dict(cands[0])
        group_of = {i: g for g in groups for i in g["params"]}
        ms, vs, b1s, b2s, epss, ts = [], [], [], [], [], []
        for n in names:
            idx = by_name[n]
            s = per_param.get(idx)
            if s is None:
                raise InvalidInputError(f"optimizer_state has no moments for parameter {n!r} (index {idx}).")
            if tuple(s["exp_avg"].shape) != tuple(shapes[n].shape):
                raise InvalidInputError(f"optimizer_state moments of {n!r} have shape {tuple(s['exp_avg'].shape)}, "
                                        f"the parameter {tuple(shapes[n].shape)}: the state belongs to another model.")
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
