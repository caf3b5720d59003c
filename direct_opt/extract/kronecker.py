"""Kronecker-factored (LoGra-style) projection for linear layers.

For a linear layer y_t = W x_t (+ b) the per-sample weight gradient is
``sum_t delta_t x_t^T`` (d_out x d_in), delta_t = dloss/dy_t. With Gaussian factors
P_in (d_in x k_in, entries N(0, 1/k_in)) and P_out (d_out x k_out, entries N(0, 1/k_out))
its projection by R = (P_out ⊗ P_in)^T is::

    P_out^T (sum_t delta_t x_t^T) P_in = sum_t (P_out^T delta_t)(P_in^T x_t)^T   (k_out x k_in)

computed from forward/backward activations only — one forward + one backward for the
whole batch, never a per-sample gradient. A selected bias is folded in by appending a
constant 1 to x (so P_in has d_in + 1 rows). Parameters outside such layers (embeddings,
norms, tied weights, biases of unselected weights) fall back to a dense Gaussian block.

Sketch layout and split of ``k_sketch``: with L kronecker layers and F ∈ {0, 1} fallback
block, every layer gets k_in = k_out = m = floor(sqrt(k_sketch / (L + F))) (overridable
with options ``k_in``/``k_out``); the fallback block gets the rest,
k_fb = k_sketch - L * k_in * k_out. The sketch is the concatenation
[layer_1 | ... | layer_L | fallback]; without a fallback block the total k is
L * k_in * k_out <= k_sketch (recorded as ``k`` in the stats config).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..errors import InvalidParameterError
from .per_sample import PerSampleGrad, check_loss_shape
from .projectors import GaussianProjector


@dataclass
class _Layer:
    module_name: str
    weight: str
    bias: str | None  # selected bias folded into the input (x -> [x, 1])
    d_in: int
    d_out: int
    transposed: bool  # HF Conv1D stores W as (d_in, d_out)
    p_in: torch.Tensor  # (d_in + has_bias, k_in)
    p_out: torch.Tensor  # (d_out, k_out)


def _linear_like(mod: torch.nn.Module) -> tuple[bool, bool]:
    """(is linear-like, weight stored transposed)."""
    if isinstance(mod, torch.nn.Linear):
        return True, False
    w = getattr(mod, "weight", None)
    if type(mod).__name__ == "Conv1D" and isinstance(w, torch.Tensor) and w.ndim == 2:
        return True, True
    return False, False


class KroneckerProjector:
    """Kronecker projector over the selected parameters of ``model`` (see module docstring)."""

    name = "kronecker"
    per_sample = False

    def __init__(self, model: torch.nn.Module, names: Sequence[str], k: int, seed: int = 0,
                 device: torch.device | str = "cpu", k_in: int | None = None, k_out: int | None = None) -> None:
        self.device = torch.device(device)
        self.seed = int(seed)
        selected = set(names)
        owners: dict[int, int] = {}
        for mod in model.modules():
            for p in mod._parameters.values():
                if p is not None:
                    owners[id(p)] = owners.get(id(p), 0) + 1
        params = dict(model.named_parameters())
        specs: list[tuple[str, str, str | None, int, int, bool]] = []
        for mname, mod in model.named_modules():
            ok, transposed = _linear_like(mod)
            prefix = f"{mname}." if mname else ""
            wname = prefix + "weight"
            if not ok or wname not in selected or wname not in params or owners.get(id(mod.weight), 0) != 1:
                continue
            bname = prefix + "bias"
            bias = bname if getattr(mod, "bias", None) is not None and bname in selected and bname in params else None
            w = mod.weight
            d_out, d_in = (w.shape[1], w.shape[0]) if transposed else (w.shape[0], w.shape[1])
            specs.append((mname, wname, bias, int(d_in), int(d_out), transposed))
        covered = {s[1] for s in specs} | {s[2] for s in specs if s[2]}
        self.fallback_names = [n for n in names if n not in covered]
        n_layers, has_fb = len(specs), bool(self.fallback_names)
        n_blocks = n_layers + int(has_fb)
        m = math.isqrt(k // max(1, n_blocks))
        self.k_in = int(k_in) if k_in is not None else m
        self.k_out = int(k_out) if k_out is not None else m
        if n_layers and (self.k_in < 1 or self.k_out < 1):
            raise InvalidParameterError(
                f"k_sketch={k} is too small for {n_layers} kronecker layers (+{int(has_fb)} fallback block): "
                f"need k_sketch >= {n_blocks}; raise k_sketch or narrow param_filter."
            )
        k_layers = n_layers * self.k_in * self.k_out
        self.k_fallback = k - k_layers if has_fb else 0
        if has_fb and self.k_fallback <= 0:
            raise InvalidParameterError(
                f"k_sketch={k} leaves no room for the dense fallback block (layers use {k_layers}); "
                "raise k_sketch or lower k_in/k_out."
            )
        self.layers: list[_Layer] = []
        for i, (mname, wname, bias, d_in, d_out, tr) in enumerate(specs):
            p_in = GaussianProjector(d_in + (bias is not None), self.k_in, seed, "cpu", salt=f"kron-in:{wname}").matrix()
            p_out = GaussianProjector(d_out, self.k_out, seed, "cpu", salt=f"kron-out:{wname}").matrix()
            self.layers.append(_Layer(mname, wname, bias, d_in, d_out, tr, p_in.to(self.device), p_out.to(self.device)))
        self._modules = {mname: mod for mname, mod in model.named_modules()}
        self.fallback_dim = int(sum(params[n].numel() for n in self.fallback_names))
        self.fallback = (
            GaussianProjector(self.fallback_dim, self.k_fallback, seed, self.device, salt="kron-fallback")
            if has_fb else None
        )
        self.k = k_layers + self.k_fallback
        if self.k <= 0:
            raise InvalidParameterError("the kronecker projector got an empty sketch; check param_filter.")

    # ------------------------------------------------------------------ batch
    def sketch_batch(
        self, engine: PerSampleGrad, fallback: PerSampleGrad | None, batch: Any, b: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batch -> (losses (B,), sketches (B, k), squared full-gradient norms (B,))."""
        records: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {l.module_name: [] for l in self.layers}
        handles = []

        def make_hook(key: str):
            def hook(_mod: torch.nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor | None:
                replaced = None
                if not out.requires_grad:
                    replaced = out.detach().requires_grad_(True)
                records[key].append((args[0].detach(), replaced if replaced is not None else out))
                return replaced
            return hook

        for layer in self.layers:
            handles.append(self._modules[layer.module_name].register_forward_hook(make_hook(layer.module_name)))
        try:
            with torch.enable_grad():
                out = engine._call(engine._batched, engine.params, batch)
                losses = check_loss_shape(out, b, "full batch").float()
                ys = [y for l in self.layers for (_, y) in records[l.module_name]]
                deltas = torch.autograd.grad(losses.sum(), ys, allow_unused=True) if ys else []
        finally:
            for h in handles:
                h.remove()
        blocks: list[torch.Tensor] = []
        sq = torch.zeros(b, dtype=torch.float32, device=self.device)
        it = iter(deltas)
        for layer in self.layers:
            xs, ds = [], []
            for x, y in records[layer.module_name]:
                d = next(it)
                d = torch.zeros_like(y) if d is None else d
                xs.append(x.reshape(b, -1, layer.d_in).float())
                ds.append(d.reshape(b, -1, layer.d_out).float())
            if not xs:  # layer never called: zero gradient
                blocks.append(torch.zeros(b, self.k_out * self.k_in, device=self.device))
                continue
            x = torch.cat(xs, 1)  # (B, T, d_in)
            d = torch.cat(ds, 1)  # (B, T, d_out)
            if layer.bias is not None:
                x = torch.cat([x, torch.ones_like(x[..., :1])], -1)
            xp = x @ layer.p_in  # (B, T, k_in)
            dp = d @ layer.p_out  # (B, T, k_out)
            blocks.append(torch.einsum("bto,bti->boi", dp, xp).reshape(b, -1))
            if x.shape[1] == 1:
                sq += d.square().sum((1, 2)) * x.square().sum((1, 2))
            else:
                sq += (torch.bmm(d, d.transpose(1, 2)) * torch.bmm(x, x.transpose(1, 2))).sum((1, 2))
        if fallback is not None and self.fallback is not None:
            _, grads = fallback.losses_and_grads(batch)
            flat = fallback.flatten(grads)
            sq += flat.square().sum(1)
            blocks.append(self.fallback.project(flat))
        return losses.detach(), torch.cat(blocks, 1), sq

    def describe(self) -> dict[str, Any]:
        """JSON-safe description, including the split of k_sketch."""
        return {
            "name": self.name, "k": self.k, "seed": self.seed, "k_in": self.k_in, "k_out": self.k_out,
            "k_fallback": self.k_fallback, "fallback_params": list(self.fallback_names),
            "layers": [{"weight": l.weight, "bias": l.bias, "d_in": l.d_in, "d_out": l.d_out,
                        "offset": i * self.k_in * self.k_out} for i, l in enumerate(self.layers)],
        }
