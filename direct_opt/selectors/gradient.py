"""Gradient selectors on GradientStats: ``less``, ``grad-norm``, ``taylor``.

LESS's features (per-example validation gradients ``val_coords``, Adam update directions
``adam_coords``) live in the same eigen-coordinates; cosines there equal those of the sketch.

Coordinates. The stats hold per-sample eigen-coordinates c_i = sqrt(k) Vᵀ z_i (columns of
``stats.eigen_coords()``, (k, N), stiff rows first), where z_i = R g_i is the sketch of
the per-sample gradient g_i and H̃ = V Λ Vᵀ the sketched validation curvature
(``stats.eigvals`` = Λ); ``stats.val_grad`` = sqrt(k) Vᵀ z̄_val is the mean validation
gradient in the same coordinates. With u = c / sqrt(k) = Vᵀ z (an orthogonal rotation of
the sketch) inner products are those of the sketch, which the JL sketch makes ≈ those of
parameter space (R has N(0, 1/k) entries, E[RᵀR] = I):

    g_iᵀ g_j ≈ u_iᵀ u_j,     sᵀ F s ≈ u_sᵀ Λ u_s     (F: validation Fisher/GGN).

So in u-coordinates the curvature is H = diag(Λ); equivalently, in c-coordinates every
inner product carries 1/k: H_c = diag(Λ)/k and the linear term is ḡ_cᵀ s_c / k. With
``curvature="hessian-lanczos"`` stats the sketch is z = Uᵀ g (U: top Hessian
eigenvectors), V = I and Λ are Hessian eigenvalues: the same formulas then give the
Taylor estimate restricted to the top-k Hessian subspace.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np

from ..errors import InvalidInputError, InvalidParameterError
from ..stats import GradientStats, real_scalar
from .base import Pick, SelectorInputs, register_selector, score_summary, top_k

_CHUNK = 1 << 15  # columns per block when streaming (memory-mapped) coordinates

#: Default one-step learning rate of ``taylor``: the default annealing peak LR of
#: :func:`direct_opt.lm.train.anneal` (3e-3). Set it to your schedule's peak LR; only
#: the ratio between the linear and curvature terms (∝ eta) changes the choice.
DEFAULT_TAYLOR_ETA = 3e-3
TAYLOR_NORMALIZE = ("mean", "sum", "unit")


# ----------------------------------------------------------------------------- helpers


def _need_whole_sketch(inp: SelectorInputs, what: str, fields: tuple[str, ...] = ("G_stiff", "val_grad")
                       ) -> GradientStats:
    """stats with ``fields`` (whole-sketch eigen-coordinates), else a clear InvalidInputError."""
    if inp.stats is None:
        raise inp.missing_error(f"stats (GradientStats with {', '.join(fields)}) for {what}")
    st = inp.stats
    missing = [n for n in fields if getattr(st, n) is None]
    if missing:
        raise InvalidInputError(
            f"selector {inp.name!r} needs stats with {', '.join(fields)} (whole-sketch "
            f"eigen-coordinates); these stats lack {missing}. Re-extract with "
            "direct_opt.extract.ExtractConfig(store_stiff=True) (the default)."
        )
    return st


def coord_blocks(stats: GradientStats, chunk: int = _CHUNK) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (start, stop, C[:, start:stop]) float64 blocks of the (k, N) eigen-coordinates.

    Streams column blocks (works on memory-mapped stats without materialising (k, N)).
    """
    if stats.G_stiff is None:
        stats.eigen_coords()  # raises the standard message
    for s in range(0, stats.n, chunk):
        e = min(stats.n, s + chunk)
        yield s, e, np.vstack([np.asarray(stats.G_stiff[:, s:e], np.float64),
                               np.asarray(stats.G_flat[:, s:e], np.float64)])


