"""extract_stats: model + data -> GradientStats (docs/math.md, docs/extract.md).

Order: validation pass (curvature, saved) -> pool batches (sketches, one shard per batch)
-> eigen-coordinates, elbow split and stiff costs, assembled block by block of pool rows
(read back shard by shard from the run directory) -> GradientStats (saved to out_dir/stats).
"""

from __future__ import annotations

import contextlib
import logging
import math
import platform
import time
from typing import Any, Iterable, Iterator, Sequence

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
from .adam import AdamDirection, check_optimizer_state
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
        proj = make_projector(cfg.projector, k=cfg.k_sketch, seed=cfg.seed, dim=engine.dim, device=device,
                              model=model, names=engine.names, **opts)
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
        if cfg.optimizer_state is not None:
            check_optimizer_state(cfg.optimizer_state, model, names)  # before any output
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


#: float64 entries per block of the eigen-coordinate assembly (rows = this // k, at least
#: ROW_BLOCK_MIN): every block is a product of the same shape, so the result does not depend on N,
#: the batch size or which rank computed a shard, and no (N, k) float64 array is ever formed.
BLOCK_ENTRIES = 1 << 20
ROW_BLOCK_MIN = 256


def _run(model: torch.nn.Module, loss_fn: LossFn, engine: PerSampleGrad, train: Sequence[Any],
         val: Sequence[Any], cfg: ExtractConfig, device: torch.device, header: dict[str, Any],
         out: OutputDir | None, comm: Any = None, per_sample: dict[str, Any] | None = None) -> GradientStats:
    """Curvature (saved or computed) -> pool sketches -> eigen-coordinates -> GradientStats
    (with the ``per_sample`` arrays: sample ids, token counts)."""
    hessian = not CURVATURES.entry(cfg.curvature).capabilities["sketched"]
    sketcher = None if hessian else _make_sketcher(model, loss_fn, engine, cfg, device)
    curv, info = _curvature(engine, sketcher, val, cfg, device, out, comm)
    if hessian:  # the pool is projected on the Hessian eigenvectors
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
    ranges = batch_ranges(len(train), cfg.batch_size)
    adam = pool_sketcher is not sketcher
    cols = 2 + k * (2 if adam else 1)  # [loss, |g|², R g, (R Γ(g))]
    rows = _pool_rows(pool_sketcher, train, ranges, cols, cfg, device, out, comm)
    # eigen-coordinates g_i = sqrt(k) V^T z_i (V = I for hessian-lanczos: z is already U^T g)
    basis = None if hessian else np.ascontiguousarray(curv["basis"], dtype=np.float64)
    arrays = _assemble(rows, len(train), basis, lam, k_star, cfg.store_stiff, adam)
    arrays["val_coords"] = np.ascontiguousarray(_rotate(curv["val_sketch"], basis).T, dtype=np.float32)
    val_grad = _rotate(np.asarray(curv["val_mean"]), basis)
    stats = GradientStats(eigvals=lam.astype(np.float32), k_star=int(k_star),
                          val_grad=np.asarray(val_grad, dtype=np.float32),
                          config=_provenance(cfg, lam, k_star, sketcher, info, hessian, header),
                          **arrays, **(per_sample or {}))
    if out is not None and (comm is None or comm.rank == 0):
        stats.save(out.path / "stats")
        out.write_progress(completed=len(ranges), n_batches=len(ranges), done=True)
    if comm is not None:
        comm.barrier()  # the saved stats exist when any rank returns
    return stats


