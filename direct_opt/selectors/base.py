"""The selector registry: :class:`Selection`, :func:`select`, :func:`register_selector`.

A selector is a function ``fn(inp: SelectorInputs, **options) -> Pick`` registered under
a name. :func:`select` checks the common inputs (name, K, pool size), calls it, checks
what came back (K distinct in-range indices) and wraps it in a :class:`Selection`.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import InvalidInputError, InvalidParameterError, NonFiniteError, ShapeMismatchError, UnknownNameError
from ..registry import Entry, Registry
from ..result import _jsonable
from ..stats import GradientStats

#: The inputs a selector may ask for, in the order error messages list them.
INPUT_NAMES = ("stats", "model", "loss_fn", "pool", "reference")


@dataclass
class Selection:
    """What every selector returns.

    Attributes:
        indices: (K,) sorted int64, distinct, in [0, N).
        name: the selector's registered name.
        diagnostics: JSON-safe dict (scores summary, solver certificates, options used, ...).
        time_s: wall-clock seconds spent in the selector (scoring + choosing).
        scores: optional (N,) per-sample scores the choice was made from (None where the
            selector has no per-sample score, e.g. ``random``/``direct``; for ``taylor`` the
            marginal gain at the moment each selected sample was picked is in diagnostics).
    """

    indices: np.ndarray
    name: str
    diagnostics: dict[str, Any]
    time_s: float
    scores: np.ndarray | None = field(default=None, repr=False)

    @property
    def k(self) -> int:
        """Number of selected samples K."""
        return int(self.indices.size)

    def mask(self, n: int) -> np.ndarray:
        """(n,) boolean membership vector."""
        m = np.zeros(int(n), dtype=bool)
        m[self.indices] = True
        return m

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view (indices as a list; scores omitted)."""
        return _jsonable(
            {"name": self.name, "indices": [int(i) for i in self.indices], "diagnostics": self.diagnostics,
             "time_s": self.time_s}
        )


@dataclass
class Pick:
    """A selector function's raw answer: indices (K,), diagnostics, optional scores (N,)."""

    indices: np.ndarray
    diagnostics: dict[str, Any] = field(default_factory=dict)
    scores: np.ndarray | None = None


@dataclass
class SelectorInputs:
    """Everything :func:`select` received besides the selector's own options.

    Attributes:
        k: K, already checked (1 <= K <= N when N is known).
        n: pool size N (from stats, pool or ``n=``), None when unknown.
        stats: GradientStats of the pool at the start of annealing, or None.
        model: the network at the start of annealing (torch.nn.Module), or None.
        loss_fn: ``loss_fn(model, batch) -> (B,)`` per-sample losses, or None.
        pool: the candidates: a tensor (N, ...) or a sequence of N samples, or None.
        reference: the reference model (e.g. an EMA of the weights), or None.
        seed: seed for every random choice.
        name: the selector's name (for messages).
    """

    k: int
    n: int | None
    stats: GradientStats | None = None
    model: Any = None
    loss_fn: Callable[..., Any] | None = None
    pool: Any = None
    reference: Any = None
    seed: int = 0
    name: str = ""

    def given(self) -> list[str]:
        """Names of the inputs that were passed (not None)."""
        return [f for f in INPUT_NAMES if getattr(self, f) is not None]

    def has(self, *fields: str) -> bool:
        """True when every named input was passed."""
        return all(getattr(self, f) is not None for f in fields)

    def missing_error(self, needs: str) -> InvalidInputError:
        """The error for a selector called without what it needs.

        ``needs`` is a phrase such as ``"model, loss_fn, pool and reference"``.
        """
        got = self.given()
        got_s = "nothing" if not got else (", ".join(got) + (" only" if len(got) < len(INPUT_NAMES) else ""))
        return InvalidInputError(f"selector {self.name!r} needs {needs}; got {got_s}.")

    def require(self, *fields: str) -> None:
        """Raise InvalidInputError naming ``fields`` unless all were passed."""
        if not self.has(*fields):
            raise self.missing_error(_join(fields))


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


SelectorFn = Callable[..., Pick]


#: Registered selector functions by name (capabilities: ``options``, the keyword options the
#: function takes, ``open_options``, whether it takes ``**options``, and ``needs_stats``,
#: whether it needs GradientStats, so a harness knows whether to extract them).
SELECTORS: Registry[SelectorFn] = Registry("selector")