def cosine_scores(stats: GradientStats) -> np.ndarray:
    """(N,) cos(c_i, val_grad) over all k eigen-coordinates (= cos(z_i, z̄_val): V is orthogonal).

    Samples with a zero gradient get cosine 0.
    """
    if stats.val_grad is None:
        raise InvalidInputError("these stats have no val_grad; re-extract with direct_opt.extract.extract_stats.")
    v = np.asarray(stats.val_grad, np.float64)
    vn = float(np.linalg.norm(v))
    if vn == 0.0:
        raise InvalidInputError("the mean validation gradient (stats.val_grad) is zero: cosine is undefined.")
    out = np.empty(stats.n)
    for s, e, c in coord_blocks(stats):
        norms = np.linalg.norm(c, axis=0)
        dots = v @ c
        with np.errstate(divide="ignore", invalid="ignore"):
            out[s:e] = np.where(norms > 0, dots / (norms * vn), 0.0)
    return out


# -------------------------------------------------------------------------------- LESS

LESS_VARIANTS = ("faithful", "mean-gradient")
LESS_FEATURES = ("adam", "sgd")


def _unit_columns(x: np.ndarray) -> np.ndarray:
    """Columns of ``x`` (k, n) scaled to unit norm (zero columns stay zero), float64."""
    x = np.asarray(x, np.float64)
    norms = np.linalg.norm(x, axis=0)
    return x / np.where(norms > 0, norms, 1.0)


def less_targets(stats: GradientStats, group_max: bool = True) -> tuple[np.ndarray, list[Any]]:
    """(k, G) mean of the unit per-example validation gradients of each validation group, and the
    G group labels (one group, label None, without ``stats.val_groups`` or with ``group_max=False``).

    mean_j cos(x, v_j) = unit(x)ᵀ (mean_j unit(v_j)), so these targets give LESS's mean cosines.
    """
    vu = _unit_columns(stats.val_coords)
    if stats.val_groups is None or not group_max:
        return vu.mean(1, keepdims=True), [None]
    labels = np.unique(stats.val_groups)
    return np.stack([vu[:, stats.val_groups == g].mean(1) for g in labels], 1), [lab.item() for lab in labels]


def _feature_blocks(stats: GradientStats, features: str) -> Iterator[tuple[int, int, np.ndarray]]:
    if features == "sgd":
        yield from coord_blocks(stats)
        return
    for s in range(0, stats.n, _CHUNK):
        e = min(stats.n, s + _CHUNK)
        yield s, e, np.asarray(stats.adam_coords[:, s:e], np.float64)


def less_group_scores(stats: GradientStats, features: str = "adam", group_max: bool = True) -> np.ndarray:
    """(N, G) LESS scores of one checkpoint: for each pool sample i and validation group g, the
    mean over the group's examples j of cos(x_i, v_j), x_i = the sample's Adam update direction
    (``features="adam"``) or its plain gradient (``"sgd"``), v_j = plain validation gradients,
    all in the same sketch. A zero feature vector scores 0."""
    targets, _ = less_targets(stats, group_max)
    out = np.empty((stats.n, targets.shape[1]))
    for s, e, x in _feature_blocks(stats, features):
        out[s:e] = _unit_columns(x).T @ targets
    return out


def _need_less_fields(inp: SelectorInputs, st: GradientStats, features: str) -> None:
    need = ("val_coords", "adam_coords") if features == "adam" else ("val_coords", "G_stiff")
    missing = [f for f in need if getattr(st, f) is None]
    if not missing:
        return
    fix = ("re-extract with `direct-opt extract --optimizer-state CHECKPOINT/optimizer.pt` or "
           "direct_opt.extract.ExtractConfig(optimizer_state=optimizer.state_dict()) "
           "(the checkpoint's Adam state, e.g. TrainState.optim_state)" if "adam_coords" in missing and
           "val_coords" not in missing else "re-extract the stats with this version of direct_opt")
    alt = ("pass features='sgd' (plain gradients, needs val_coords) or " if features == "adam" and "val_coords" not in missing
           else "")
    raise InvalidInputError(
        f"selector {inp.name!r} (variant='faithful', features={features!r}) needs stats with {missing}; these stats "
        f"lack them (extracted before they were stored, or without an optimizer state). Either {fix}, or "
        f"{alt}pass variant='mean-gradient' (the simplified LESS: cosine with the mean validation gradient)."
    )


