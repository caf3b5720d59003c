"""The built-in online selectors: ``blade``, ``rho-loss``, ``greats``, ``loss``, ``uniform``.

See docs/online.md for the derivation of ``blade`` and the choices made where the paper is
known only by its abstract.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInputError, InvalidParameterError
from ..lm.train import DEFAULT_BETAS
from ..selectors.gradient import greedy_taylor
from ..stats import int_scalar, real_scalar
from .base import OnlineSelector, check_model_option, batch_len, register_online_selector
from .features import LastLayerFeatures, check_losses
from .frank_wolfe import StepPolytope, block_frank_wolfe, objective

BLADE_REFERENCES = ("lagrangian", "lockstep", "ema")
BLADE_EXCESS = ("forward", "linear")


def _adamw(model: nn.Module, lr: float) -> torch.optim.AdamW:
    """The reference's optimiser: AdamW with the toolkit's betas, no weight decay, fresh moments."""
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=DEFAULT_BETAS, weight_decay=0.0, foreach=False)


@register_online_selector("uniform", description="b candidates uniformly at random (the plain training step)")
class Uniform(OnlineSelector):
    """b of the B candidates uniformly at random (random scores; honours quotas)."""

    def scores(self, batch, n, step, rng):
        return rng.random(n), {}


@register_online_selector("loss", description="top-b training loss ℓ(x; θ_t)")
class TopLoss(OnlineSelector):
    """Top-b current loss (one batched forward of the B candidates)."""

    def scores(self, batch, n, step, rng):
        cur = self.losses(self.model, batch, n)
        return cur, {"mean_loss": float(cur.mean())}


@register_online_selector("rho-loss", description="top-b ℓ(x; θ_t) − ℓ(x; θ_ref), θ_ref trained once on val (static)")
class RhoLoss(OnlineSelector):
    """RHO-LOSS: reducible loss against a *static* reference trained once on the validation data.

    Options: ``reference_model`` (use this trained model as θ_ref instead of training one),
    ``ref_steps`` (AdamW steps on validation minibatches, starting from a copy of the model),
    ``ref_lr``.
    """

    needs_val = True
    options = {"reference_model": None, "ref_steps": 100, "ref_lr": 3e-3}

    @classmethod
    def check_own(cls, o):
        check_model_option("reference_model", o["reference_model"])
        o["ref_steps"] = int_scalar("ref_steps", o["ref_steps"], minimum=0)
        if real_scalar("ref_lr", o["ref_lr"]) <= 0:
            raise InvalidParameterError(f"ref_lr={o['ref_lr']} must be > 0.")

    def setup(self) -> None:
        given, steps, lr = self.opts["reference_model"], self.opts["ref_steps"], float(self.opts["ref_lr"])
        self.reference = self.copy_model(given)
        if given is None and steps:
            opt = _adamw(self.reference, lr)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                for t in range(steps):
                    self.train_reference(self.reference, opt, [(self.val_rows(10**6 + t), 1.0)], lr, self.setup_cost)

    def scores(self, batch, n, step, rng):
        cur = self.losses(self.model, batch, n)
        ref = self.losses(self.reference, batch, n)
        return cur - ref, {"mean_loss": float(cur.mean()), "mean_reference_loss": float(ref.mean())}


@register_online_selector("greats", description="greedy online Taylor estimate of the validation-loss decrease "
                                                "(last-layer gradient inner products)")
class Greats(OnlineSelector):
    """GREATS-style: greedily maximise η ḡ_valᵀ s − (η²/2)‖s‖², s = mean of the chosen gradients.

    Gradients are the sketched last-layer per-sample gradients (:class:`LastLayerFeatures`);
    ḡ_val is the mean over a validation minibatch at the current weights, every step.
    Options: ``layer``, ``sketch_dim``. Quotas are not supported (greedy, not an LP).
    """

    needs_val = True
    supports_quotas = False
    options = {"layer": None, "sketch_dim": 64}

    @classmethod
    def check_own(cls, o):
        o["sketch_dim"] = int_scalar("sketch_dim", o["sketch_dim"], minimum=1)

    def setup(self) -> None:
        self.features = LastLayerFeatures(self.opts["layer"], self.opts["sketch_dim"], self.seed)

    def choose(self, batch, n, step, poly, rng):
        _, phi, _ = self.features(self.model, self.loss_fn, batch, n)
        vb = self.val_rows(step)
        m = batch_len(vb)
        _, phi_val, _ = self.features(self.model, self.loss_fn, vb, m)
        self.cost["forward"] += n + m
        eta = self.eta_at(step)
        order, gains, total = greedy_taylor(phi.T, phi_val.mean(0), np.ones(phi.shape[1]), eta, self.b, "mean")
        return order, {"taylor_gain": total, "eta": eta}


@register_online_selector("blade", description="excess loss against a dynamic reference + penalised selection by "
                                               "memoryless randomized block-coordinate Frank–Wolfe")
class Blade(OnlineSelector):
    """BLADE as derived in docs/online.md.

    Each step: e_i = ℓ(x_i; θ_t) − ℓ(x_i; θ_ref,t) over the B candidates (two batched forwards),
    last-layer gradient features φ_i from the first one, then ``fw_steps`` randomized
    block-coordinate FW steps on J(w) = eᵀw/b − (ρη/2)‖Σ_i w_i φ_i / b‖² over the step
    polytope (quotas included), from the fresh start LMO(e); b distinct indices = the oracle
    vertex of the FW weights. :meth:`update` moves θ_ref after every training step.

    Options:
        reference: ``"lagrangian"`` — θ_ref takes its own AdamW step (fresh moments) on the
            selected batch plus ``val_weight`` × a validation minibatch (the penalised
            single-level objective) at the training LR; ``"lockstep"`` — θ_ref takes the
            training model's own update θ_{t+1} − θ_t (same batch, same optimiser) plus an SGD
            step on ``val_weight`` × the validation minibatch; ``"ema"`` — θ_ref ←
            d·θ_ref + (1−d)·θ_t with d = ``ema_decay``.
        excess: ``"forward"`` — e_i from a forward pass of θ_ref over the B candidates;
            ``"linear"`` — the first-order estimate ⟨∇_W ℓ_i, W_t − W_ref⟩ on the last layer
            (no reference forward: about half the selection cost).
        reference_model: start θ_ref from this model (default: a copy of the model).
        penalty: ρ, the weight of the quadratic term (0: top-b excess loss).
        fw_steps, block_size: FW steps per training step and coordinates per block
            (default ⌈B/2⌉).
        layer, sketch_dim: last-layer features (see :class:`LastLayerFeatures`).
    """

    options = {"reference": "lagrangian", "excess": "forward", "reference_model": None, "ema_decay": 0.99, "val_weight": 1.0,
               "ref_lr": None, "penalty": 1.0, "fw_steps": 8, "block_size": None, "layer": None, "sketch_dim": 64}

    @classmethod
    def check_own(cls, o):
        if o["reference"] not in BLADE_REFERENCES:
            raise InvalidParameterError(f"reference={o['reference']!r}; choose one of {list(BLADE_REFERENCES)}.")
        if o["excess"] not in BLADE_EXCESS:
            raise InvalidParameterError(f"excess={o['excess']!r}; choose one of {list(BLADE_EXCESS)}.")
        check_model_option("reference_model", o["reference_model"])
        for key in ("ema_decay", "val_weight", "penalty"):
            o[key] = real_scalar(key, o[key])
        if not 0.0 <= o["ema_decay"] <= 1.0:
            raise InvalidParameterError(f"ema_decay={o['ema_decay']} must lie in [0, 1].")
        if o["penalty"] < 0 or o["val_weight"] < 0:
            raise InvalidParameterError("penalty and val_weight must be >= 0.")
        if o["ref_lr"] is not None and real_scalar("ref_lr", o["ref_lr"]) <= 0:
            raise InvalidParameterError(f"ref_lr={o['ref_lr']} must be > 0.")
        o["fw_steps"] = int_scalar("fw_steps", o["fw_steps"], minimum=0)
        if o["block_size"] is not None:
            o["block_size"] = int_scalar("block_size", o["block_size"], minimum=2)
        o["sketch_dim"] = int_scalar("sketch_dim", o["sketch_dim"], minimum=1)

    def setup(self) -> None:
        o = self.opts
        if o["reference"] != "ema" and self.val is None:
            raise InvalidInputError(f"blade with reference={o['reference']!r} needs val=<rows> (the validation "
                                    "term); pass val or use reference='ema'.")
        self.decay, self.val_weight, self.penalty = o["ema_decay"], o["val_weight"], o["penalty"]
        self.fw_steps, self.block_size = o["fw_steps"], o["block_size"]
        self.features = LastLayerFeatures(o["layer"], o["sketch_dim"], self.seed)
        self.reference = self.copy_model(o["reference_model"])
        self._opt = _adamw(self.reference, 1.0) if o["reference"] == "lagrangian" else None
        self._before: list[torch.Tensor] | None = None  # θ_t at selection time (lockstep)

    def program(self, batch: Any, n: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The step's penalised program J(w) = cᵀw − ½‖Gw‖²: (c (n,), G (d, n), excess losses (n,))."""
        linear = self.opts["excess"] == "linear"
        cur, phi, first_order = self.features(self.model, self.loss_fn, batch, n,
                                              self.reference if linear else None)
        self.cost["forward"] += n
        excess = first_order if linear else cur - self.losses(self.reference, batch, n)
        G = np.sqrt(self.penalty * self.eta_at(step)) * phi.T / self.b
        return excess / self.b, G, excess

    def choose(self, batch, n, step, poly: StepPolytope, rng):
        if self.opts["reference"] == "lockstep":
            self._before = [p.detach().clone() for p in self.model.parameters()]
        c, G, excess = self.program(batch, n, step)
        eta = self.eta_at(step)
        bs = self.block_size or max(2, -(-n // 2))
        trace = block_frank_wolfe(poly, c, G, steps=self.fw_steps, block_size=bs, rng=rng)
        idx = poly.vertex(trace.w)
        x = np.zeros(n)
        x[idx] = 1.0
        return idx, {"mean_excess_loss": float(excess.mean()), "mean_excess_loss_chosen": float(excess[idx].mean()),
                     "J_start": trace.values[0], "J_fw": trace.values[-1], "J_chosen": objective(c, G, x),
                     "fw_gap": trace.gap, "eta": eta}

    @torch.no_grad()
    def _ema(self, model: nn.Module) -> None:
        ref_state = self.reference.state_dict()
        for k, v in model.state_dict().items():
            r = ref_state[k]
            if r.dtype.is_floating_point:
                r.lerp_(v.detach().to(r.dtype), 1.0 - self.decay)
            else:
                r.copy_(v)

    def _lockstep(self, model: nn.Module, lr: float, step: int) -> None:
        """θ_ref ← θ_ref + (θ_{t+1} − θ_t) − lr·λ·∇L_val(θ_ref): the training's own update, plus an SGD
        step on the validation term of the Lagrangian."""
        ref_params = list(self.reference.parameters())
        vb = self.val_rows(step)
        m = batch_len(vb)
        self.reference.zero_grad(set_to_none=True)
        loss = self.val_weight * check_losses(self.loss_fn(self.reference, vb), m).mean()
        grads = torch.autograd.grad(loss, ref_params, allow_unused=True)
        self.cost["forward"] += m
        self.cost["backward"] += m
        with torch.no_grad():
            for r, p, p0, g in zip(ref_params, model.parameters(), self._before, grads):
                r.add_(p.detach() - p0)
                if g is not None:
                    r.add_(g, alpha=-lr)
        self._before = None

    def update(self, model: nn.Module, step: int) -> None:
        self.model = model
        if self.opts["reference"] == "ema":
            self._ema(model)
            return
        if self.last_batch is None:
            return
        lr = float(self.opts["ref_lr"]) if self.opts["ref_lr"] is not None else self.eta_at(step)
        if self.opts["reference"] == "lockstep":
            if self._before is not None:
                self._lockstep(model, lr, step)
            return
        self.train_reference(self.reference, self._opt,
                             [(self.last_batch, 1.0), (self.val_rows(step), self.val_weight)], lr, self.cost)