def register_selector(
    name: str, fn: SelectorFn | None = None, *, description: str = "", overwrite: bool = False,
    needs_stats: bool = True,
) -> Any:
    """Register ``fn(inp: SelectorInputs, **options) -> Pick`` under ``name``.

    Usable directly (``register_selector("x", fn)``) or as a decorator
    (``@register_selector("x")``). Returns ``fn``. Re-registering an existing name needs
    ``overwrite=True``. The keyword parameters of ``fn`` (after ``inp``) are its options;
    :func:`select` rejects any other option unless ``fn`` takes ``**kwargs``.
    ``needs_stats=False`` says the selector works without GradientStats (random, model-based).
    """
    if not isinstance(name, str) or not name:
        raise InvalidParameterError(f"a selector name must be a non-empty string, got {name!r}.")

    def deco(f: SelectorFn) -> SelectorFn:
        if not callable(f):
            raise InvalidParameterError(f"selector {name!r}: {f!r} is not callable.")
        params = list(inspect.signature(f).parameters.values())[1:]
        opts = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        open_ = any(p.kind is p.VAR_KEYWORD for p in params)
        desc = description or (inspect.getdoc(f) or "").split("\n")[0]
        return SELECTORS.add(name, f, description=desc, overwrite=overwrite,
                             capabilities={"options": opts, "open_options": open_, "needs_stats": bool(needs_stats)})

    return deco if fn is None else deco(fn)


def needs_stats(name: str) -> bool:
    """Whether the registered selector ``name`` needs GradientStats."""
    return bool(_entry(name).capabilities.get("needs_stats", True))


def unregister_selector(name: str) -> None:
    """Remove a registered selector (no error when absent)."""
    SELECTORS.remove(name)


def available_selectors() -> list[str]:
    """Registered selector names, sorted."""
    return SELECTORS.names()


def describe_selectors() -> dict[str, dict[str, Any]]:
    """{name: {"description", "options"}} for every registered selector."""
    return {n: {"description": d["description"], "options": list(d["capabilities"]["options"])}
            for n, d in SELECTORS.describe().items()}


def _pool_len(pool: Any) -> int:
    try:
        return int(pool.shape[0]) if hasattr(pool, "shape") else len(pool)
    except TypeError as exc:
        raise InvalidInputError(
            f"pool must be a tensor (N, ...) or a sequence of N samples; got {type(pool).__name__} without len()."
        ) from exc


def _check_k(k: Any, n: int | None) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidParameterError(f"k must be an integer, got {k!r} ({type(k).__name__}).")
    if k <= 0:
        raise InvalidParameterError(f"k={k} must be >= 1 (the number of samples to select).")
    if n is not None and k > n:
        raise InvalidParameterError(f"k={k} exceeds the pool size N={n}; choose 1 <= k <= N.")
    return int(k)