def _check_checkpoints(inp: SelectorInputs, checkpoints: Any) -> list[tuple[GradientStats, float]]:
    try:
        pairs = [(st, real_scalar("checkpoint learning rate", lr)) for st, lr in checkpoints]
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            "checkpoints must be a sequence of (GradientStats, learning_rate) pairs, e.g. "
            f"[(stats_a, 2e-5), (stats_b, 1e-5)] ({exc}).") from None
    if not pairs:
        raise InvalidParameterError("checkpoints is empty; pass at least one (GradientStats, learning_rate) pair.")
    for i, (st, lr) in enumerate(pairs):
        if not isinstance(st, GradientStats):
            raise InvalidParameterError(f"checkpoints[{i}][0] is a {type(st).__name__}, not GradientStats.")
        if st.n != inp.n:
            raise InvalidParameterError(f"checkpoints[{i}] describes N={st.n} samples, the pool has N={inp.n}.")
        if lr <= 0:
            raise InvalidParameterError(f"checkpoints[{i}] has learning rate {lr}; weights must be > 0.")
    return pairs


@register_selector("less")
def less_selector(inp: SelectorInputs, *, variant: str = "faithful", features: str = "adam",
                  group_max: bool = True, checkpoints: Any = None) -> Pick:
    """LESS (Xia et al., 2024): top-K mean cosine of each sample's Adam update direction with the
    per-example validation gradients, max over validation groups.

    Options:
        variant: ``"faithful"`` (the paper, default) or ``"mean-gradient"`` (the simplified LESS
            of earlier versions: cos(plain g_i, mean validation gradient)).
        features: training features of ``"faithful"``: ``"adam"`` (the paper: m̂/(√v̂+ε) from
            the checkpoint's optimizer state, ``stats.adam_coords``) or ``"sgd"`` (plain gradients).
        group_max: take the max over ``stats.val_groups`` (the paper's validation tasks); False:
            one mean over all validation examples.
        checkpoints: optional [(stats_c, lr_c), ...] of the same pool at several checkpoints;
            the per-group scores are averaged with weights lr_c / Σ lr (as the public LESS code
            does) before the max over groups.
    Ties go to the lower index. Selection.scores: the (N,) LESS scores.
    """
    scores, diag, best = less_scores(inp, variant=variant, features=features, group_max=group_max,
                                     checkpoints=checkpoints)
    idx = top_k(scores, inp.k, "LESS score")
    if best is not None and diag["val_groups"] is not None:
        diag["selected_per_group"] = {str(g): int((best[idx] == i).sum()) for i, g in enumerate(diag["val_groups"])}
    return Pick(idx, {**diag, **score_summary(scores, idx)}, scores)


def less_scores(inp: SelectorInputs, *, variant: str = "faithful", features: str = "adam", group_max: bool = True,
                checkpoints: Any = None) -> tuple[np.ndarray, dict[str, Any], np.ndarray | None]:
    """(N,) LESS scores with the options of :func:`less_selector`, a JSON-safe description, and
    the (N,) index of each sample's best validation group (None for ``"mean-gradient"``)."""
    if variant not in LESS_VARIANTS:
        raise InvalidParameterError(f"variant={variant!r}; choose one of {LESS_VARIANTS}.")
    if variant == "mean-gradient":
        if features != "adam" or checkpoints is not None or group_max is not True:
            raise InvalidParameterError("variant='mean-gradient' takes no features/group_max/checkpoints options.")
        st = _need_whole_sketch(inp, "cosine scores")
        return cosine_scores(st), {"variant": variant, "score": "cos(g_i, mean val gradient) in the sketch"}, None
    if features not in LESS_FEATURES:
        raise InvalidParameterError(f"features={features!r}; choose one of {LESS_FEATURES}.")
    if inp.stats is None:
        raise inp.missing_error("stats (GradientStats with val_coords and adam_coords) for LESS scores")
    pairs = [(inp.stats, 1.0)] if checkpoints is None else _check_checkpoints(inp, checkpoints)
    total, labels = None, None
    for st, lr in pairs:
        _need_less_fields(inp, st, features)
        _, lab = less_targets(st, bool(group_max))
        if labels is not None and lab != labels:
            raise InvalidParameterError(f"the checkpoints' validation groups differ ({labels} vs {lab}).")
        labels = lab
        part = lr * less_group_scores(st, features, bool(group_max))
        total = part if total is None else total + part
    assert total is not None and labels is not None
    total /= sum(lr for _, lr in pairs)
    best = np.argmax(total, axis=1)
    diag = {"variant": variant, "features": features, "group_max": bool(group_max),
            "score": "max over validation groups of the mean cos(x_i, v_j)",
            "n_checkpoints": len(pairs), "checkpoint_lrs": [lr for _, lr in pairs] if checkpoints is not None else None,
            "val_groups": labels if labels != [None] else None}
    return total[np.arange(total.shape[0]), best], diag, best


