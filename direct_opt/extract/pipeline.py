"""extract_stats: model + data -> GradientStats (docs/math.md, docs/extract.md).

Order: validation pass (curvature, saved) -> pool batches (sketches, one shard per batch)
-> eigen-coordinates, elbow split and stiff costs -> GradientStats (saved to out_dir/stats).
"""

from __future__ import annotations

import contextlib
import logging
import math
import platform
import time
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .ranks import (check_same_header, compute_on_rank0, gather_batches, make_output_dir, my_batches,
                    read_pool, resolve_comm, share_arrays)
from ..errors import ExtractionError
from ..stats import GradientStats, check_sample_arrays, check_val_groups
from ..threads import fixed_threads
from .config import ExtractConfig
from .curvature import CURVATURES, fisher_eigen, lanczos
from .data import LossFn, batch_ranges, data_fingerprint, default_collate_samples, iter_batches, to_device
from .adam import AdamDirection
from .elbow import choose_k_star
from .hf import token_counts
from .params import model_fingerprint, select_params
from .per_sample import PerSampleGrad
from .projector_registry import make_projector, projector_input
from .projectors import BasisProjector
from .shards import OutputDir
from .sketch import AdamSketcher, DenseSketcher, KroneckerSketcher, PaperSketcher, Sketcher

log = logging.getLogger("direct_opt.extract")


def package_version() -> str:
    """direct_opt's version (installed metadata, else the package attribute, else 'unknown')."""
    try:
        from importlib.metadata import version

        return version("direct_opt")
    except Exception:
        try:
            from .. import __version__  # type: ignore[attr-defined]

            return str(__version__)
        except Exception:
            return "unknown"


def _make_sketcher(model: torch.nn.Module, loss_fn: LossFn, engine: PerSampleGrad, cfg: ExtractConfig,
                   device: torch.device) -> Sketcher:
    opts = dict(cfg.projector_options)
    if projector_input(cfg.projector) == "model":
        proj = make_projector(cfg.projector, k=cfg.k_sketch, seed=cfg.seed, device=device, model=model,
                              names=engine.names, **opts)
        fb = (PerSampleGrad(model, loss_fn, proj.vmap_names, device, cfg.torch_dtype_name)
              if proj.vmap_names else None)
        return KroneckerSketcher(engine, proj, fb)
    proj = make_projector(cfg.projector, k=cfg.k_sketch, seed=cfg.seed, dim=engine.dim, device=device, **opts)
    return PaperSketcher(engine, proj) if proj.per_sample else DenseSketcher(engine, proj)


def _bar(cfg: ExtractConfig, total: int, desc: str, initial: int = 0) -> tqdm:
    return tqdm(total=total, initial=initial, desc=desc, unit="sample", unit_scale=False,
                disable=not cfg.verbose, dynamic_ncols=True, leave=True)


