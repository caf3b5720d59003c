"""Loss laws: the loss after every step predicted from the learning-rate schedule alone.

Every law maps a per-step schedule η_1..η_T to L(t), t = 1..T. Shared building blocks
(η in units of ``lr_scale``, the largest LR of the curves a law was fitted on):

* forward area  S1(t) = Σ_{i<=t} η_i (warmup included, so it is S1 + S_W of the
  multi-power-law paper);
* decrements    Δ_k = η_{k-1} - η_k for steps k after the warmup (the leading strictly
  increasing steps), 0 before; increases after the warmup count as negative decrements.

The laws (each from its paper's definitions):

* ``momentum`` (Tissue et al. 2024): L = L0 + A·S1^(-α) - C·S2,
  S2(t) = Σ_{i<=t} m_i, m_i = λ·m_{i-1} + Δ_i — an O(T) recursion of Σ_i Σ_{k<=i} Δ_k λ^(i-k).
* ``forward-momentum`` (Wang et al. 2025): L = L0 + A·S1^(-α_S) + B·N^(-α_N) - C·M,
  M(t) = Σ_{i<=t} m̂_i / (√v̂_i + ε), the Adam-style bias-corrected first/second moments of
  Δ (β1 = 0.9, β2 = 0.999, ε = 1e-8); N = model size in units of ``n_scale``.
* ``multi-power`` (Luo et al. 2025): L = L0 + A·S1^(-α) - LD(t),
  LD(t) = B·Σ_{k<=t} Δ_k·G(η_k^(-γ)·S_k(t)), S_k(t) = Σ_{τ=k..t} η_τ, G(x) = 1 - (C·x + 1)^(-β).
  Evaluated vectorised over (points × decrements) in chunks; see :func:`multi_power_ld`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from scipy.signal import lfilter

from ..errors import InvalidInputError, InvalidParameterError
from ..registry import Registry
from ..stats import write_text_atomic
from .schedules import as_lrs

LAW_FORMAT = "direct_opt.loss_law"
LAW_VERSION = 1
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
#: (evaluation points × LR decrements) up to which the multi-power LD sum is computed exactly
LD_EXACT_BUDGET = 20_000_000
#: above the budget, decrements are merged into about this many groups (see multi_power_ld)
LD_GROUPS = 1024
_CHUNK = 2_000_000  # matrix elements per vectorised block


# ----------------------------------------------------------------------------- building blocks
def warmup_length(eta: np.ndarray) -> int:
    """Number of leading steps up to the first peak (1 if the LR never rises): the warmup."""
    d = np.diff(eta)
    stop = np.flatnonzero(d <= 0)
    return int(stop[0] + 1) if stop.size else int(eta.size)


def forward_area(eta: np.ndarray) -> np.ndarray:
    """S1(t) = Σ_{i<=t} η_i for t = 1..T: (T,)."""
    return np.cumsum(eta)


def decrements(eta: np.ndarray) -> np.ndarray:
    """Δ (T,): Δ_k = η_{k-1} - η_k for steps after the warmup, 0 during it."""
    out = np.zeros_like(eta)
    w = warmup_length(eta)
    out[w:] = eta[w - 1:-1] - eta[w:]
    return out


def momentum_area(eta: np.ndarray, lam: float) -> np.ndarray:
    """S2(t) = Σ_{i<=t} Σ_{k<=i} Δ_k λ^(i-k) (Tissue et al.), by the O(T) recursion: (T,)."""
    m = lfilter([1.0], [1.0, -float(lam)], decrements(eta))
    return np.cumsum(m)


def adam_momentum(eta: np.ndarray, betas: tuple[float, float] = ADAM_BETAS, eps: float = ADAM_EPS) -> np.ndarray:
    """M(t) = Σ_{i<=t} m̂_i / (√v̂_i + ε) over the decrements Δ (Wang et al.): (T,).

    m_i = β1 m_{i-1} + (1-β1) Δ_i, v_i = β2 v_{i-1} + (1-β2) Δ_i², bias-corrected by
    1 - β^i with i counted from the first step of training.
    """
    b1, b2 = betas
    d = decrements(eta)
    m = lfilter([1.0 - b1], [1.0, -b1], d)
    v = lfilter([1.0 - b2], [1.0, -b2], d * d)
    i = np.arange(1, eta.size + 1, dtype=np.float64)
    m_hat = m / -np.expm1(i * math.log(b1))
    v_hat = np.maximum(v, 0.0) / -np.expm1(i * math.log(b2))
    return np.cumsum(m_hat / (np.sqrt(v_hat) + eps))


def _g(x: np.ndarray, c: float, beta: float) -> np.ndarray:
    """G(x) = 1 - (C x + 1)^(-β), computed stably."""
    return -np.expm1(-beta * np.log1p(c * x))


def multi_power_ld(eta: np.ndarray, idx: np.ndarray, B: float, C: float, beta: float, gamma: float) -> np.ndarray:
    """LD(t) of the multi-power law at 0-based step indices ``idx`` (P,): (P,).

    Only steps with a non-zero decrement contribute. With P points and D such steps the sum
    is exact when P·D <= :data:`LD_EXACT_BUDGET` (vectorised in blocks; a final loss alone is
    O(T)). Beyond that the decrements are split into about :data:`LD_GROUPS` consecutive
    groups: the group holding t is summed exactly, every earlier group as one term with its
    summed decrement and |Δ|-weighted mean η_k^(-γ) and S_{k}-offset — exact for sparse
    (step-like) decays, a smooth-function approximation otherwise (relative error well below
    1e-3 of LD on the tests' long cosine schedules).
    """
    idx = np.asarray(idx, dtype=np.int64)
    delta = decrements(eta)
    ks = np.flatnonzero(delta)
    out = np.zeros(idx.size)
    if ks.size == 0 or idx.size == 0:
        return out
    cum = np.cumsum(eta)
    cum_prev = cum - eta  # S_k(t) = cum[t] - cum_prev[k]
    tiny = 1e-12 * max(float(eta.max()), 1e-300)
    eg = np.maximum(eta, tiny) ** (-gamma)
    if idx.size * ks.size <= LD_EXACT_BUDGET or ks.size <= LD_GROUPS:
        _ld_terms(out, idx, cum, ks, delta[ks], eg[ks], cum_prev[ks], C, beta)
        return B * out
    groups = np.array_split(ks, LD_GROUPS)
    starts = np.array([g[0] for g in groups])
    w = [np.abs(delta[g]) for g in groups]
    g_delta = np.array([delta[g].sum() for g in groups])
    g_eg = np.array([np.average(eg[g], weights=wi) for g, wi in zip(groups, w)])
    g_cp = np.array([np.average(cum_prev[g], weights=wi) for g, wi in zip(groups, w)])
    cur = np.searchsorted(starts, idx, side="right") - 1  # group holding t (-1: before any decrement)
    size = max(g.size for g in groups)
    members = np.full((len(groups), size), -1, dtype=np.int64)
    for j, g in enumerate(groups):
        members[j, :g.size] = g
    step = max(1, _CHUNK // (len(groups) + size))
    for a in range(0, idx.size, step):
        t, c = idx[a:a + step], cur[a:a + step]
        before = np.arange(len(groups))[None, :] < c[:, None]
        x = np.maximum(g_eg[None, :] * (cum[t][:, None] - g_cp[None, :]), 0.0)
        merged = np.where(before, g_delta[None, :] * _g(x, C, beta), 0.0).sum(axis=1)
        k = members[np.maximum(c, 0)]
        ok = (k >= 0) & (k <= t[:, None]) & (c[:, None] >= 0)
        kk = np.where(ok, k, 0)
        x = np.maximum(eg[kk] * (cum[t][:, None] - cum_prev[kk]), 0.0)
        own = np.where(ok, delta[kk] * _g(x, C, beta), 0.0).sum(axis=1)
        out[a:a + step] = merged + own
    return B * out


def _ld_terms(out: np.ndarray, idx: np.ndarray, cum: np.ndarray, ks: np.ndarray, d: np.ndarray, eg: np.ndarray,
              cp: np.ndarray, C: float, beta: float) -> None:
    """out[p] = Σ_{k in ks, k <= idx[p]} d_k·G(eg_k·(cum[idx[p]] - cp_k)), in blocks."""
    step = max(1, _CHUNK // ks.size)
    for a in range(0, idx.size, step):
        t = idx[a:a + step]
        x = np.maximum(eg[None, :] * (cum[t][:, None] - cp[None, :]), 0.0)
        out[a:a + step] = np.where(ks[None, :] <= t[:, None], d[None, :] * _g(x, C, beta), 0.0).sum(axis=1)


# ----------------------------------------------------------------------------- the law objects
@dataclass(frozen=True)
class Param:
    """One law parameter: bounds, how the fitter moves it (``lin``, ``log``, ``log1m`` = log(1-x))
    and a default starting value."""

    name: str
    lo: float
    hi: float
    transform: str = "lin"
    init: float = 1.0


LAWS: Registry[type] = Registry("loss law")


class LossLaw:
    """A fitted loss law: ``predict(schedule) -> (T,)`` loss after every step.

    Build one with :func:`direct_opt.schedule.fit` (or from known ``params``). Attributes:
    ``params`` (name -> value), ``lr_scale`` (LRs are divided by it before the law sees them),
    ``n_scale`` / ``model_size`` (model sizes, forward-momentum law), ``fixed`` (parameters
    held at their value during the fit), ``fit_info`` (data, goodness of fit, settings),
    ``bootstrap`` ((B, n_params) refitted parameters, for intervals).
    """

    name: ClassVar[str] = ""
    PARAMS: ClassVar[tuple[Param, ...]] = ()
    uses_model_size: ClassVar[bool] = False

    def __init__(self, params: Mapping[str, float], *, lr_scale: float = 1.0, model_size: float | None = None,
                 n_scale: float | None = None, fixed: Sequence[str] = (), fit_info: Mapping[str, Any] | None = None,
                 bootstrap: Any = None) -> None:
        names = [p.name for p in self.PARAMS]
        missing = [n for n in names if n not in params]
        extra = sorted(set(params) - set(names))
        if missing or extra:
            raise InvalidParameterError(f"law {self.name!r} takes parameters {names}; missing {missing}, unknown {extra}.")
        vals = [float(params[n]) for n in names]
        if not all(math.isfinite(v) for v in vals):
            raise InvalidParameterError(f"law {self.name!r}: parameters must be finite, got {dict(params)}.")
        if not (math.isfinite(lr_scale) and lr_scale > 0):
            raise InvalidParameterError(f"lr_scale={lr_scale!r} must be > 0.")
        self.params = dict(zip(names, vals))
        self.lr_scale = float(lr_scale)
        self.model_size = None if model_size is None else float(model_size)
        self.n_scale = None if n_scale is None else float(n_scale)
        self.fixed = tuple(fixed)
        self.fit_info = dict(fit_info or {})
        self.bootstrap = None if bootstrap is None or len(bootstrap) == 0 else np.asarray(bootstrap, dtype=np.float64)

    # -- law-specific ------------------------------------------------------------------
    @classmethod
    def prepare(cls, eta: np.ndarray, idx: np.ndarray) -> Any:
        """Everything about one schedule that does not depend on the parameters (cached by the fitter)."""
        return forward_area(eta)[idx], eta, idx

    @classmethod
    def evaluate(cls, theta: np.ndarray, prepared: Any, n: float | None) -> np.ndarray:
        """Predicted loss at the prepared points for parameters ``theta`` (in :attr:`PARAMS` order)."""
        raise NotImplementedError

    @classmethod
    def jacobian(cls, theta: np.ndarray, prepared: Any, n: float | None) -> np.ndarray | None:
        """(P, n_params) derivative of :meth:`evaluate` in θ, or None (the fitter then uses finite differences)."""
        return None

    @classmethod
    def curve(cls, theta: np.ndarray, eta: np.ndarray, idx: np.ndarray, n: float | None) -> np.ndarray:
        """Predicted loss at 0-based steps ``idx`` for normalised LRs ``eta`` and parameters
        ``theta``; ``n`` = model size / n_scale (or None)."""
        return cls.evaluate(theta, cls.prepare(eta, idx), n)

    # -- public API --------------------------------------------------------------------
    @property
    def theta(self) -> np.ndarray:
        return np.array([self.params[p.name] for p in self.PARAMS])

    def _n(self, model_size: float | None) -> float | None:
        if not self.uses_model_size:
            return None
        n = self.model_size if model_size is None else float(model_size)
        if n is None:
            raise InvalidParameterError(f"law {self.name!r} was fitted on several model sizes; pass model_size=N.")
        if not (math.isfinite(n) and n > 0):
            raise InvalidParameterError(f"model_size={model_size!r} must be a positive parameter count.")
        if "B" in self.fixed and self.model_size is not None and not math.isclose(n, self.model_size, rel_tol=1e-9):
            raise InvalidParameterError(
                f"law {self.name!r} was fitted on one model size (N={self.model_size:g}), so it cannot predict the loss "
                f"level at N={n:g}; fit it on curves of >= 2 sizes. (Under this law the best schedule does not "
                "depend on N, so optimize() with the fitted size still answers the schedule question.)")
        return n / (self.n_scale or 1.0)

    def _prep(self, schedule: Any, steps: Any) -> tuple[np.ndarray, np.ndarray]:
        eta = as_lrs(schedule) / self.lr_scale
        if steps is None:
            return eta, np.arange(eta.size)
        s = np.asarray(steps)
        if s.ndim != 1 or s.size == 0 or np.any(s != np.round(s)) or s.min() < 1 or s.max() > eta.size:
            raise InvalidInputError(f"steps must be 1-based integers in 1..T={eta.size}.")
        return eta, s.astype(np.int64) - 1

    def predict(self, schedule: Any, steps: Any = None, *, model_size: float | None = None) -> np.ndarray:
        """Predicted loss (T,) after every step of ``schedule`` (a schedule object, its dict or a
        per-step LR array), or (P,) at the 1-based ``steps`` only."""
        eta, idx = self._prep(schedule, steps)
        return self.curve(self.theta, eta, idx, self._n(model_size))

    def final_loss(self, schedule: Any, *, model_size: float | None = None) -> float:
        """Predicted loss after the last step (O(T))."""
        eta = as_lrs(schedule) / self.lr_scale
        return float(self.curve(self.theta, eta, np.array([eta.size - 1]), self._n(model_size))[0])

    def predict_interval(self, schedule: Any, steps: Any = None, *, level: float = 0.9,
                         model_size: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Bootstrap percentile band (lo, hi) of the prediction; needs a fit with bootstrap > 0."""
        boot = self._boot(level)
        eta, idx = self._prep(schedule, steps)
        n = self._n(model_size)
        preds = np.stack([self.curve(th, eta, idx, n) for th in boot])
        q = (1 - level) / 2
        return np.quantile(preds, q, axis=0), np.quantile(preds, 1 - q, axis=0)

    def param_intervals(self, level: float = 0.9) -> dict[str, tuple[float, float]]:
        """Bootstrap percentile interval of every parameter."""
        boot = self._boot(level)
        q = (1 - level) / 2
        return {p.name: (float(np.quantile(boot[:, i], q)), float(np.quantile(boot[:, i], 1 - q)))
                for i, p in enumerate(self.PARAMS)}

    def _boot(self, level: float) -> np.ndarray:
        if not 0 < level < 1:
            raise InvalidParameterError(f"level={level} must lie in (0, 1).")
        if self.bootstrap is None:
            raise InvalidParameterError(f"law {self.name!r} has no bootstrap refits; fit it with bootstrap > 0.")
        return self.bootstrap

    def summary(self) -> str:
        """One line: law, parameters and the goodness of fit."""
        ps = ", ".join(f"{k}={v:.4g}" for k, v in self.params.items() if k not in self.fixed)
        g = self.fit_info.get("goodness", {})
        gs = f"; R²={g['r2']:.4f} MAE={g['mae']:.4g} max={g['max_error']:.4g}" if g else ""
        return f"{self.name}: {ps}{gs}"

    # -- JSON --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": LAW_FORMAT, "version": LAW_VERSION, "law": self.name, "params": dict(self.params),
                "lr_scale": self.lr_scale, "model_size": self.model_size, "n_scale": self.n_scale,
                "fixed": list(self.fixed), "fit": self.fit_info,
                "bootstrap": None if self.bootstrap is None else self.bootstrap.tolist()}

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(p, json.dumps(self.to_dict(), indent=1))
        return p

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.summary()}>"