# --------------------------------------------------------------------------- grad-norm


@register_selector("grad-norm")
def grad_norm_selector(inp: SelectorInputs) -> Pick:
    """Top-K per-sample gradient norm ``stats.grad_norms`` (full gradient, before projection)."""
    if inp.stats is None or inp.stats.grad_norms is None:
        if inp.stats is None:
            raise inp.missing_error("stats with grad_norms")
        raise InvalidInputError(
            "selector 'grad-norm' needs stats with grad_norms; these stats have none "
            "(direct_opt.extract.extract_stats stores them)."
        )
    scores = np.asarray(inp.stats.grad_norms, np.float64)
    idx = top_k(scores, inp.k, "grad_norms")
    return Pick(idx, {"score": "||g_i||", **score_summary(scores, idx)}, scores)


# ------------------------------------------------------------------------------ Taylor


def _as_h(H: np.ndarray, d: int) -> np.ndarray:
    H = np.asarray(H, np.float64)
    if H.shape not in ((d,), (d, d)):
        raise InvalidParameterError(f"H must be (d,) diagonal or (d, d) with d={d}; got {H.shape}.")
    return H


def _hmul(H: np.ndarray, x: np.ndarray) -> np.ndarray:
    """H x for H diagonal (d,) or full (d, d); x (d,) or (d, m)."""
    if H.ndim == 1:
        return H * x if x.ndim == 1 else H[:, None] * x
    return H @ x


def _check_eta(eta: float) -> float:
    if isinstance(eta, bool) or not np.isfinite(eta) or eta <= 0:
        raise InvalidParameterError(f"eta={eta!r} must be a finite step size > 0.")
    return float(eta)


def taylor_gain(g_cols: np.ndarray, g_val: np.ndarray, H: np.ndarray, eta: float, normalize: str = "sum") -> float:
    """Second-order Taylor estimate of the validation-loss *decrease* of one step.

    Δ = eta ḡᵀs − (eta²/2) sᵀ H s  ≈  L_val(θ) − L_val(θ − eta s).

    Args:
        g_cols: (d, m) gradients of the selected samples (columns).
        g_val: (d,) mean validation gradient ḡ.
        H: (d, d) validation curvature (or (d,) diagonal).
        eta: step size.
        normalize: ``"sum"`` s = Σ g_i (a step on the summed loss); ``"mean"``
            s = (1/m) Σ g_i (a step on the mean loss); ``"unit"`` s = (1/m) Σ g_i/||g_i||.
    Returns:
        Δ in loss units (positive = the validation loss goes down).
    """
    g = np.asarray(g_cols, np.float64)
    if g.ndim == 1:
        g = g[:, None]
    gv = np.asarray(g_val, np.float64)
    H = _as_h(H, g.shape[0])
    eta = _check_eta(eta)
    if normalize == "unit":
        n = np.linalg.norm(g, axis=0)
        g = g / np.where(n > 0, n, 1.0)
    if normalize not in TAYLOR_NORMALIZE:
        raise InvalidParameterError(f"normalize={normalize!r}; choose one of {TAYLOR_NORMALIZE}.")
    s = g.sum(1) / (g.shape[1] if normalize in ("mean", "unit") else 1.0)
    return float(eta * gv @ s - 0.5 * eta**2 * s @ _hmul(H, s))


