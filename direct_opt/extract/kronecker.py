"""Kronecker-factored (LoGra-style) projection for linear and embedding layers.

A weight W stored as (rows x cols) gets two Gaussian factors P_out (rows x k_out) and
P_in (cols' x k_in), entries N(0, 1/k), cols' = cols (+1 for a folded bias). Its sketch
block is ``P_out^T G P_in`` (k_out x k_in) for the per-sample gradient G, i.e. the
projection by R = (P_out ⊗ P_in)^T, computed from forward/backward activations only
(one forward + one backward for the whole batch, never a per-sample gradient):

* ``nn.Linear`` (or HF ``Conv1D``) y_t = W x_t (+ b): G = sum_t delta_t x_t^T, so the block
  is ``sum_t (P_out^T delta_t)(P_in^T x_t)^T``. A selected bias is folded in by appending
  a constant 1 to x.
* ``nn.Embedding`` e_t = W[i_t] (W is V x D): G = sum_t onehot(i_t) delta_t^T, so the block
  is ``sum_t P_out[i_t]^T (P_in^T delta_t)^T`` — a row lookup in P_out, never a V-sized
  product. Rows at ``padding_idx`` get no gradient. Ids with a leading batch dimension of
  size B are per-sample; a leading size 1 (e.g. HF ``position_ids`` (1, T)) or 1-D ids
  (e.g. ``arange(T)`` positions) are shared by the batch: the output is expanded to
  (B, ...) so each sample gets its own gradient. Embeddings with ``max_norm`` or
  ``scale_grad_by_freq`` use the dense fallback.
* A parameter used by several such modules (tied token embedding / output head) gets ONE
  pair of factors and ONE block: the contributions of all its uses are summed, exactly as
  its gradient is.
* ``nn.LayerNorm`` affine parameters and RMSNorm weights (``nn.RMSNorm`` and the
  ``*RMSNorm`` modules of Hugging Face models such as Llama, y = w * x / rms(x)): the exact
  per-sample gradients (sum_t delta_t * xhat_t, sum_t delta_t) come from the same hooks; they
  are projected by the dense fallback block, so no second ``vmap`` pass is needed for them.
  The first batch checks their batch sums against autograd like the layer blocks.

Parameters outside these modules (and layers excluded by option ``embeddings=False``) fall
back to per-sample ``vmap`` gradients and the dense Gaussian block. Assumption: each
hooked weight is used only through its modules' forward (a weight also used functionally,
e.g. ``h @ emb.weight.T`` outside an nn.Linear, would lose that term — use an nn.Linear
head whose ``weight`` is the embedding's Parameter, as Hugging Face models do).

Sketch layout and split of ``k_sketch``: with L kronecker blocks and F ∈ {0, 1} fallback
block, every block gets k_in = k_out = m = floor(sqrt(k_sketch / (L + F))) (overridable
with options ``k_in``/``k_out``); the fallback block gets the rest,
k_fb = k_sketch - L * k_in * k_out. The sketch is the concatenation
[block_1 | ... | block_L | fallback] (blocks in module order of first use); without a
fallback block the total k is L * k_in * k_out <= k_sketch (recorded as ``k``).
The factors are generated on the CPU once (same matrices on every device), then kept on
the compute device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..errors import ExtractionError, InvalidParameterError
from .per_sample import PerSampleGrad, check_loss_shape
from .projectors import GaussianProjector


@dataclass
class _Use:
    module_name: str
    kind: str  # "linear" | "embedding"
    padding_idx: int | None = None


@dataclass
class _Layer:
    weight: str  # parameter name (the block's key)
    bias: str | None  # selected bias folded into the input (x -> [x, 1]); linear only
    d_in: int  # columns of W (linear: inputs; embedding: D)
    d_out: int  # rows of W (linear: outputs; embedding: vocabulary V)
    transposed: bool  # HF Conv1D stores W as (d_in, d_out)
    p_in: torch.Tensor  # (d_in + has_bias, k_in)
    p_out: torch.Tensor  # (d_out, k_out)
    uses: list[_Use] = field(default_factory=list)

    @property
    def module_name(self) -> str:
        return self.uses[0].module_name


def _linear_like(mod: torch.nn.Module) -> tuple[bool, bool]:
    """(is linear-like, weight stored transposed)."""
    if isinstance(mod, torch.nn.Linear):
        return True, False
    w = getattr(mod, "weight", None)
    if type(mod).__name__ == "Conv1D" and isinstance(w, torch.Tensor) and w.ndim == 2:
        return True, True
    return False, False


def _rms_eps(mod: torch.nn.Module) -> float | None:
    """epsilon of an RMSNorm-like module (torch ``nn.RMSNorm`` or a class named ``*RMSNorm`` with a
    1-D ``weight`` and a float ``variance_epsilon``/``eps``), else None."""
    w = getattr(mod, "weight", None)
    if not isinstance(w, torch.nn.Parameter) or w.ndim != 1:
        return None
    if isinstance(mod, getattr(torch.nn, "RMSNorm", ())):
        return mod.eps if mod.eps is not None else float(torch.finfo(torch.float32).eps)
    if type(mod).__name__.endswith("RMSNorm"):
        eps = getattr(mod, "variance_epsilon", getattr(mod, "eps", None))
        return float(eps) if isinstance(eps, (int, float)) else None
    return None


def _plain_embedding(mod: torch.nn.Module) -> bool:
    return (isinstance(mod, torch.nn.Embedding) and mod.max_norm is None and not mod.scale_grad_by_freq)


class KroneckerProjector:
    """Kronecker projector over the selected parameters of ``model`` (see module docstring).

    Options: ``k_in``/``k_out`` (factor sizes), ``embeddings`` (default True: embeddings
    and tied heads are Kronecker blocks; False: they use the dense fallback as before),
    ``cache_bytes`` (device cache of the dense fallback matrix, see GaussianProjector).
    """

    name = "kronecker"
    per_sample = False

    def __init__(self, model: torch.nn.Module, names: Sequence[str], k: int, seed: int = 0,
                 device: torch.device | str = "cpu", k_in: int | None = None, k_out: int | None = None,
                 embeddings: bool = True, cache_bytes: int = 256 << 20) -> None:
        self.device = torch.device(device)
        self.seed = int(seed)
        self.embeddings = bool(embeddings)
        selected = set(names)
        params = dict(model.named_parameters())  # tied parameters appear once, first name
        pname = {id(p): n for n, p in params.items()}
        owners: dict[int, int] = {}
        for mod in model.modules():
            for p in mod._parameters.values():
                if p is not None:
                    owners[id(p)] = owners.get(id(p), 0) + 1
        # weight name -> (uses, transposed flags, bias); in module order of first use
        found: dict[str, dict[str, Any]] = {}
        norms: list[tuple[str, str | None, str | None]] = []  # (module, weight name, bias name)
        self._rms: dict[str, float] = {}  # RMSNorm module -> eps
        for mname, mod in model.named_modules():
            w = getattr(mod, "weight", None) if isinstance(getattr(mod, "weight", None), torch.nn.Parameter) else None
            wname = pname.get(id(w)) if w is not None else None
            ok, transposed = _linear_like(mod)
            if isinstance(mod, torch.nn.LayerNorm) and mod.elementwise_affine:
                b = getattr(mod, "bias", None)
                bname = pname.get(id(b)) if b is not None else None
                wn = wname if wname in selected and owners.get(id(w), 0) == 1 else None
                bn = bname if bname in selected and owners.get(id(b), 0) == 1 else None
                if wn or bn:
                    norms.append((mname, wn, bn))
                continue
            eps = _rms_eps(mod)
            if eps is not None:
                if wname in selected and owners.get(id(w), 0) == 1:
                    norms.append((mname, wname, None))
                    self._rms[mname] = eps
                continue
            is_emb = self.embeddings and _plain_embedding(mod)
            if not (ok or is_emb) or wname is None or wname not in selected:
                continue
            if not ok and w.ndim != 2:
                continue
            entry = found.setdefault(wname, {"uses": [], "transposed": set(), "bias": None, "valid": True,
                                             "shape": tuple(w.shape)})
            if ok:
                entry["uses"].append(_Use(mname, "linear"))
                entry["transposed"].add(transposed)
                b = getattr(mod, "bias", None)
                bname = pname.get(id(b)) if isinstance(b, torch.nn.Parameter) else None
                if bname in selected and owners.get(id(b), 0) == 1:
                    if entry["bias"] is not None:
                        entry["valid"] = False  # two biased uses: cannot fold both
                    entry["bias"] = bname
            else:
                entry["uses"].append(_Use(mname, "embedding", mod.padding_idx))
        specs: list[dict[str, Any]] = []
        for wname, e in found.items():
            w = params[wname]
            n_linear = sum(u.kind == "linear" for u in e["uses"])
            if len(e["uses"]) != owners.get(id(w), 0):  # used by a module we do not hook
                continue
            if not e["valid"] or (n_linear and e["transposed"] == {True} and len(e["uses"]) > 1) or len(e["transposed"]) > 1:
                continue
            transposed = e["transposed"] == {True}
            d_out, d_in = (w.shape[1], w.shape[0]) if transposed else (w.shape[0], w.shape[1])
            specs.append({"weight": wname, "bias": e["bias"], "d_in": int(d_in), "d_out": int(d_out),
                          "transposed": transposed, "uses": e["uses"]})
        covered = {s["weight"] for s in specs} | {s["bias"] for s in specs if s["bias"]}
        self.fallback_names = [n for n in names if n not in covered]
        self._norms = [(m, w, b) for m, w, b in norms if w not in covered and b not in covered]
        hooked = {n for _, w, b in self._norms for n in (w, b) if n}
        #: fallback parameters whose per-sample gradients still need vmap(grad)
        self.vmap_names = [n for n in self.fallback_names if n not in hooked]
        n_layers, has_fb = len(specs), bool(self.fallback_names)
        n_blocks = n_layers + int(has_fb)
        m = math.isqrt(k // max(1, n_blocks))
        self.k_in = int(k_in) if k_in is not None else m
        self.k_out = int(k_out) if k_out is not None else m
        if n_layers and (self.k_in < 1 or self.k_out < 1):
            raise InvalidParameterError(
                f"k_sketch={k} is too small for {n_layers} kronecker blocks (+{int(has_fb)} fallback block): "
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
        for s in specs:
            wname = s["weight"]
            p_in = GaussianProjector(s["d_in"] + (s["bias"] is not None), self.k_in, seed, "cpu",
                                     salt=f"kron-in:{wname}", cache_bytes=0).matrix()
            p_out = GaussianProjector(s["d_out"], self.k_out, seed, "cpu", salt=f"kron-out:{wname}",
                                      cache_bytes=0).matrix()
            self.layers.append(_Layer(wname, s["bias"], s["d_in"], s["d_out"], s["transposed"],
                                      p_in.to(self.device), p_out.to(self.device), list(s["uses"])))
        self._modules = {mname: mod for mname, mod in model.named_modules()}
        self._sizes = {n: params[n].numel() for n in self.fallback_names}
        self.fallback_dim = int(sum(self._sizes.values()))
        self.fallback = (
            GaussianProjector(self.fallback_dim, self.k_fallback, seed, self.device, salt="kron-fallback",
                              cache_bytes=cache_bytes)
            if has_fb else None
        )
        self.k = k_layers + self.k_fallback
        self._verified = False  # first batch: check the blocks against the batch gradient
        if self.k <= 0:
            raise InvalidParameterError("the kronecker projector got an empty sketch; check param_filter.")

    # ------------------------------------------------------------------ hooks
    def _run_hooked(self, engine: PerSampleGrad, batch: Any, b: int) -> tuple[torch.Tensor, dict, dict, dict]:
        """Forward + backward with hooks -> (losses, {module: [(input, out_grad)]}, norm grads,
        batch gradients of the block parameters (first batch only, for :meth:`_verify`))."""
        records: dict[str, list[list[Any]]] = {}
        handles = []

        def make_hook(key: str, kind: str):
            def hook(_mod: torch.nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor | None:
                x = args[0].detach()
                replaced = None
                if kind == "embedding" and (x.ndim < 2 or x.shape[0] != b):
                    if x.ndim >= 2 and x.shape[0] != 1:
                        raise ExtractionError(
                            f"kronecker: embedding {key!r} got ids of shape {tuple(x.shape)}, whose leading "
                            f"dimension is neither the batch ({b}) nor 1; pass batched ids or set "
                            "projector_options={'embeddings': False}.")
                    shared = x if x.ndim < 2 else x[0]
                    x = shared.unsqueeze(0).expand(b, *shared.shape)
                    o = out if out.ndim == shared.ndim + 1 else out[0]
                    replaced = o.unsqueeze(0).expand(b, *o.shape).contiguous()
                    if not replaced.requires_grad:
                        replaced.requires_grad_(True)
                elif not out.requires_grad:
                    replaced = out.detach().requires_grad_(True)
                records.setdefault(key, []).append([x, replaced if replaced is not None else out])
                return replaced
            return hook

        kinds = {u.module_name: u.kind for l in self.layers for u in l.uses}
        kinds.update({m: "norm" for m, _, _ in self._norms})
        for key, kind in kinds.items():
            handles.append(self._modules[key].register_forward_hook(make_hook(key, kind)))
        try:
            with torch.enable_grad():
                params = dict(engine.params)
                check = [] if self._verified else [n for l in self.layers for n in (l.weight, l.bias) if n]
                check += [] if self._verified else [n for _, w, b in self._norms for n in (w, b) if n]
                for n in check:
                    params[n] = params[n].detach().requires_grad_(True)
                out = engine._call(engine._batched, params, batch)
                losses = check_loss_shape(out, b, "full batch").float()
                ys = [r[1] for recs in records.values() for r in recs]
                targets = ys + [params[n] for n in check]
                grads = (torch.autograd.grad(losses.sum(), targets, allow_unused=True)
                         if targets and losses.requires_grad else [None] * len(targets))
                deltas = grads[: len(ys)]
                batch_grads = {n: g for n, g in zip(check, grads[len(ys):])}
        finally:
            for h in handles:
                h.remove()
        it = iter(deltas)
        for recs in records.values():
            for r in recs:
                d = next(it)
                r[1] = torch.zeros_like(r[1]) if d is None else d.detach()
        norm_grads: dict[str, torch.Tensor] = {}
        for mname, wn, bn in self._norms:
            mod = self._modules[mname]
            gw = torch.zeros(b, self._sizes[wn] if wn else 0, device=self.device)
            gb = torch.zeros(b, self._sizes[bn] if bn else 0, device=self.device)
            for x, d in records.get(mname, []):
                shape = tuple(mod.normalized_shape) if mname not in self._rms else tuple(mod.weight.shape)
                dd = d.float().reshape(b, -1, *d.shape[-len(shape):])
                if wn:
                    xf = x.float()
                    xhat = (F.layer_norm(xf, shape, None, None, mod.eps) if mname not in self._rms
                            else xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + self._rms[mname]))
                    gw += (dd * xhat.reshape(dd.shape)).sum(1).reshape(b, -1)
                if bn:
                    gb += dd.sum(1).reshape(b, -1)
            if wn:
                norm_grads[wn] = gw
            if bn:
                norm_grads[bn] = gb
        return losses.detach(), records, norm_grads, batch_grads

    def _verify(self, blocks: list[torch.Tensor], batch_grads: dict, dtype_name: str) -> None:
        """Sum over the batch of each block == the block of the batch gradient, else a weight is
        used outside its hooked modules (e.g. ``h @ emb.weight.T``) and the sketch would be wrong."""
        self._verified = True
        for layer, blk in zip(self.layers, blocks):
            g = batch_grads.get(layer.weight)
            w = torch.zeros(layer.d_out, layer.d_in, device=self.device) if g is None else g.float()
            w = w.T if layer.transposed else w
            if layer.bias is not None:
                gb = batch_grads.get(layer.bias)
                gb = torch.zeros(layer.d_out, device=self.device) if gb is None else gb.float()
                w = torch.cat([w, gb[:, None]], 1)
            expect = layer.p_out.T @ w @ layer.p_in
            got = blk.sum(0).reshape(expect.shape)
            scale = max(float(expect.norm()), float(got.norm()))
            err = float((got - expect).norm()) / max(scale, 1e-30)
            tol = 1e-3 if dtype_name == "float32" else 5e-2
            if not err < tol and scale > 1e-12:
                raise ExtractionError(
                    f"kronecker: {layer.weight!r} gets gradient outside the modules hooked for it "
                    f"({', '.join(u.module_name for u in layer.uses)}): batch-sum mismatch {err:.1e}. It is used "
                    "functionally somewhere (e.g. logits = h @ emb.weight.T); make that an nn.Linear whose weight "
                    "is the same Parameter, or set projector_options={'embeddings': False} / narrow param_filter.")

    def _verify_norms(self, norm_grads: dict, batch_grads: dict, dtype_name: str) -> None:
        """Batch sum of each hooked norm gradient == autograd's, else ExtractionError (an unknown norm variant)."""
        tol = 1e-3 if dtype_name == "float32" else 5e-2
        for name, g in norm_grads.items():
            ref = batch_grads.get(name)
            ref = torch.zeros_like(g[0]) if ref is None else ref.float().reshape(-1)
            got = g.sum(0)
            scale = max(float(ref.norm()), float(got.norm()))
            if scale > 1e-12 and not float((got - ref).norm()) / scale < tol:
                raise ExtractionError(
                    f"kronecker: the hooked gradient of norm parameter {name!r} does not match autograd; its module "
                    "computes something other than w * x_hat (LayerNorm / RMSNorm). Leave it out of param_filter "
                    "or use projector 'gaussian'/'sjlt'.")

    # ------------------------------------------------------------------ batch
    def _factors(self, layer: _Layer, records: dict, b: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """Every use as (row kind, rows, cols) with G = sum_t rows_t cols_t^T:
        ("dense", (B,T,d_out), (B,T,d_in')) for linear, ("ids", (B,T), (B,T,d_in)) for embedding."""
        out = []
        for use in layer.uses:
            for x, d in records.get(use.module_name, []):
                if use.kind == "linear":
                    xx = x.reshape(b, -1, layer.d_in).float()
                    if layer.bias is not None:
                        xx = torch.cat([xx, torch.ones_like(xx[..., :1])], -1)
                    out.append(("dense", d.reshape(b, -1, layer.d_out).float(), xx))
                else:
                    ids = x.reshape(b, -1).long()
                    dd = d.reshape(b, -1, layer.d_in).float()
                    if use.padding_idx is not None:
                        dd = dd * (ids != use.padding_idx).unsqueeze(-1)
                    out.append(("ids", ids, dd))
        return out

    @staticmethod
    def _gram(u: tuple[str, torch.Tensor, torch.Tensor], v: tuple[str, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """<G_u, G_v> per sample, (B,)."""
        (ku, ru, cu), (kv, rv, cv) = u, v
        n = min(cu.shape[-1], cv.shape[-1])  # an embedding use has no bias column
        cg = torch.bmm(cu[..., :n], cv[..., :n].transpose(1, 2))  # (B, T, S)
        if ku == "dense" and kv == "dense":
            rg = torch.bmm(ru, rv.transpose(1, 2))
        elif ku == "ids" and kv == "ids":
            rg = (ru.unsqueeze(2) == rv.unsqueeze(1)).float()
        elif ku == "ids":  # rg[b,t,s] = rv[b, s, ru[b,t]]
            rg = torch.gather(rv, 2, ru.unsqueeze(1).expand(-1, rv.shape[1], -1)).transpose(1, 2)
        else:
            rg = torch.gather(ru, 2, rv.unsqueeze(1).expand(-1, ru.shape[1], -1))
        return (rg * cg).sum((1, 2))

    def sketch_batch(
        self, engine: PerSampleGrad, fallback: PerSampleGrad | None, batch: Any, b: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batch -> (losses (B,), sketches (B, k), squared full-gradient norms (B,)).

        ``fallback`` computes per-sample gradients of (at least) :attr:`vmap_names`; it may be
        None when that list is empty."""
        losses, records, norm_grads, batch_grads = self._run_hooked(engine, batch, b)
        blocks: list[torch.Tensor] = []
        sq = torch.zeros(b, dtype=torch.float32, device=self.device)
        for layer in self.layers:
            uses = self._factors(layer, records, b)
            block = torch.zeros(b, self.k_out, self.k_in, device=self.device)
            for kind, rows, cols in uses:
                rp = layer.p_out[rows] if kind == "ids" else rows @ layer.p_out  # (B, T, k_out)
                cp = cols @ layer.p_in[: cols.shape[-1]]  # (B, T, k_in)
                block += torch.einsum("bto,bti->boi", rp, cp)
            blocks.append(block.reshape(b, -1))
            for i, u in enumerate(uses):
                sq += self._gram(u, u)
                for v in uses[i + 1:]:
                    sq += 2 * self._gram(u, v)
        if batch_grads:
            self._verify(blocks, batch_grads, engine.dtype_name)
            self._verify_norms(norm_grads, batch_grads, engine.dtype_name)
        if self.fallback is not None:
            grads: dict[str, torch.Tensor] = dict(norm_grads)
            if self.vmap_names:
                if fallback is None:
                    raise InvalidParameterError(
                        f"the kronecker projector needs a per-sample engine for {self.vmap_names}.")
                _, g = fallback.losses_and_grads(batch)
                grads.update({n: g[n].reshape(b, -1) for n in self.vmap_names})
            flat = torch.cat([grads[n].reshape(b, -1).float() for n in self.fallback_names], 1)
            sq += flat.square().sum(1)
            blocks.append(self.fallback.project(flat))
        return losses, torch.cat(blocks, 1), sq

    def describe(self) -> dict[str, Any]:
        """JSON-safe description, including the split of k_sketch."""
        return {
            "name": self.name, "k": self.k, "seed": self.seed, "k_in": self.k_in, "k_out": self.k_out,
            "k_fallback": self.k_fallback, "fallback_params": list(self.fallback_names),
            "embeddings": self.embeddings,
            "layers": [{"weight": l.weight, "bias": l.bias, "d_in": l.d_in, "d_out": l.d_out,
                        "uses": [[u.module_name, u.kind] for u in l.uses],
                        "offset": i * self.k_in * self.k_out} for i, l in enumerate(self.layers)],
        }