def _curvature(engine: PerSampleGrad, sketcher: Sketcher | None, val: Sequence[Any], cfg: ExtractConfig,
               device: torch.device, out: OutputDir | None, comm: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The run directory's saved curvature, else the validation pass (saved when there is a run
    directory): Fisher from the sketches (``sketcher``), or Hessian eigenpairs (``sketcher`` None;
    on rank 0 only, shared, under torchrun)."""
    saved = out.load_curvature() if out is not None else None
    if saved is not None:
        return saved
    if sketcher is not None:
        curv, info = _fisher_curvature(sketcher, val, cfg, device, comm)
    elif comm is not None:
        curv, info = compute_on_rank0(lambda: _hessian_curvature(engine, val, cfg, device), comm)
    else:
        curv, info = _hessian_curvature(engine, val, cfg, device)
    if out is not None:
        out.save_curvature(curv, info)
    return curv, info


def _pool_rows(sketcher: Sketcher, train: Sequence[Any], ranges: list[tuple[int, int]], cols: int,
               cfg: ExtractConfig, device: torch.device, out: OutputDir | None, comm: Any) -> Iterator[np.ndarray]:
    """Sketch this process's pool batches, then the rows [loss, |g|^2, z_1..z_k] of the whole pool
    ((B, cols) float32 blocks, in pool order).

    With a run directory each batch is a shard on disk (intact ones are reused, not recomputed)
    and the rows are read back shard by shard; without one a single process keeps its batches in
    memory and ranks all-gather them."""
    kept: dict[int, np.ndarray] = {}
    present = {b for b in range(len(ranges)) if out.has_shard(b)} if out is not None else set()
    with _bar(cfg, len(train), "pool", initial=sum(ranges[b][1] - ranges[b][0] for b in present)) as bar:
        for b in my_batches(len(ranges), comm):
            s, e = ranges[b]
            if out is not None and out.reuse_shard(b, e - s, cols) is not None:  # None: missing or bad
                continue
            batch = (cfg.collate_fn or default_collate_samples)([train[i] for i in range(s, e)])
            loss, z, sq = sketcher.sketch(to_device(batch, device), e - s, s, "pool")
            arr = np.concatenate([loss.numpy()[:, None], sq.numpy()[:, None], z.numpy()], 1).astype(np.float32)
            if out is None:
                kept[b] = arr
            else:
                out.save_shard(b, arr)
                present.add(b)
                out.write_progress(completed=len(present), n_batches=len(ranges), done=False)
            bar.update(e - s)
    if out is not None:  # every rank's shards are in the (shared) run directory
        return read_pool(out, ranges, cols, comm)
    if comm is None:
        return (kept[b] for b in range(len(ranges)))
    return iter([gather_batches(kept, len(ranges), comm)])


def _rotate(z: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """Sketches z (n, k) (or (k,)) -> eigen-coordinates sqrt(k) z V (V = ``basis``; None: V = I)."""
    z = np.asarray(z, dtype=np.float64)
    coords = z @ basis if basis is not None else z.copy()
    coords *= math.sqrt(z.shape[-1])
    return coords


def _assemble(rows: Iterable[np.ndarray], n: int, basis: np.ndarray | None, lam: np.ndarray, k_star: int,
              store_stiff: bool, adam: bool = False) -> dict[str, np.ndarray]:
    """Pool rows [loss, |g|^2, z (, z_adam)] -> the stats' per-sample arrays, one block of rows at a time.

    The eigen-coordinates (:func:`_rotate`) are computed for blocks of a fixed number of rows in
    one reused buffer (the last block reuses the rows left over from the one before), so only
    the float32 outputs grow with N.  Returns G_flat (k - k*, N), G_stiff (k*, N) or None,
    a_stiff, losses, grad_norms (N,) and, with ``adam``, adam_coords (k, N), float32.
    """
    k = int(lam.size)
    weights = np.clip(lam[:k_star], 0.0, None)
    block = max(ROW_BLOCK_MIN, BLOCK_ENTRIES // max(k, 1))
    buf = np.zeros((min(block, n), 2 + k * (2 if adam else 1)), dtype=np.float32)
    flat = np.empty((k - k_star, n), dtype=np.float32)
    stiff = np.empty((k_star, n), dtype=np.float32) if store_stiff else None
    adam_coords = np.empty((k, n), dtype=np.float32) if adam else None
    a, losses, sq = (np.empty(n, dtype=np.float32) for _ in range(3))

    def emit(start: int, m: int) -> None:  # the first m rows of the buffer are pool rows start:start+m
        coords = _rotate(buf[:, 2 : 2 + k], basis)
        if adam_coords is not None:
            adam_coords[:, start : start + m] = _rotate(buf[:, 2 + k :], basis)[:m].T
        flat[:, start : start + m] = coords[:m, k_star:].T
        if stiff is not None:
            stiff[:, start : start + m] = coords[:m, :k_star].T
        a[start : start + m] = ((coords[:, :k_star] ** 2) @ weights)[:m]
        losses[start : start + m] = buf[:m, 0]
        sq[start : start + m] = np.sqrt(np.clip(buf[:m, 1].astype(np.float64), 0, None))

    start = filled = 0
    for part in rows:
        pos = 0
        while pos < len(part):
            take = min(len(buf) - filled, len(part) - pos)
            buf[filled : filled + take] = part[pos : pos + take]
            filled, pos = filled + take, pos + take
            if filled == len(buf):
                emit(start, filled)
                start, filled = start + filled, 0
    if filled:
        emit(start, filled)
    if start + filled != n:
        raise ExtractionError(f"the pool pass produced {start + filled} rows for {n} samples.")
    out = {"G_flat": flat, "G_stiff": stiff, "a_stiff": a, "losses": losses, "grad_norms": sq}
    return out if adam_coords is None else {**out, "adam_coords": adam_coords}


def _provenance(cfg: ExtractConfig, lam: np.ndarray, k_star: int, sketcher: Sketcher, info: dict[str, Any],
                hessian: bool, header: dict[str, Any]) -> dict[str, Any]:
    """The stats' JSON ``config``: extraction settings, split, projector, curvature, fingerprints, versions."""
    k = int(lam.size)
    energy = float(np.clip(lam[:k_star], 0, None).sum() / max(np.clip(lam, 0, None).sum(), 1e-300))
    return {
        "extract": cfg.to_dict(),
        "k": k,
        "k_star": int(k_star),
        "split": {"elbow": cfg.elbow, "threshold": cfg.elbow_energy, "k_star": int(k_star), "k": k,
                  "r": k - int(k_star), "energy_at_k_star": energy},
        "projector": sketcher.projector.describe(),
        "curvature": dict(info),
        "coords": "g_ij = sqrt(k) * v_j^T z_i" + (" with V = I, z_i = U^T g_i" if hessian else ""),
        "model": header["model"],
        "data": {"train": header["train"], "val": header["val"]},
        "package": {"name": "direct_opt", "version": header["package_version"]},
        "torch_version": torch.__version__,
        "python": platform.python_version(),
    }