def greedy_taylor(
    C: np.ndarray, g_val: np.ndarray, H: np.ndarray, eta: float, k: int, normalize: str = "mean"
) -> tuple[np.ndarray, np.ndarray, float]:
    """Greedy maximisation of Δ(S) = eta ḡᵀs − (eta²/2) sᵀHs over K-subsets S.

    Args:
        C: (d, N) per-sample gradients (columns), in coordinates where H and ḡ live.
        g_val: (d,) mean validation gradient; H: (d,) diagonal or (d, d) curvature.
        eta: step size; k: K.
        normalize: ``"mean"`` (default) scores the final K-set as one step of size eta on
            its mean gradient, i.e. ``"sum"`` with eta/K; the greedy then maximises exactly
            that final-set objective. ``"sum"``: s = Σ g_i. ``"unit"``: like ``"mean"``
            with each g_i scaled to unit norm (direction only, ignores gradient size).
    Returns:
        (order (K,) indices in pick order, gains (K,) marginal gain of each pick, Δ(S)).
        Gains sum to Δ(S). Ties go to the lower index. Cost O(d N) per step (O(d² + dN) for
        a full H), memory O(N).
    """
    d, n = C.shape
    if normalize not in TAYLOR_NORMALIZE:
        raise InvalidParameterError(f"normalize={normalize!r}; choose one of {TAYLOR_NORMALIZE}.")
    if not 1 <= k <= n:
        raise InvalidParameterError(f"k={k} must satisfy 1 <= k <= N={n}.")
    H = _as_h(H, d)
    eta = _check_eta(eta)
    gv = np.asarray(g_val, np.float64)
    dt = C.dtype if C.dtype in (np.float32, np.float64) else np.float64
    C = np.asarray(C, dt)
    colscale = np.ones(n)
    if normalize == "unit":
        norms = np.sqrt(np.einsum("ij,ij->j", C, C, dtype=np.float64))
        colscale = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
    e = eta / k if normalize in ("mean", "unit") else eta
    # per-sample terms of the scaled columns u_j = colscale_j * C_j
    lin = (gv.astype(dt) @ C).astype(np.float64) * colscale           # ḡᵀu_j
    if H.ndim == 1:
        quad = np.einsum("ij,ij->j", C, H.astype(dt)[:, None] * C, dtype=np.float64) * colscale**2
    else:
        quad = np.einsum("ij,ij->j", C, (H.astype(dt) @ C), dtype=np.float64) * colscale**2
    cross = np.zeros(n)  # sᵀ H u_j
    base = e * lin - 0.5 * e * e * quad
    taken = np.zeros(n, dtype=bool)
    order = np.empty(k, np.int64)
    gains = np.empty(k)
    for t in range(k):
        gain = base - e * e * cross
        gain[taken] = -np.inf
        j = int(np.argmax(gain))
        order[t], gains[t] = j, gain[j]
        taken[j] = True
        if t + 1 < k:
            hu = _hmul(H, C[:, j].astype(np.float64) * colscale[j])
            cross += (hu.astype(dt) @ C).astype(np.float64) * colscale
    return order, gains, float(gains.sum())


TAYLOR_STEPS = ("adam", "sgd")


