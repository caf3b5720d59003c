"""Per-sample gradients with torch.func (``functional_call`` + ``vmap(grad(...))``).

The user's ``loss_fn(model, batch)`` is wrapped in a tiny module so ``functional_call``
can substitute the selected parameters; unselected parameters and buffers are used as
they are (constants). The model must be in eval mode (the pipeline sets it).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Sequence

import torch
from torch.func import functional_call, grad, jvp, vmap
from torch.utils._pytree import tree_map

from ..errors import ExtractionError
from .data import LossFn, single_sample_fn
from .hf import vmap_attention

Params = dict[str, torch.Tensor]


class _LossModule(torch.nn.Module):
    """``forward(batch) = loss_fn(model, batch)`` so functional_call reaches the model's params."""

    def __init__(self, model: torch.nn.Module, fn: Callable[[torch.nn.Module, Any], torch.Tensor]):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, batch: Any) -> torch.Tensor:  # noqa: D401
        return self.fn(self.model, batch)


def autocast_context(device: torch.device, dtype_name: str) -> ContextManager[Any]:
    """Autocast for ``bfloat16``/``float16``; a no-op context for ``float32``."""
    if dtype_name == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype_name))


def check_loss_shape(out: Any, b: int, where: str) -> torch.Tensor:
    """Raise ExtractionError unless ``out`` is a tensor of shape (b,)."""
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (b,):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ExtractionError(
            f"loss_fn must return per-sample losses of shape (B,) = ({b},) but returned {shape} "
            f"({where}). Return one loss per sample (reduction='none'), or wrap a scalar "
            "per-sample function with direct_opt.extract.per_sample_loss."
        )
    return out


class PerSampleGrad:
    """Per-sample losses, gradients and Hessian-vector products of ``loss_fn`` on ``model``.

    Args:
        model: the network (in eval mode, on its device).
        loss_fn: ``loss_fn(model, batch) -> (B,)`` (see :mod:`direct_opt.extract.data`).
        names: the selected parameter names (differentiated); others are constants.
        device: compute device; dtype_name: ``float32``/``bfloat16``/``float16`` autocast.
    """

    def __init__(
        self, model: torch.nn.Module, loss_fn: LossFn, names: Sequence[str], device: torch.device,
        dtype_name: str = "float32",
    ) -> None:
        self.names = list(names)
        self.device = device
        self.dtype_name = dtype_name
        all_params = dict(model.named_parameters())
        self.params: Params = {n: all_params[n].detach() for n in self.names}
        self.shapes = {n: tuple(p.shape) for n, p in self.params.items()}
        self.dim = int(sum(p.numel() for p in self.params.values()))
        self.model = model
        self._batched = _LossModule(model, loss_fn)
        single = single_sample_fn(loss_fn)
        self._single = _LossModule(model, single) if single is not None else None

    # -------------------------------------------------------------- internals
    def _call(self, module: _LossModule, params: Params, batch: Any) -> torch.Tensor:
        with autocast_context(self.device, self.dtype_name):
            return functional_call(module, {f"model.{n}": p for n, p in params.items()}, (batch,))

    def _sample_loss(self, params: Params, sample: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Scalar float32 loss of one (un-batched) sample; returns (loss, loss) for has_aux."""
        if self._single is not None:
            out = self._call(self._single, params, sample)
            if not isinstance(out, torch.Tensor) or out.numel() != 1:
                raise ExtractionError(
                    "the per-sample function wrapped by per_sample_loss must return a scalar loss; "
                    f"got {tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}."
                )
            loss = _upcast(out.reshape(()))
        else:
            batch1 = tree_map(lambda t: t.unsqueeze(0) if isinstance(t, torch.Tensor) else t, sample)
            out = check_loss_shape(self._call(self._batched, params, batch1), 1, "batch of one sample")
            loss = _upcast(out[0])
        return loss, loss.detach()

    # ----------------------------------------------------------------- public
    def losses_and_grads(self, batch: Any) -> tuple[torch.Tensor, Params]:
        """Per-sample losses (B,) float32 and gradients {name: (B, *shape)} float32."""
        fn = vmap(grad(self._sample_loss, has_aux=True), in_dims=(None, 0), randomness="different")
        # torch.func.grad ignores the outer no_grad (no graph for constants); transformers models
        # run eager attention here (their sdpa mask code cannot be vmapped), restored after
        with torch.no_grad(), vmap_attention(self.model):
            grads, losses = fn(self.params, batch)
        return losses.float(), {n: g.float() for n, g in grads.items()}

    def loss_and_grad_one(self, sample_batch: Any) -> tuple[torch.Tensor, Params]:
        """Plain-autograd loss and gradient of a batch of ONE sample (the paper's loop)."""
        params = {n: p.detach().clone().requires_grad_(True) for n, p in self.params.items()}
        with torch.enable_grad():
            out = check_loss_shape(self._call(self._batched, params, sample_batch), 1, "batch of one sample")
            gs = torch.autograd.grad(out.float().sum(), list(params.values()), allow_unused=True)
        grads = {n: (g if g is not None else torch.zeros_like(params[n])).float().unsqueeze(0)
                 for n, g in zip(params, gs)}
        return out.detach().float(), grads

    def batch_losses(self, batch: Any, b: int) -> torch.Tensor:
        """Per-sample losses (B,) without gradients (checks the loss_fn contract)."""
        with torch.no_grad():
            return check_loss_shape(self._call(self._batched, self.params, batch), b, "full batch").float()

    def hvp_sum(self, batch: Any, vec: Params) -> Params:
        """H v for the Hessian of the *summed* per-sample losses of ``batch`` (forward-over-reverse)."""

        def total(p: Params) -> torch.Tensor:
            total_loss = check_loss_shape(self._call(self._batched, p, batch), _batch_len(batch), "full batch").sum()
            return _upcast(total_loss)

        with torch.no_grad():
            _, hv = jvp(grad(total), (self.params,), (vec,))
        return {n: _upcast(t) for n, t in hv.items()}

    def flatten(self, grads: Params) -> torch.Tensor:
        """Concatenate {name: (B, *shape)} into (B, d) in selection order."""
        return torch.cat([grads[n].reshape(grads[n].shape[0], -1) for n in self.names], dim=1)

    def unflatten(self, vec: torch.Tensor) -> Params:
        """Split a (d,) vector into {name: shape} tensors in selection order."""
        out: Params = {}
        off = 0
        for n in self.names:
            size = self.params[n].numel()
            out[n] = vec[off : off + size].reshape(self.shapes[n]).to(self.params[n].dtype)
            off += size
        return out


def _batch_len(batch: Any) -> int:
    """Leading dimension of the first tensor leaf of a batch."""
    from torch.utils._pytree import tree_flatten

    leaves = [t for t in tree_flatten(batch)[0] if isinstance(t, torch.Tensor)]
    if not leaves:
        raise ExtractionError("the collated batch holds no tensor; check collate_fn.")
    return int(leaves[0].shape[0])


def _upcast(t: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32; float32/float64 unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