def _fisher_curvature(sketcher: Sketcher, val: Sequence[Any], cfg: ExtractConfig, device: torch.device,
                      comm: Any = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    zs, ls = {}, {}
    ranges = batch_ranges(len(val), cfg.batch_size)
    mine = my_batches(len(ranges), comm)  # all batches in one process; every P-th under torchrun
    with _bar(cfg, len(val), "validation (fisher)") as bar:
        for b, (_, s, e, batch) in zip(mine, iter_batches(val, [ranges[b] for b in mine], cfg.collate_fn)):
            loss, z, _ = sketcher.sketch(to_device(batch, device), e - s, s, "validation")
            zs[b] = z.numpy().astype(np.float32)
            ls[b] = loss.numpy().astype(np.float32)[:, None]
            bar.update(e - s)
    z_val = gather_batches(zs, len(ranges), comm)  # (M, k) in batch order on every rank
    lam, vec = fisher_eigen(z_val)
    arrays = {"eigvals": lam, "basis": vec, "val_mean": z_val.astype(np.float64).mean(0), "val_sketch": z_val,
              "val_losses": gather_batches(ls, len(ranges), comm).ravel()}
    info = {"kind": "fisher", "k": int(lam.size), "m": len(val)}
    return share_arrays(arrays, info, comm) if comm is not None else (arrays, info)


def _hessian_curvature(engine: PerSampleGrad, val: Sequence[Any], cfg: ExtractConfig, device: torch.device
                       ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    ranges = batch_ranges(len(val), cfg.batch_size)
    gsum = torch.zeros(engine.dim, dtype=torch.float64)
    ls = []
    sk = DenseSketcher(engine, _IdentityProjector(engine.dim))
    with _bar(cfg, len(val), "validation (gradients)") as bar:
        for _, s, e, batch in iter_batches(val, ranges, cfg.collate_fn):
            loss, g, _ = sk.sketch(to_device(batch, device), e - s, s, "validation")
            gsum += g.double().sum(0)
            ls.append(loss.numpy().astype(np.float32))
            bar.update(e - s)
    m = len(val)
    batches = [to_device(b, device) for _, _, _, b in iter_batches(val, ranges, cfg.collate_fn)]

    def matvec(v: np.ndarray) -> np.ndarray:
        vec = engine.unflatten(torch.from_numpy(v).to(device))
        acc = torch.zeros(engine.dim, dtype=torch.float64)
        for b in batches:
            hv = engine.hvp_sum(b, vec)
            acc += torch.cat([hv[n].reshape(-1).double().cpu() for n in engine.names])
        return (acc / m).numpy()

    k = min(cfg.k_sketch, engine.dim)
    lam, u = lanczos(matvec, engine.dim, k, cfg.lanczos_steps, cfg.seed)
    u32 = u.astype(np.float32)
    arrays = {"eigvals": lam, "basis": u32, "val_mean": u32.astype(np.float64).T @ (gsum.numpy() / m),
              "val_losses": np.concatenate(ls)}
    return arrays, {"kind": "hessian-lanczos", "k": int(k), "m": m,
                    "lanczos_steps": int(cfg.lanczos_steps or min(engine.dim, 2 * k + 20))}


def _val_sketches(sketcher: Sketcher, val: Sequence[Any], cfg: ExtractConfig, device: torch.device) -> np.ndarray:
    """(M, k) float32 sketches of the per-example validation gradients (plain SGD gradients)."""
    out = []
    with _bar(cfg, len(val), "validation (sketches)") as bar:
        for _, s, e, batch in iter_batches(val, batch_ranges(len(val), cfg.batch_size), cfg.collate_fn):
            out.append(sketcher.sketch(to_device(batch, device), e - s, s, "validation")[1].numpy())
            bar.update(e - s)
    return np.concatenate(out).astype(np.float32)


class _IdentityProjector(BasisProjector):
    """z = g (used to collect full validation gradients for the Hessian mode)."""

    def __init__(self, dim: int) -> None:  # noqa: D107 - no matrix is ever built
        self.dim = self.k = dim
        self.name = "identity"

    def project(self, g: torch.Tensor) -> torch.Tensor:
        return g.float()


def extract_stats(
    model: torch.nn.Module, loss_fn: LossFn, train_samples: Sequence[Any], val_samples: Sequence[Any],
    cfg: ExtractConfig | None = None, comm: Any = None, *, sample_ids: Sequence[Any] | np.ndarray | None = None,
    val_groups: Sequence[Any] | np.ndarray | None = None,
) -> GradientStats:
    """Gradient statistics of a candidate pool at the model's current weights.

    Args:
        model: the network at the checkpoint θ_s (moved to ``cfg.device``, run in eval mode,
            its training flag restored afterwards).
        loss_fn: ``loss_fn(model, batch) -> (B,)`` per-sample losses (see :mod:`.data`).
        train_samples: the candidate pool (N samples, a sequence; indexable).
        val_samples: the validation set (M samples).
        cfg: :class:`ExtractConfig` (defaults if None).
        comm: a :class:`direct_opt.distributed.Comm` to split the work over ranks; None: the
            default ``torch.distributed`` group when it is initialised (or torchrun's
            environment says WORLD_SIZE > 1), else one process.  Every rank passes the same
            model, data and cfg (``out_dir`` on a shared file system) and gets the same stats,
            identical to a one-process run; see docs/scaling.md.
        sample_ids: (N,) unique id of each pool sample (integers or strings, e.g. an id column);
            default: the pool index 0..N-1. Stored as ``stats.sample_ids``.
        val_groups: (M,) group label of each validation sample (integers or strings, e.g. the
            task), stored as ``stats.val_groups``: LESS takes the max over groups.
    Returns:
        GradientStats with G_flat (k-k*, N), a_stiff (N,), eigvals (k,), k_star, G_stiff
        (k*, N) if ``cfg.store_stiff``, val_grad (k,), losses (N,), grad_norms (N,) and a
        JSON ``config`` (the ExtractConfig, projector, curvature, fingerprints, version),
        ``sample_ids`` and, for token samples (dicts with ``input_ids``), ``token_counts`` (N,);
        val_coords (k, M) per-example validation gradients in the same coordinates, and
        adam_coords (k, N) (the Adam update directions) when ``cfg.optimizer_state`` is given.
    Raises:
        ExtractionError, InvalidParameterError, UnknownNameError, OutputLockedError.
    """
    cfg = (cfg or ExtractConfig()).validate()
    for label, samples in (("train_samples (the pool)", train_samples), ("val_samples", val_samples)):
        if samples is None or len(samples) == 0:
            raise ExtractionError(f"{label} is empty; pass at least one sample.")
    ids = np.arange(len(train_samples), dtype=np.int64) if sample_ids is None else sample_ids
    ids, counts = check_sample_arrays(len(train_samples), ids, token_counts(train_samples))
    per_sample = {"sample_ids": ids, "token_counts": counts,
                  "val_groups": check_val_groups(len(val_samples), val_groups)}
    device = torch.device(cfg.device)
    was_training = model.training
    model.to(device)
    model.eval()
    try:
        names = select_params(model, cfg.param_filter)
        engine = PerSampleGrad(model, loss_fn, names, device, cfg.torch_dtype_name)
        t0 = time.perf_counter()
        header = {
            "config": cfg.identity(),
            "model": model_fingerprint(model, names),
            "train": data_fingerprint(train_samples, cfg.verbose, "fingerprint (pool)"),
            "val": data_fingerprint(val_samples, cfg.verbose, "fingerprint (val)"),
            "package_version": package_version(),
        }
        log.info("fingerprint of the model and %d pool + %d val samples: %.2f s", len(train_samples),
                 len(val_samples), time.perf_counter() - t0)
        comm = resolve_comm(comm)
        check_same_header(header, comm)
        out = make_output_dir(cfg.out_dir, header, comm) if cfg.out_dir else None
        with out if out is not None else contextlib.nullcontext(), fixed_threads(cfg.threads):
            return _run(model, loss_fn, engine, train_samples, val_samples, cfg, device, header, out, comm, per_sample)
    finally:
        model.train(was_training)


def _run(model: torch.nn.Module, loss_fn: LossFn, engine: PerSampleGrad, train: Sequence[Any],
         val: Sequence[Any], cfg: ExtractConfig, device: torch.device, header: dict[str, Any],
         out: OutputDir | None, comm: Any = None, per_sample: dict[str, Any] | None = None) -> GradientStats:
    hessian = not CURVATURES.entry(cfg.curvature).capabilities["sketched"]
    sketcher = None if hessian else _make_sketcher(model, loss_fn, engine, cfg, device)
    saved = out.load_curvature() if out is not None else None
    if saved is not None:
        curv, info = saved
    elif hessian and comm is not None:  # computed once, on rank 0, and shared
        curv, info = compute_on_rank0(lambda: _hessian_curvature(engine, val, cfg, device), comm)
    elif hessian:
        curv, info = _hessian_curvature(engine, val, cfg, device)
    else:
        assert sketcher is not None
        curv, info = _fisher_curvature(sketcher, val, cfg, device, comm)
    if saved is None and out is not None:
        out.save_curvature(curv, info)
    if hessian:
        basis = torch.from_numpy(np.asarray(curv["basis"], dtype=np.float32))
        sketcher = DenseSketcher(engine, BasisProjector(basis, device, label="hessian eigenvectors"))
    assert sketcher is not None
    if "val_sketch" not in curv:  # hessian mode (or a run directory saved before it was stored)
        curv["val_sketch"] = _val_sketches(sketcher, val, cfg, device)
    pool_sketcher: Sketcher = sketcher
    if cfg.optimizer_state is not None:
        if type(sketcher) is not DenseSketcher:
            raise ExtractionError(
                f"optimizer_state (Adam features for LESS) needs per-sample gradients, which the "
                f"{type(sketcher).__name__} of projector {cfg.projector!r} never forms; use projector='gaussian' "
                "or 'sjlt', or drop optimizer_state.")
        pool_sketcher = AdamSketcher(sketcher, AdamDirection(cfg.optimizer_state, model, engine.names, device))
    lam = np.asarray(curv["eigvals"], dtype=np.float64)
    k = int(lam.size)
    k_star = choose_k_star(cfg.elbow, lam, cfg.elbow_energy)

    # ------------------------------------------------------------ pool pass
    ranges = batch_ranges(len(train), cfg.batch_size)
    cols = 2 + k * (2 if pool_sketcher is not sketcher else 1)  # [loss, |g|², R g, (R Γ(g))]
    rows: list[np.ndarray] = []
    present = {b for b in range(len(ranges)) if out.has_shard(b)} if out is not None else set()
    with _bar(cfg, len(train), "pool", initial=sum(ranges[b][1] - ranges[b][0] for b in present)) as bar:
        for b, (s, e) in enumerate(ranges):
            if comm is not None and b % comm.world != comm.rank:  # another rank's batch
                continue
            kept = out.reuse_shard(b, e - s, cols) if out is not None else None  # None: missing or bad
            if kept is not None:
                rows.append(kept)
                continue
            batch = (cfg.collate_fn or default_collate_samples)([train[i] for i in range(s, e)])
            loss, z, sq = pool_sketcher.sketch(to_device(batch, device), e - s, s, "pool")
            arr = np.concatenate([loss.numpy()[:, None], sq.numpy()[:, None], z.numpy()], 1).astype(np.float32)
            if out is not None:
                out.save_shard(b, arr)
                present.add(b)
                out.write_progress(completed=len(present), n_batches=len(ranges), done=False)
            rows.append(arr)
            bar.update(e - s)
    if comm is None:
        table = np.concatenate(rows)
    elif out is not None:  # every rank's shards are on the shared run directory
        table = read_pool(out, ranges, cols, comm)
    else:
        table = gather_batches(dict(zip(my_batches(len(ranges), comm), rows)), len(ranges), comm)

    # ------------------------------------------------- eigen-coordinates
    basis = np.ascontiguousarray(curv["basis"], dtype=np.float64)  # one memory order: same BLAS path, same bits

    def rotate(z: np.ndarray) -> np.ndarray:  # sketches (n, k) -> eigen-coordinates (n, k)
        z = np.asarray(z, dtype=np.float64)
        return math.sqrt(k) * (z @ basis) if not hessian else math.sqrt(k) * z

    coords = rotate(table[:, 2:2 + k])  # (N, k)
    extra = {"val_coords": np.ascontiguousarray(rotate(curv["val_sketch"]).T, dtype=np.float32)}
    if cols > 2 + k:
        extra["adam_coords"] = np.ascontiguousarray(rotate(table[:, 2 + k:]).T, dtype=np.float32)
    val_grad = math.sqrt(k) * (np.asarray(curv["val_mean"]) @ basis if not hessian else np.asarray(curv["val_mean"]))
    stiff = coords[:, :k_star]
    a = (stiff**2) @ np.clip(lam[:k_star], 0.0, None)
    energy = float(np.clip(lam[:k_star], 0, None).sum() / max(np.clip(lam, 0, None).sum(), 1e-300))
    proj_desc = sketcher.projector.describe()
    config = {
        "extract": cfg.to_dict(),
        "k": k,
        "k_star": int(k_star),
        "split": {"elbow": cfg.elbow, "threshold": cfg.elbow_energy, "k_star": int(k_star), "k": k,
                  "r": k - int(k_star), "energy_at_k_star": energy},
        "projector": proj_desc,
        "curvature": dict(info),
        "coords": "g_ij = sqrt(k) * v_j^T z_i" + (" with V = I, z_i = U^T g_i" if hessian else ""),
        "model": header["model"],
        "data": {"train": header["train"], "val": header["val"]},
        "package": {"name": "direct_opt", "version": header["package_version"]},
        "torch_version": torch.__version__,
        "python": platform.python_version(),
    }
    stats = GradientStats(
        G_flat=np.ascontiguousarray(coords[:, k_star:].T, dtype=np.float32),
        a_stiff=a.astype(np.float32),
        eigvals=lam.astype(np.float32),
        k_star=int(k_star),
        G_stiff=np.ascontiguousarray(stiff.T, dtype=np.float32) if cfg.store_stiff else None,
        val_grad=np.asarray(val_grad, dtype=np.float32),
        losses=table[:, 0].copy(),
        grad_norms=np.sqrt(np.clip(table[:, 1].astype(np.float64), 0, None)).astype(np.float32),
        config=config,
        **extra,
        **(per_sample or {}),
    )
    if out is not None and (comm is None or comm.rank == 0):
        stats.save(out.path / "stats")
        out.write_progress(completed=len(ranges), n_batches=len(ranges), done=True)
    if comm is not None:
        comm.barrier()  # the saved stats exist when any rank returns
    return stats