def stats_taylor_terms(stats: GradientStats, step: str = "sgd") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U (k, N), ḡ_u (k,), H (k,)) in u = c/sqrt(k) coordinates: H = diag(eigvals).

    U = the per-sample step directions: ``step="sgd"`` the plain gradients
    (eigen_coords()/sqrt(k) = Vᵀ z), ``step="adam"`` the Adam update directions m̂/(√v̂+ε)
    (``adam_coords``/sqrt(k)); ḡ_u = val_grad/sqrt(k). Δ computed with these is in loss units
    (up to the JL error of the sketch) for a step θ − eta·s.
    """
    if step not in TAYLOR_STEPS:
        raise InvalidParameterError(f"step={step!r}; choose one of {TAYLOR_STEPS}.")
    C = stats.eigen_coords() if step == "sgd" else np.array(stats.adam_coords, copy=True)
    k = C.shape[0]
    if C.dtype not in (np.float32, np.float64):
        C = C.astype(np.float64)
    C *= C.dtype.type(1.0 / math.sqrt(k))
    gv = np.asarray(stats.val_grad, np.float64) / math.sqrt(k)
    lam = np.clip(np.asarray(stats.eigvals, np.float64), 0.0, None)
    return C, gv, lam


def taylor_singleton_gains(U: np.ndarray, gv: np.ndarray, lam: np.ndarray, eta: float) -> np.ndarray:
    """(N,) Δ({i}) = eta ḡᵀu_i − (eta²/2) u_iᵀ H u_i: the predicted validation-loss decrease of one
    step of size eta along sample i's direction alone (H = diag(lam))."""
    return eta * (gv @ U) - 0.5 * eta * eta * np.einsum("ij,ij->j", U, lam[:, None] * U, dtype=np.float64)


def _need_taylor_fields(inp: SelectorInputs, step: str) -> GradientStats:
    fields = ("G_stiff", "val_grad", "eigvals") + (("adam_coords",) if step == "adam" else ())
    if step == "adam" and inp.stats is not None and inp.stats.adam_coords is None:
        raise InvalidInputError(
            f"selector {inp.name!r} with step='adam' needs stats with adam_coords (the Adam update directions); "
            "these stats have none. Re-extract with direct_opt.extract.ExtractConfig(optimizer_state="
            "optimizer.state_dict()) (direct-opt extract --optimizer-state FILE), or pass step='sgd' "
            "(plain-gradient steps: the same as selector 'taylor').")
    return _need_whole_sketch(inp, "the Taylor estimate", fields)


def _taylor_pick(inp: SelectorInputs, eta: float, normalize: str, step: str) -> Pick:
    """Greedy Taylor selection with ``step`` directions (see :func:`taylor_selector`)."""
    st = _need_taylor_fields(inp, step)
    eta = _check_eta(eta)
    U, gv, lam = stats_taylor_terms(st, step)
    order, gains, total = greedy_taylor(U, gv, lam, eta, inp.k, normalize)
    e = eta / inp.k if normalize in ("mean", "unit") else eta
    cols = np.asarray(U, np.float64)  # no copy when U is float64 already
    if normalize == "unit":
        norms = np.linalg.norm(cols, axis=0)
        cols = cols / np.where(norms > 0, norms, np.inf)
    single = taylor_singleton_gains(cols, gv, lam, e)
    s = cols[:, order].sum(1) * (1.0 / inp.k if normalize in ("mean", "unit") else 1.0)
    curvature = st.config.get("curvature") if isinstance(st.config, dict) else None
    diag = {
        "eta": eta,
        "normalize": normalize,
        "step": step,
        "predicted_decrease": total,
        "linear_term": float(eta * gv @ s),
        "curvature_term": float(0.5 * eta**2 * s @ (lam * s)),
        "gain_first": float(gains[0]),
        "gain_last": float(gains[-1]),
        "n_negative_gains": int((gains < 0).sum()),
        "pick_order_head": [int(i) for i in order[:20]],
        "curvature": curvature.get("kind", "sketched validation Fisher") if isinstance(curvature, dict)
        else "sketched validation Fisher",
    }
    return Pick(order, diag, single)


@register_selector("taylor")
def taylor_selector(inp: SelectorInputs, *, eta: float = DEFAULT_TAYLOR_ETA, normalize: str = "mean") -> Pick:
    """GREATS-style: greedy max of the 2nd-order Taylor validation-loss decrease of one step.

    Δ(S) = eta ḡᵀs − (eta²/2) sᵀ H s in the sketched eigen-coordinates, s = the plain-gradient
    step of S, H = the same curvature as ``direct`` (the sketched validation Fisher, H =
    diag(eigvals) in u = eigen_coords()/sqrt(k)). See :func:`greedy_taylor` for ``normalize`` and
    :data:`DEFAULT_TAYLOR_ETA`. Selection.scores: the singleton gains Δ({i}).
    """
    return _taylor_pick(inp, eta, normalize, "sgd")
