"""Fitting a loss law to observed curves: robust (Huber) L-BFGS-B with bounds and several
starts, goodness of fit, and a residual block bootstrap for intervals.

    law = fit([dict(steps=steps, lrs=lrs, losses=losses), ...], law="multi-power")
    law.fit_info["goodness"]      # {"r2", "mae", "max_error", "n_points"} over the fitted points
    law.param_intervals(0.9)      # bootstrap percentile intervals
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np
from scipy.optimize import minimize

from ..errors import InvalidInputError, InvalidParameterError
from .curves import Curve, as_curve
from .laws import LossLaw, Param, get_law, warmup_length

#: L-BFGS-B iterations every start gets before the two best are run to convergence
SCOUT_ITERS = 40


def goodness(observed: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """R², mean and max absolute error of ``predicted`` against ``observed`` (same shape)."""
    y, p = np.asarray(observed, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    err = p - y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(err ** 2)) / ss_tot if ss_tot > 0 else float("nan")
    return {"r2": r2, "mae": float(np.mean(np.abs(err))), "max_error": float(np.max(np.abs(err))),
            "n_points": int(y.size)}


def _to_u(p: Param, v: float) -> float:
    if p.transform == "log":
        return math.log(v)
    if p.transform == "log1m":
        return math.log(1.0 - v)
    return v


def _from_u(p: Param, u: float) -> float:
    if p.transform == "log":
        return math.exp(u)
    if p.transform == "log1m":
        return 1.0 - math.exp(u)
    return u


def _dtheta_du(p: Param, v: float) -> float:
    """dθ/du of the fitter's transform at θ = v."""
    return v if p.transform == "log" else (v - 1.0 if p.transform == "log1m" else 1.0)


def _u_bounds(p: Param) -> tuple[float, float]:
    a, b = _to_u(p, p.lo), _to_u(p, p.hi)
    return (min(a, b), max(a, b))