def _entry(name: str) -> Entry:
    if not isinstance(name, str) or name not in SELECTORS:
        raise UnknownNameError(f"unknown selector {name!r}; known selectors: {available_selectors()}.")
    return SELECTORS.entry(name)


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise InvalidParameterError (UnknownNameError for a bad name) for options selector ``name``
    would reject, without running it.  A selector taking open ``**options`` may carry a
    ``check_options(options)`` attribute that validates them (``direct`` does)."""
    entry = _entry(name)
    caps = entry.capabilities
    if hasattr(entry.obj, "check_options"):
        entry.obj.check_options(dict(options))
    elif not caps["open_options"]:
        unknown = sorted(set(options) - set(caps["options"]))
        if unknown:
            raise InvalidParameterError(
                f"selector {name!r} has no option(s) {unknown}; its options are {sorted(caps['options'])}."
            )


def select(
    name: str,
    k: int,
    *,
    stats: GradientStats | None = None,
    model: Any = None,
    loss_fn: Callable[..., Any] | None = None,
    pool: Any = None,
    reference: Any = None,
    seed: int = 0,
    n: int | None = None,
    **options: Any,
) -> Selection:
    """Choose K samples of the pool with the selector called ``name``.

    Args:
        name: a name from :func:`available_selectors`.
        k: K, the number of samples (1 <= K <= N).
        stats: GradientStats of the pool at the start of annealing (gradient selectors).
        model, loss_fn, pool, reference: the torch side (loss selectors): the model at the
            start of annealing, ``loss_fn(model, batch) -> (B,)``, the pool (tensor (N, ...)
            or sequence of N samples) and a reference model.
        seed: seed of every random choice (``random``, randomised solver backends).
        n: pool size, only needed when neither ``stats`` nor ``pool`` is given (``random``).
        **options: the selector's own options (see :func:`describe_selectors`).
    Returns:
        :class:`Selection` with sorted, distinct int64 indices.
    Raises:
        UnknownNameError (unknown selector), InvalidParameterError (K out of range, unknown
        option), InvalidInputError (missing inputs), ShapeMismatchError (stats/pool disagree).
    """
    entry = _entry(name)
    sizes = {}
    if stats is not None:
        if not isinstance(stats, GradientStats):
            raise InvalidInputError(f"stats must be a direct_opt.GradientStats, got {type(stats).__name__}.")
        sizes["stats"] = stats.n
    if pool is not None:
        sizes["pool"] = _pool_len(pool)
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise InvalidParameterError(f"n={n!r} must be a positive integer (the pool size).")
        sizes["n"] = int(n)
    if len(set(sizes.values())) > 1:
        raise ShapeMismatchError(f"the pool sizes disagree: {sizes}; pass stats and pool for the same samples.")
    n_pool = next(iter(sizes.values())) if sizes else None
    k = _check_k(k, n_pool)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvalidParameterError(f"seed must be an integer, got {seed!r}.")
    check_options(name, options)
    inp = SelectorInputs(k=k, n=n_pool, stats=stats, model=model, loss_fn=loss_fn, pool=pool,
                         reference=reference, seed=int(seed), name=name)
    t0 = time.perf_counter()
    pick = entry.obj(inp, **options)
    elapsed = time.perf_counter() - t0
    if not isinstance(pick, Pick):
        raise InvalidInputError(f"selector {name!r} returned {type(pick).__name__}; selectors must return a Pick.")
    idx = _check_indices(name, pick.indices, k, n_pool)
    scores = None if pick.scores is None else np.asarray(pick.scores)
    diag = _jsonable({**pick.diagnostics, "k": k, "n": n_pool, "seed": int(seed)})
    return Selection(indices=idx, name=name, diagnostics=diag, time_s=elapsed, scores=scores)


def _check_indices(name: str, indices: Any, k: int, n: int | None) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise InvalidInputError(f"selector {name!r} returned indices of shape {idx.shape} dtype {idx.dtype}; "
                                "expected a 1-D integer array.")
    idx = np.sort(idx.astype(np.int64))
    if idx.size != k or (idx.size > 1 and (np.diff(idx) == 0).any()):
        raise InvalidInputError(f"selector {name!r} returned {idx.size} indices ({np.unique(idx).size} distinct); "
                                f"expected {k} distinct.")
    if idx.size and (idx[0] < 0 or (n is not None and idx[-1] >= n)):
        raise InvalidInputError(f"selector {name!r} returned indices outside [0, {n}).")
    return idx


def top_k(scores: np.ndarray, k: int, what: str = "scores") -> np.ndarray:
    """Indices (sorted) of the K largest ``scores`` (N,); ties go to the lower index.

    Raises NonFiniteError if a score is NaN (+-Inf is allowed and ordered as usual).
    """
    s = np.asarray(scores, dtype=np.float64)
    if np.isnan(s).any():
        i = int(np.flatnonzero(np.isnan(s))[0])
        raise NonFiniteError(f"{what}[{i}] is NaN; fix or drop that sample before selecting.")
    order = np.argsort(-s, kind="stable")[:k]
    return np.sort(order).astype(np.int64)


def score_summary(scores: np.ndarray, idx: np.ndarray) -> dict[str, float]:
    """Mean/min/max of the scores of the pool and of the selection (JSON-safe)."""
    s = np.asarray(scores, dtype=np.float64)
    sel = s[idx]
    return {
        "score_pool_mean": float(s.mean()), "score_pool_min": float(s.min()), "score_pool_max": float(s.max()),
        "score_selected_mean": float(sel.mean()), "score_selected_min": float(sel.min()),
        "score_selected_max": float(sel.max()),
    }