def law_from_dict(d: Mapping[str, Any]) -> LossLaw:
    """Rebuild a law from :meth:`LossLaw.to_dict` output."""
    if d.get("format") != LAW_FORMAT:
        raise InvalidInputError(f"not a loss-law record (format {d.get('format')!r}, expected {LAW_FORMAT!r}).")
    if int(d.get("version", 0)) > LAW_VERSION:
        raise InvalidInputError(f"loss-law record version {d.get('version')} is newer than this direct_opt reads "
                                f"({LAW_VERSION}); upgrade direct_opt.")
    cls = LAWS.get(d["law"])
    return cls(d["params"], lr_scale=d.get("lr_scale", 1.0), model_size=d.get("model_size"),
               n_scale=d.get("n_scale"), fixed=d.get("fixed", ()), fit_info=d.get("fit"),
               bootstrap=d.get("bootstrap"))


def load_law(path: str | Path) -> LossLaw:
    """Read a law saved with :meth:`LossLaw.save`."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"law file {p} does not exist (write one with fit(...).save(path) or "
                                "`direct-opt schedule fit --out`).")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{p} is not JSON ({exc}).") from None
    return law_from_dict(d)


@LAWS.register("momentum", description="Tissue et al. 2024: L0 + A·S1^-α - C·S2 (annealing area with decay λ)",
               capabilities={"model_size": False, "peak_lr": False})
class MomentumLaw(LossLaw):
    """Momentum law: L = L0 + A·S1^(-α) - C·S2, S2 the λ-discounted annealing area."""

    name = "momentum"
    PARAMS = (Param("L0", 0.0, 1e3, "lin", 1.0), Param("A", 1e-4, 1e3, "log", 0.5),
              Param("alpha", 0.01, 3.0, "lin", 0.5), Param("C", 1e-6, 1e3, "log", 0.1),
              Param("lam", 0.5, 1 - 1e-6, "log1m", 0.99))

    @classmethod
    def evaluate(cls, theta, prepared, n):
        L0, A, alpha, C, lam = theta
        s1, eta, idx = prepared
        return L0 + A * s1 ** (-alpha) - C * momentum_area(eta, lam)[idx]


@LAWS.register("forward-momentum",
               description="Wang et al. 2025: L0 + A·S1^-α_S + B·N^-α_N - C·M (Adam-style annealing momentum)",
               capabilities={"model_size": True, "peak_lr": False})
class ForwardMomentumLaw(LossLaw):
    """Forward–momentum law: L = L0 + A·S1^(-α_S) + B·N^(-α_N) - C·M across model sizes N."""

    name = "forward-momentum"
    uses_model_size = True
    PARAMS = (Param("L0", 0.0, 1e3, "lin", 1.0), Param("A", 1e-4, 1e3, "log", 0.5),
              Param("alpha_S", 0.01, 3.0, "lin", 0.5), Param("B", 1e-6, 1e3, "log", 0.1),
              Param("alpha_N", 0.01, 3.0, "lin", 0.3), Param("C", 1e-8, 1e2, "log", 1e-3))

    @classmethod
    def prepare(cls, eta, idx):
        return forward_area(eta)[idx], adam_momentum(eta)[idx]

    @classmethod
    def evaluate(cls, theta, prepared, n):
        L0, A, a_s, B, a_n, C = theta
        s1, m = prepared
        size_term = 0.0 if n is None else B * n ** (-a_n)
        return L0 + A * s1 ** (-a_s) + size_term - C * m


@LAWS.register("multi-power",
               description="Luo et al. 2025: L0 + A·(S1+S_W)^-α - LD(t), LD a sum of power-law saturations",
               capabilities={"model_size": False, "peak_lr": False})
class MultiPowerLaw(LossLaw):
    """Multi-power law: L = L0 + A·S1^(-α) - B·Σ_k Δ_k·(1 - (C·η_k^(-γ)·S_k(t) + 1)^(-β))."""

    name = "multi-power"
    PARAMS = (Param("L0", 0.0, 1e3, "lin", 1.0), Param("A", 1e-4, 1e3, "log", 0.5),
              Param("alpha", 0.01, 3.0, "lin", 0.5), Param("B", 1e-4, 1e4, "log", 1.0),
              Param("C", 1e-4, 1e4, "log", 1.0), Param("beta", 0.01, 5.0, "lin", 0.5),
              Param("gamma", 0.0, 1.5, "lin", 0.5))

    @classmethod
    def prepare(cls, eta, idx):
        """S1 at the points and, when it fits the exact budget, the (P, D) matrix S_k(t) (0 where
        k > t) with the decrements Δ_k and log η_k of the D decrement steps."""
        s1 = forward_area(eta)[idx]
        delta = decrements(eta)
        ks = np.flatnonzero(delta)
        if idx.size * ks.size > LD_EXACT_BUDGET:
            return s1, eta, idx, None
        cum = np.cumsum(eta)
        smat = np.where(ks[None, :] <= idx[:, None], cum[idx][:, None] - (cum - eta)[ks][None, :], 0.0)
        tiny = 1e-12 * max(float(eta.max()), 1e-300)
        return s1, eta, idx, (np.maximum(smat, 0.0), delta[ks], np.log(np.maximum(eta[ks], tiny)))

    @classmethod
    def evaluate(cls, theta, prepared, n):
        L0, A, alpha, B, C, beta, gamma = theta
        s1, eta, idx, exact = prepared
        if exact is None:
            ld = multi_power_ld(eta, idx, B, C, beta, gamma)
        else:
            smat, d, log_eta = exact
            ld = B * (_g(np.exp(-gamma * log_eta)[None, :] * smat, C, beta) @ d)
        return L0 + A * s1 ** (-alpha) - ld

    @classmethod
    def jacobian(cls, theta, prepared, n):
        L0, A, alpha, B, C, beta, gamma = theta
        s1, _, _, exact = prepared
        if exact is None:
            return None
        smat, d, log_eta = exact
        x = np.exp(-gamma * log_eta)[None, :] * smat
        lz = np.log1p(C * x)
        zb = np.exp(-beta * lz)  # (C x + 1)^(-β)
        dgdc = beta * zb * x / (1.0 + C * x)  # ∂G/∂C
        pw = s1 ** (-alpha)
        return np.stack([np.ones_like(s1), pw, -A * pw * np.log(s1), -((1.0 - zb) @ d), -B * (dgdc @ d),
                         -B * ((zb * lz) @ d), B * C * (dgdc @ (d * log_eta))], axis=1)


def available_laws() -> list[str]:
    """Names of the registered loss laws."""
    return LAWS.names()


def get_law(name: str) -> type:
    """The law class registered as ``name`` (UnknownNameError lists the known ones)."""
    return LAWS.get(name)