class _Data:
    """The fitted points of every curve: normalised LRs, 0-based indices, losses, sizes."""

    def __init__(self, curves: Sequence[Curve], lr_scale: float, n_scale: float | None, min_step: int | None) -> None:
        self.items: list[tuple[np.ndarray, np.ndarray, np.ndarray, float | None]] = []
        for c in curves:
            first = max(warmup_length(c.lrs) + 1, min_step or 1)
            keep = c.steps >= first
            if not np.any(keep):
                raise InvalidInputError(f"curve {c.name!r} has no loss measured after step {first - 1} (the warmup / "
                                        "min_step); log the loss later in training or lower min_step.")
            n = None if c.model_size is None or n_scale is None else c.model_size / n_scale
            self.items.append((c.lrs / lr_scale, c.steps[keep] - 1, c.losses[keep], n))
        self.y = np.concatenate([it[2] for it in self.items])
        self.prepared: dict[type, list[Any]] = {}

    def _prep(self, cls: type[LossLaw]) -> list[Any]:
        if cls not in self.prepared:
            self.prepared[cls] = [cls.prepare(eta, idx) for eta, idx, _, _ in self.items]
        return self.prepared[cls]

    def predict(self, cls: type[LossLaw], theta: np.ndarray) -> np.ndarray:
        return np.concatenate([cls.evaluate(theta, p, it[3]) for p, it in zip(self._prep(cls), self.items)])

    def jacobian(self, cls: type[LossLaw], theta: np.ndarray) -> np.ndarray | None:
        js = [cls.jacobian(theta, p, it[3]) for p, it in zip(self._prep(cls), self.items)]
        return None if any(j is None for j in js) else np.concatenate(js)


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _solve(cls: type[LossLaw], data: _Data, y: np.ndarray, free: list[int], theta0: np.ndarray,
           starts: list[np.ndarray], delta: float, maxiter: int) -> tuple[np.ndarray, float]:
    """Best L-BFGS-B solution over ``starts`` (vectors in the fitter's transformed space)."""
    params = cls.PARAMS
    bounds = [_u_bounds(params[i]) for i in free]

    def theta_of(u: np.ndarray) -> np.ndarray:
        th = theta0.copy()
        for j, i in enumerate(free):
            th[i] = _from_u(params[i], float(u[j]))
        return th

    def objective(u: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            pred = data.predict(cls, theta_of(u))
        if not np.all(np.isfinite(pred)):
            return 1e30
        return float(np.mean(_huber(pred - y, delta))) / (delta * delta)

    def objective_grad(u: np.ndarray) -> tuple[float, np.ndarray]:
        th = theta_of(u)
        with np.errstate(all="ignore"):
            pred = data.predict(cls, th)
            jac = data.jacobian(cls, th)
        if not np.all(np.isfinite(pred)) or jac is None or not np.all(np.isfinite(jac)):
            return 1e30, np.zeros(len(free))
        r = pred - y
        f = float(np.mean(_huber(r, delta))) / (delta * delta)
        dr = np.clip(r, -delta, delta) / (r.size * delta * delta)  # ∂f/∂pred
        dth = np.array([_dtheta_du(params[i], th[i]) for i in free])
        return f, (dr @ jac[:, free]) * dth

    analytic = data.jacobian(cls, theta0) is not None
    fun, jac_opt = (objective_grad, True) if analytic else (objective, None)

    # every start runs a short while; the two best continue to convergence
    short = [minimize(fun, u0, jac=jac_opt, method="L-BFGS-B", bounds=bounds, options={"maxiter": SCOUT_ITERS})
             for u0 in starts]
    short = sorted(short, key=lambda r: r.fun)[:2] if len(short) > 1 else short
    best_u, best_f = None, math.inf
    for r0 in short:
        res = minimize(fun, r0.x, jac=jac_opt, method="L-BFGS-B", bounds=bounds, options={"maxiter": maxiter})
        if res.fun < best_f:
            best_u, best_f = res.x, float(res.fun)
    if best_u is None or not math.isfinite(best_f) or best_f >= 1e30:
        raise InvalidInputError(f"the {cls.name!r} law could not be fitted (every start gave a non-finite loss); "
                                "check the curves (units, steps) or try another law.")
    return theta_of(best_u), best_f


def fit(curves: Sequence[Any], law: str = "multi-power", *, model_size: float | None = None, n_starts: int = 8,
        seed: int = 0, huber_delta: float = 1e-3, min_step: int | None = None, bootstrap: int = 32,
        fixed: dict[str, float] | None = None, maxiter: int = 500) -> LossLaw:
    """Fit ``law`` to one or more observed curves; returns the fitted :class:`LossLaw`.

    Args:
        curves: :class:`Curve` objects, dicts ``{"lrs": (T,), "steps": (P,), "losses": (P,)}``
            (optional ``name``, ``model_size``) or curve file paths.
        law: a name from :func:`available_laws`.
        model_size: N for curves that do not carry one (forward-momentum law). With a single
            size the N term is not identifiable: B is held at 0 (listed in ``law.fixed``).
        n_starts: L-BFGS-B starts: the law's default start plus seeded uniform draws in the
            (log-)bounds; the best objective wins.
        huber_delta: Huber threshold on residuals, in loss units.
        min_step: fit only points at steps >= this (default: after each curve's warmup).
        bootstrap: residual block-bootstrap refits (0: none) for ``param_intervals`` /
            ``predict_interval``; each refit starts from the best fit.
        fixed: parameters held at given values.
    Raises:
        InvalidInputError / InvalidParameterError on empty or bad curves and bad settings.
    """
    cls = get_law(law)
    if isinstance(curves, (Curve, dict)) or not isinstance(curves, Sequence) or isinstance(curves, str):
        curves = [curves]
    cs = [as_curve(c) for c in curves]
    cs = [as_curve(c, model_size=model_size) if c.model_size is None and model_size is not None else c for c in cs]
    if not cs:
        raise InvalidInputError("fit() needs at least one curve.")
    if not (isinstance(n_starts, int) and n_starts >= 1) or not (isinstance(bootstrap, int) and bootstrap >= 0):
        raise InvalidParameterError(f"n_starts={n_starts!r} must be >= 1 and bootstrap={bootstrap!r} >= 0 (integers).")
    if not (math.isfinite(huber_delta) and huber_delta > 0):
        raise InvalidParameterError(f"huber_delta={huber_delta!r} must be > 0.")
    t0 = time.perf_counter()
    lr_scale = float(max(c.lrs.max() for c in cs))
    sizes = sorted({c.model_size for c in cs if c.model_size is not None})
    fixed = dict(fixed or {})
    n_scale = None
    if cls.uses_model_size:
        if any(c.model_size is None for c in cs):
            raise InvalidInputError(f"the {law!r} law needs the model size of every curve: pass model_size=N "
                                    "(or set it on each curve).")
        n_scale = float(sizes[0])
        if len(sizes) == 1:  # the size term is a constant: not identifiable
            fixed.setdefault("B", 0.0)
            fixed.setdefault("alpha_N", next(p.init for p in cls.PARAMS if p.name == "alpha_N"))
    names = [p.name for p in cls.PARAMS]
    bad = sorted(set(fixed) - set(names))
    if bad:
        raise InvalidParameterError(f"fixed={sorted(fixed)}: unknown parameter(s) {bad}; {law!r} has {names}.")
    data = _Data(cs, lr_scale, n_scale, min_step)
    y = data.y
    theta0 = np.array([fixed.get(p.name, p.init) for p in cls.PARAMS])
    theta0[names.index("L0")] = fixed.get("L0", max(0.0, float(y.min()) - 0.5 * float(np.ptp(y)) - 0.1))
    free = [i for i, n in enumerate(names) if n not in fixed]
    rng = np.random.default_rng(seed)
    ub = [_u_bounds(cls.PARAMS[i]) for i in free]
    starts = [np.clip([_to_u(cls.PARAMS[i], theta0[i]) for i in free], [b[0] for b in ub], [b[1] for b in ub])]
    for _ in range(n_starts - 1):
        u = np.array([rng.uniform(*b) for b in ub])
        if "L0" not in fixed:  # L0 is bounded by the data: draw it below the smallest loss
            u[free.index(names.index("L0"))] = rng.uniform(0.0, float(y.min()))
        starts.append(u)
    theta, obj = _solve(cls, data, y, free, theta0, starts, huber_delta, maxiter)
    pred = data.predict(cls, theta)
    boot: list[np.ndarray] = []
    if bootstrap:
        resid = y - pred
        u_best = np.array([_to_u(cls.PARAMS[i], theta[i]) for i in free])
        lo = [b[0] for b in ub]
        hi = [b[1] for b in ub]
        u_best = np.clip(u_best, lo, hi)
        for _ in range(bootstrap):
            y_star = pred + _block_resample(resid, [it[2].size for it in data.items], rng)
            th, _ = _solve(cls, data, y_star, free, theta, [u_best], huber_delta, maxiter)
            boot.append(th)
    per_curve = {}
    a = 0
    for c, (_, idx, yc, _) in zip(cs, data.items):
        per_curve[c.name] = goodness(yc, pred[a:a + yc.size])
        a += yc.size
    info = {
        "curves": [{"name": c.name, "total_steps": c.total_steps, "n_points": int(it[2].size),
                    "model_size": c.model_size, "schedule": c.schedule} for c, it in zip(cs, data.items)],
        "goodness": goodness(y, pred), "per_curve": per_curve, "objective": obj,
        "settings": {"n_starts": n_starts, "seed": seed, "huber_delta": huber_delta, "min_step": min_step,
                     "bootstrap": bootstrap, "fixed": fixed, "maxiter": maxiter},
        "time_s": time.perf_counter() - t0,
    }
    params = dict(zip(names, (float(v) for v in theta)))
    return cls(params, lr_scale=lr_scale, model_size=sizes[0] if len(sizes) == 1 else None, n_scale=n_scale,
               fixed=sorted(fixed), fit_info=info, bootstrap=np.array(boot) if boot else None)


def _block_resample(resid: np.ndarray, sizes: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Moving-block bootstrap of residuals within each curve (block length ≈ √points):
    keeps the residuals' autocorrelation, which plain resampling would destroy."""
    out, a = [], 0
    for n in sizes:
        r = resid[a:a + n]
        a += n
        b = max(1, int(round(math.sqrt(n))))
        starts = rng.integers(0, n - b + 1, size=int(math.ceil(n / b)))
        out.append(np.concatenate([r[s:s + b] for s in starts])[:n])
    return np.concatenate(out)
