"""Plotting helpers (matplotlib, Agg-safe).

Every function draws on ``ax`` when given, otherwise creates a
:class:`matplotlib.figure.Figure` (no pyplot, no global backend switch, so it works
headless and in notebooks alike) and returns the figure. Pass ``path=`` to save a PNG.

* :func:`plot_eval_curves` — test (or val) loss during annealing, mean over seeds with a ±1 sd band;
* :func:`plot_eval_bars` — final loss (mean ± sd) or the paired difference to the baseline
  with its confidence interval;
* :func:`save_eval_figure` — both, side by side, for ``results.json`` of the harness;
* :func:`plot_spectrum` — eigenvalues of the sketched curvature with the elbow k*;
* :func:`plot_backend_comparison` — objective / upper bound, certified ratio and time per backend.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39"]


def _report_dict(report: Any) -> dict[str, Any]:
    if isinstance(report, (str, Path)):
        p = Path(report)
        return json.loads((p / "results.json" if p.is_dir() else p).read_text())
    if hasattr(report, "to_dict"):
        return report.to_dict()
    if isinstance(report, Mapping):
        return dict(report)
    raise TypeError(f"expected an EvalReport, its dict or a results.json path, got {type(report).__name__}.")


def _axes(ax: Any, figsize: tuple[float, float]) -> tuple[Figure, Any]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot(1, 1, 1)


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def _color(labels: Sequence[str], lab: str) -> str:
    return _COLORS[list(labels).index(lab) % len(_COLORS)]


def plot_eval_curves(report: Any, split: str = "test", ax: Any = None, labels: Sequence[str] | None = None,
                     path: str | Path | None = None) -> Figure:
    """Loss on ``split`` vs annealing step: mean over seeds, shaded ±1 sd band, one line per selector.

    Args:
        report: an EvalReport, its ``to_dict()``, or a path to ``results.json`` / its directory.
        split: ``"test"`` or ``"val"``.
        labels: subset/order of selectors (default: all).
    """
    d = _report_dict(report)
    fig, ax = _axes(ax, (6.4, 4.2))
    all_labels = list(d["labels"])
    n = len(d["seeds"])
    for lab in labels or all_labels:
        c = d["summary"].get(lab, {}).get("curves", {}).get(split)
        if not c:
            continue
        x, m, s = np.asarray(c["steps"]), np.asarray(c["mean"]), np.asarray(c["std"])
        col = _color(all_labels, lab)
        ax.plot(x, m, color=col, lw=1.6, label=lab, ls="--" if lab == d.get("baseline") else "-")
        if n > 1:
            ax.fill_between(x, m - s, m + s, color=col, alpha=0.15, lw=0)
    ax.set_xlabel("annealing step (optimizer updates)")
    ax.set_ylabel(f"{split} loss (nats/byte)")
    ax.set_title(f"{split.capitalize()} loss during annealing (K={d.get('k')}, mean ± sd over {n} seed(s))")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _finish(fig, path)


def plot_eval_bars(report: Any, split: str = "test", kind: str = "diff", ax: Any = None,
                   path: str | Path | None = None) -> Figure:
    """Bar chart per selector.

    ``kind="diff"``: paired difference to the baseline (selector − baseline, same seed) with
    its t-interval as error bars (none for a single seed); ``kind="loss"``: final loss,
    mean ± sd over seeds.
    """
    if kind not in ("diff", "loss"):
        raise ValueError(f"kind={kind!r}; use 'diff' or 'loss'.")
    d = _report_dict(report)
    fig, ax = _axes(ax, (6.4, 4.2))
    labels = [l for l in d["labels"] if l in d["summary"]]
    n = len(d["seeds"])
    level = int(round(100 * float(d.get("level", 0.95))))
    if kind == "diff" and d.get("baseline") is None:
        kind = "loss"
    vals, lo, hi, shown = [], [], [], []
    for lab in labels:
        s = d["summary"][lab]
        if kind == "loss":
            m, sd = s[split]["mean"], s[split]["std"]
            vals.append(m); lo.append(sd); hi.append(sd); shown.append(lab)
        else:
            dd = s.get(f"diff_{split}_vs_baseline")
            if dd is None:
                continue
            m = dd["mean"]
            vals.append(m)
            lo.append(0.0 if dd.get("low") is None else m - dd["low"])
            hi.append(0.0 if dd.get("high") is None else dd["high"] - m)
            shown.append(lab)
    x = np.arange(len(shown))
    ax.bar(x, vals, yerr=np.vstack([lo, hi]) if shown else None, capsize=3,
           color=[_color(d["labels"], l) for l in shown], alpha=0.85)
    ax.set_xticks(x)
    ax.set_xticklabels(shown, rotation=35, ha="right", fontsize=8)
    if kind == "loss":
        ax.set_ylabel(f"final {split} loss (nats/byte)")
        ax.set_title(f"Final {split} loss after annealing (mean ± sd, n={n})")
        if vals:
            lo_v = min(v - e for v, e in zip(vals, lo))
            hi_v = max(v + e for v, e in zip(vals, hi))
            pad = 0.15 * max(hi_v - lo_v, 1e-3)
            ax.set_ylim(lo_v - pad, hi_v + pad)
    else:
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_ylabel(f"Δ {split} loss vs {d['baseline']} (nats/byte)")
        ci = f"{level}% t-interval" if n > 1 else "single seed, no interval"
        ax.set_title(f"Paired difference to {d['baseline']} (< 0 is better; {ci}, n={n})")
    ax.grid(alpha=0.3, axis="y")
    return _finish(fig, path)


def save_eval_figure(report: Any, path: str | Path, split: str = "test") -> Figure:
    """Three panels: loss curves, final loss bars, paired-difference bars; saved as PNG at ``path``."""
    fig = Figure(figsize=(18, 5.2), layout="constrained")
    axs = fig.subplots(1, 3)
    plot_eval_curves(report, split=split, ax=axs[0])
    plot_eval_bars(report, split=split, kind="loss", ax=axs[1])
    plot_eval_bars(report, split=split, kind="diff", ax=axs[2])
    return _finish(fig, path)


def plot_spectrum(eigvals: Any, k_star: int | None = None, ax: Any = None, threshold: float | None = None,
                  path: str | Path | None = None) -> Figure:
    """Eigenvalues λ_j of the sketched curvature (log scale) with cumulative energy and the elbow.

    Args:
        eigvals: (k,) eigenvalues, any order (plotted descending); values <= 0 are clipped
            to the smallest positive one for the log axis.
        k_star: the elbow (number of stiff directions); drawn as a vertical line.
        threshold: cumulative-energy threshold used for the elbow (e.g. 0.945), drawn dotted.
    """
    lam = np.sort(np.asarray(eigvals, dtype=np.float64).ravel())[::-1]
    fig, ax = _axes(ax, (6.4, 4.2))
    pos = lam[lam > 0]
    floor = pos.min() if pos.size else 1.0
    j = np.arange(1, lam.size + 1)
    ax.semilogy(j, np.maximum(lam, floor), color=_COLORS[0], lw=1.5, label="eigenvalue λ_j")
    ax.set_xlabel("eigen-direction index j (descending curvature)")
    ax.set_ylabel("eigenvalue λ_j (loss curvature units)", color=_COLORS[0])
    ax2 = ax.twinx()
    tot = np.clip(lam, 0, None).sum()
    cum = np.cumsum(np.clip(lam, 0, None)) / tot if tot > 0 else np.zeros_like(lam)
    ax2.plot(j, cum, color=_COLORS[1], lw=1.2, label="cumulative energy")
    ax2.set_ylabel("cumulative energy Σ_{i≤j} λ_i / Σ λ", color=_COLORS[1])
    ax2.set_ylim(0, 1.02)
    if threshold is not None:
        ax2.axhline(threshold, color=_COLORS[1], ls=":", lw=1, label=f"threshold {threshold:g}")
    if k_star is not None:
        ax.axvline(k_star, color="black", ls="--", lw=1, label=f"elbow k* = {k_star}")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="center right")
    stiff = "" if k_star is None else f": {k_star} stiff / {lam.size - k_star} flat"
    ax.set_title(f"Curvature spectrum (k = {lam.size}{stiff})")
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def _result_fields(r: Any) -> dict[str, Any]:
    if hasattr(r, "to_dict"):
        r = r.to_dict()
    r = dict(r)
    return {"objective": r.get("objective"), "upper_bound": r.get("upper_bound"),
            "certified_ratio": r.get("certified_ratio"), "time_s": r.get("time_s", r.get("solve_time_s")),
            "name": r.get("backend") or r.get("name")}


def plot_backend_comparison(results: Any, path: str | Path | None = None, title: str | None = None) -> Figure:
    """Compare solver backends on one problem: integer objective vs upper bound, certified ratio, time.

    Args:
        results: ``{name: SelectionResult | dict}`` or a list of them (name taken from
            ``backend``); dicts need ``objective``, ``upper_bound``, ``certified_ratio``,
            ``time_s`` (or ``solve_time_s``); missing values are skipped.
    """
    if isinstance(results, Mapping):
        items = [(str(k), _result_fields(v)) for k, v in results.items()]
    else:
        items = [(None, _result_fields(v)) for v in results]
        items = [(f["name"] or f"#{i}", f) for i, (_, f) in enumerate(items)]
    names = [n for n, _ in items]
    fig = Figure(figsize=(15, 4.4), layout="constrained")
    axs = fig.subplots(1, 3)
    x = np.arange(len(items))
    num = lambda v: np.nan if v is None or isinstance(v, str) else float(v)  # noqa: E731
    obj = [num(f["objective"]) for _, f in items]
    ub = [num(f["upper_bound"]) for _, f in items]
    axs[0].bar(x, obj, color=[_COLORS[i % len(_COLORS)] for i in range(len(items))], alpha=0.85,
               label="integer objective f(x)")
    axs[0].scatter(x, ub, marker="_", s=400, color="black", label="upper bound on the optimum")
    axs[0].set_ylabel("f(x) = ‖G x‖² (sketched gradient units²)")
    axs[0].set_title("Objective of the selection")
    axs[0].legend(fontsize=8)
    ratio = [num(f["certified_ratio"]) for _, f in items]
    axs[1].bar(x, ratio, color=[_COLORS[i % len(_COLORS)] for i in range(len(items))], alpha=0.85)
    axs[1].set_ylim(0, 1.05)
    axs[1].set_ylabel("certified ratio f(x) / upper bound (≤ 1)")
    axs[1].set_title("Certified quality (higher is better)")
    t = [num(f["time_s"]) for _, f in items]
    axs[2].bar(x, t, color=[_COLORS[i % len(_COLORS)] for i in range(len(items))], alpha=0.85)
    if any(v > 0 for v in t if np.isfinite(v)):
        axs[2].set_yscale("log")
    axs[2].set_ylabel("solve time (s, log scale)")
    axs[2].set_title("Wall-clock time")
    for a in axs:
        a.set_xticks(x)
        a.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        a.set_xlabel("backend")
        a.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)
