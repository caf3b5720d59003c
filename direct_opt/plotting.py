"""Plotting helpers (matplotlib, Agg-safe).

Every function draws on ``ax`` when given, otherwise creates a
:class:`matplotlib.figure.Figure` (no pyplot, no global backend switch, so it works
headless and in notebooks alike) and returns the figure. Pass ``path=`` to save a PNG.

* :func:`plot_eval_curves` — test (or val) loss during annealing, mean over seeds with a ±1 sd band;
* :func:`plot_eval_bars` — final loss (mean ± sd) or the paired difference to the baseline
  with its confidence interval;
* :func:`save_eval_figure` — both, side by side, for ``results.json`` of the harness;
* :func:`plot_spectrum` — eigenvalues of the sketched curvature with the elbow k*;
* :func:`plot_backend_comparison` — objective / upper bound, certified ratio and time per backend;
* :func:`plot_objective_vs_time` — integer objective against wall time, one point per backend;
* :func:`plot_convergence` — objective and step ‖w_{t+1} − w_t‖ per outer iteration against
  T_max and δ;
* :func:`plot_overlap` — Jaccard overlap between selections (heatmap), with :func:`jaccard`;
* :func:`save_comparison_figure` — the last three for one problem, in one PNG;
* :func:`plot_sweep` — how quantities change with one parameter (τ_rel, elbow energy, ...);
* :func:`plot_support_matrix` — which backend accepts which constraint;
* :func:`plot_flat_stiff_concept` — the flat/stiff picture (docs/math.md) on a 2-D quadratic.

:func:`comparison_table` renders the numbers behind the comparison plots as a Markdown table.

Every plot colours a method by its name through :func:`method_color` (one palette, so a backend
or selector has the same colour in every figure); bar charts start at 0.
"""

from __future__ import annotations

import json
import textwrap
import zlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39"]
#: one colour per method name (backends and selectors), used by every plot. ``random`` is grey
#: (the baseline); ``direct`` is the DiReCT program with its default backend, sca-exact.
PALETTE: dict[str, str] = {
    "random": "#7f7f7f", "sca-exact": "#1f77b4", "direct": "#1f77b4", "greedy": "#ff7f0e",
    "frank-wolfe": "#2ca02c", "fw-block": "#9467bd", "pga-dykstra": "#8c564b", "sca-osqp": "#17becf",
    "exact": "#393b79", "auto": "#637939", "less": "#d62728", "taylor": "#e377c2", "grad-norm": "#bcbd22",
    "loss": "#8c6d31", "excess-loss": "#843c39",
}
_EXTRA = ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
          "#5254a3", "#8ca252", "#bd9e39", "#ad494a", "#a55194"]


def method_name(label: str) -> str:
    """The method a plot label stands for: ``direct/greedy`` and ``direct:backend=greedy`` -> ``greedy``."""
    name = str(label)
    for prefix in ("direct/", "direct:backend="):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name.split(":")[0].split(",")[0]


def method_color(label: str) -> str:
    """The colour of a method in every plot (stable: names outside :data:`PALETTE` hash to one)."""
    name = method_name(label)
    return PALETTE.get(name) or _EXTRA[zlib.crc32(name.encode()) % len(_EXTRA)]


def _same_groups(values: Mapping[str, Any]) -> dict[str, list[str]]:
    """label -> the earlier labels whose value is identical (e.g. the same curve or selection)."""
    seen: dict[str, list[str]] = {}
    out: dict[str, list[str]] = {}
    for lab, v in values.items():
        key = json.dumps(v, default=str)
        out[lab] = list(seen.get(key, []))
        seen.setdefault(key, []).append(lab)
    return out


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
    if path is not None:  # rendered in memory, written atomically to a regular file (direct_opt.output)
        import io

        from .output import write_output

        buf = io.BytesIO()
        fig.savefig(buf, dpi=120, format=Path(path).suffix.lstrip(".").lower() or "png")
        write_output(Path(path), buf.getvalue(), "path")
    return fig


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
    n = len(d["seeds"])
    curves = {lab: d["summary"].get(lab, {}).get("curves", {}).get(split) for lab in labels or d["labels"]}
    curves = {lab: c for lab, c in curves.items() if c}
    same = _same_groups({lab: c["mean"] for lab, c in curves.items()})
    for lab, c in curves.items():
        x, m, s = np.asarray(c["steps"]), np.asarray(c["mean"]), np.asarray(c["std"])
        col = method_color(lab)
        # a curve identical to an earlier one is drawn dashed on top of it and named in the legend
        dup = same[lab]
        ls = "--" if lab == d.get("baseline") else ((0, (4, 3 + 2 * len(dup))) if dup else "-")
        name = f"{lab} (= {dup[0]}: identical curve)" if dup else lab
        ax.plot(x, m, color=col, lw=2.4 if not dup else 1.6, label=name, ls=ls, zorder=3 + len(dup))
        if n > 1 and not dup:
            ax.fill_between(x, m - s, m + s, color=col, alpha=0.15, lw=0)
    ax.set_xlabel("annealing step (optimizer updates)")
    ax.set_ylabel(f"{split} loss (nats/byte)")
    ax.set_title(textwrap.fill(f"{split.capitalize()} loss during annealing (K={d.get('k')}, mean ± sd over {n} "
                               "seed(s))", 50))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=1, loc="best")
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
           color=[method_color(l) for l in shown], alpha=0.85)
    ax.set_xticks(x)
    ax.set_xticklabels(shown, rotation=35, ha="right", fontsize=8)
    if kind == "loss":
        ax.set_ylabel(f"final {split} loss (nats/byte)")
        ax.set_title(textwrap.fill(f"Final {split} loss after annealing (mean ± sd, n={n}; axis from 0)", 50))
        ax.set_ylim(bottom=0)  # bars from 0: the differences are read in the paired-difference panel
    else:
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_ylabel(f"Δ {split} loss vs {d['baseline']} (nats/byte)")
        ci = f"{level}% t-interval" if n > 1 else "single seed, no interval"
        ax.set_title(textwrap.fill(f"Paired difference to {d['baseline']} (< 0 is better; {ci}, n={n})", 50))
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
    ax2.set_ylabel("cumulative energy of the first j directions (fraction of Σλ)", color=_COLORS[1])
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
    cols = [method_color(n) for n in names]
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    axs = fig.subplots(1, 3)
    x = np.arange(len(items))
    num = lambda v: np.nan if v is None or isinstance(v, str) else float(v)  # noqa: E731
    obj = [num(f["objective"]) for _, f in items]
    ub = [num(f["upper_bound"]) for _, f in items]
    # log scale, points not bars (a bar on a log axis has no meaningful base): a loose bound (often
    # 100x the objective) and the objectives stay readable together
    axs[0].scatter(x, obj, s=90, color=cols, zorder=3, label="integer objective f(x)")
    axs[0].scatter(x, ub, marker="_", s=400, color="black", label="upper bound on the optimum")
    positive = [v for v in obj + ub if np.isfinite(v) and v > 0]
    if positive:
        axs[0].set_yscale("log")
        axs[0].set_ylim(min(positive) / 40, max(positive) * 3)  # room below the points for the legend
    axs[0].set_ylabel("f(x) = ‖G x‖² (sketched gradient units², log scale)")
    axs[0].set_title("Objective of the selection and the bound")
    leg = axs[0].legend(fontsize=8, loc="lower right")
    leg.legend_handles[0].set_color("#555555")  # the points are coloured per backend
    same = _same_groups({n: (f["objective"], f["certified_ratio"]) for n, f in items})
    for i, n in enumerate(names):  # a backend tying an earlier one is marked
        if same[n] and np.isfinite(obj[i]):
            axs[0].annotate(f"= {same[n][0]}", (x[i], obj[i]), ha="center", va="bottom", fontsize=7,
                            xytext=(0, 7), textcoords="offset points")
    ratio = [num(f["certified_ratio"]) for _, f in items]
    axs[1].bar(x, ratio, color=cols, alpha=0.85)
    top = max([v for v in ratio if np.isfinite(v)] or [1.0])
    axs[1].set_ylim(0, min(1.05, 1.7 * top) if top > 0 else 1.05)  # zoomed to the ratios, from 0
    for i, v in enumerate(ratio):
        if np.isfinite(v):
            axs[1].annotate(f"{v:.3f}", (x[i], v), ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                            textcoords="offset points")
    axs[1].set_ylabel("certified ratio f(x) / upper bound (≤ 1)")
    axs[1].set_title("Certified quality (higher is better)")
    axs[1].text(0.02, 0.98, "f / optimum ≥ f / UB: a guaranteed fraction of the optimum.\n"
                "A low ratio mostly means a loose bound (it assumes\nperfectly aligned gradients), "
                "not necessarily a poor selection.",
                transform=axs[1].transAxes, va="top", fontsize=7, bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    t = [num(f["time_s"]) for _, f in items]
    axs[2].scatter(x, t, s=90, color=cols, zorder=3)  # points: a log axis gives bars no base
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


# ----------------------------------------------------------------- solver comparisons
def _as_dict(r: Any) -> dict[str, Any]:
    if hasattr(r, "to_dict"):
        d = r.to_dict()
        d["indices"] = np.asarray(getattr(r, "indices", d.get("indices", [])))
        return d
    if isinstance(r, Mapping):
        return dict(r)
    raise TypeError(f"expected a SelectionResult or its dict, got {type(r).__name__}.")


def _named(results: Any) -> list[tuple[str, dict[str, Any]]]:
    """``{name: result}`` or a list of results (named by ``backend``) -> [(name, dict)]."""
    if isinstance(results, Mapping):
        return [(str(k), _as_dict(v)) for k, v in results.items()]
    out = []
    for i, r in enumerate(results):
        d = _as_dict(r)
        out.append((str(d.get("backend") or d.get("name") or f"#{i}"), d))
    return out


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def comparison_table(results: Any) -> str:
    """Markdown table: status, feasibility, objective, upper bound, certified ratio, iterations, time.

    Args:
        results: ``{name: SelectionResult | dict}`` or a list of SelectionResults.
    """
    lines = ["| backend | status | feasible | K | objective f(x) | upper bound | certified ratio | iterations | time (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, d in _named(results):
        fmt = lambda v, p=".5g": "—" if not np.isfinite(_num(v)) else format(_num(v), p)  # noqa: E731
        lines.append(f"| {name} | {d.get('status', '—')} | {d.get('feasible', '—')} | {len(d.get('indices', []))} | "
                     f"{fmt(d.get('objective'))} | {fmt(d.get('upper_bound'))} | {fmt(d.get('certified_ratio'), '.3f')} | "
                     f"{d.get('iterations', '—')} | {fmt(d.get('time_s'), '.3f')} |")
    return "\n".join(lines)


def plot_objective_vs_time(results: Any, ax: Any = None, path: str | Path | None = None,
                           title: str | None = None) -> Figure:
    """Integer objective f(x) against solve wall time (log axis), one labelled point per backend.

    The tightest upper bound over the results (every one is valid for the same problem)
    is drawn as a dashed line; infeasible results are marked with an ``x`` at the bottom.

    Args:
        results: ``{name: SelectionResult | dict}`` or a list of SelectionResults.
    """
    items = _named(results)
    fig, ax = _axes(ax, (6.4, 4.2))
    ubs = [_num(d.get("upper_bound")) for _, d in items]
    objs = [_num(d.get("objective")) for _, d in items]
    floor = np.nanmin(objs) if np.isfinite(objs).any() else 0.0
    same = _same_groups({name: [int(i) for i in np.asarray(d.get("indices", [])).ravel()] or name
                         for name, d in items})
    for name, d in items:
        t = max(_num(d.get("time_s")), 1e-4)
        f = _num(d.get("objective"))
        col = method_color(name)
        if d.get("feasible", True) and np.isfinite(f):
            # the same selection as an earlier backend: a ring, so both points stay visible
            dup = same[name]
            ax.scatter([t], [f], s=140 if dup else 60, color="none" if dup else col, edgecolors=col,
                       linewidths=2 if dup else 0, zorder=3,
                       label=f"{name} (same selection as {', '.join(dup)})" if dup else name)
        else:
            ax.scatter([t], [floor], s=60, marker="x", color=col, label=f"{name} (infeasible)", zorder=3)
    if np.isfinite(ubs).any():
        ax.axhline(np.nanmin(ubs), color="black", ls="--", lw=1, label="tightest upper bound on the optimum")
    ax.set_xscale("log")
    ax.set_xlabel("solve wall time (s, log scale)")
    ax.set_ylabel("integer objective f(x) = ‖G x‖² (sketch units²)")
    ax.set_title(title or "Objective vs wall time (up and left is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _finish(fig, path)


def plot_convergence(results: Any, tol: float = 1e-4, max_iter: int = 20, path: str | Path | None = None,
                     title: str | None = None, axes: Sequence[Any] | None = None) -> Figure:
    """Per outer iteration: relaxed objective f(w_t) and step ‖w_t − w_{t−1}‖, one line per backend.

    The step panel (log scale) shows the stopping rule: the tolerance δ = ``tol`` (dotted)
    and the iteration cap T_max = ``max_iter`` (dashed). Backends without an iteration
    history (greedy, random) are skipped.

    Args:
        results: ``{name: SelectionResult | dict}`` or a list; each needs ``history``
            rows ``{"iter", "objective", "step"}``.
        axes: two existing axes (objective, step) to draw on instead of a new figure.
    """
    if axes is not None:
        ax_f, ax_s = axes
        fig = ax_f.figure
    else:
        fig = Figure(figsize=(12, 4.2), layout="constrained")
        ax_f, ax_s = fig.subplots(1, 2)
    drawn = 0
    named = [(name, d) for name, d in _named(results) if d.get("history")]
    same = _same_groups({name: [(_num(h["objective"]), _num(h["step"])) for h in d["history"]] for name, d in named})
    for name, d in named:
        hist = d["history"]
        it = np.array([h["iter"] for h in hist], dtype=float)
        col = method_color(name)
        dup = same[name]  # the same iterates as an earlier backend: dashed on top, named in the legend
        kw = {"ls": (0, (4, 3 + 2 * len(dup))), "marker": "x", "label": f"{name} (= {', '.join(dup)})"} if dup \
            else {"ls": "-", "marker": "o", "label": name}
        ax_f.plot(it, [_num(h["objective"]) for h in hist], ms=3, color=col, **kw)
        steps = np.array([_num(h["step"]) for h in hist])
        ax_s.semilogy(it, np.maximum(steps, 1e-12), ms=3, color=col, **kw)
        drawn += 1
    ax_s.axhline(tol, color="black", ls=":", lw=1, label=f"δ = {tol:g} (stop below)")
    ax_s.axvline(max_iter, color="black", ls="--", lw=1, label=f"T_max = {max_iter}")
    ax_f.set_xlabel("outer iteration t")
    ax_f.set_ylabel("relaxed objective f(w_t) (sketch units²)")
    ax_f.set_title("Objective per iteration (non-decreasing for SCA/FW)")
    ax_s.set_xlabel("outer iteration t")
    ax_s.set_ylabel("step ‖w_t − w_{t−1}‖ (log scale)")
    ax_s.set_title("Step size against the stopping rule")
    for a in (ax_f, ax_s):
        a.grid(alpha=0.3)
        a.set_xlim(0, max_iter + 1)
        if drawn or a is ax_s:
            a.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def save_comparison_figure(results: Any, path: str | Path, tol: float = 1e-4, max_iter: int = 20,
                           title: str | None = None) -> Figure:
    """Four panels for one problem solved by several backends, saved as PNG at ``path``:
    objective vs time, objective per iteration, step per iteration (against δ and T_max),
    and the Jaccard overlap of the selections.

    Args:
        results: ``{name: SelectionResult | dict}`` or a list of SelectionResults.
    """
    fig = Figure(figsize=(14, 10), layout="constrained")
    axs = fig.subplots(2, 2)
    plot_objective_vs_time(results, ax=axs[0, 0])
    plot_overlap(results, ax=axs[0, 1])
    plot_convergence(results, tol=tol, max_iter=max_iter, axes=(axs[1, 0], axs[1, 1]))
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def jaccard(a: Any, b: Any) -> float:
    """|A ∩ B| / |A ∪ B| of two index sets (1.0 for two empty sets)."""
    sa, sb = set(np.asarray(a).ravel().tolist()), set(np.asarray(b).ravel().tolist())
    union = len(sa | sb)
    return 1.0 if union == 0 else len(sa & sb) / union


def _selections(selections: Any) -> list[tuple[str, np.ndarray]]:
    items = selections.items() if isinstance(selections, Mapping) else [
        (getattr(r, "backend", f"#{i}"), r) for i, r in enumerate(selections)]
    out = []
    for name, v in items:
        idx = getattr(v, "indices", None)
        if idx is None and isinstance(v, Mapping):
            idx = v.get("indices")
        out.append((str(name), np.asarray(v if idx is None else idx)))
    return out


def plot_overlap(selections: Any, ax: Any = None, path: str | Path | None = None,
                 title: str | None = None) -> Figure:
    """Jaccard overlap |A ∩ B| / |A ∪ B| between every pair of selections, as an annotated heatmap.

    Args:
        selections: ``{name: indices | SelectionResult}`` or a list of SelectionResults.
    """
    items = _selections(selections)
    names = [n for n, _ in items]
    m = np.array([[jaccard(a, b) for _, b in items] for _, a in items]) if items else np.zeros((0, 0))
    fig, ax = _axes(ax, (1.2 + 0.75 * max(len(names), 2), 1.0 + 0.65 * max(len(names), 2)))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if m[i, j] < 0.6 else "black")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel("selection")
    ax.set_ylabel("selection")
    ax.figure.colorbar(im, ax=ax, label="Jaccard overlap |A∩B| / |A∪B| (0 to 1)")
    ax.set_title(title or "Overlap between selections")
    return _finish(fig, path)


def plot_sweep(x: Sequence[float], panels: Mapping[str, Sequence[float]], xlabel: str, *,
               mark: float | None = None, logx: bool = False, title: str | None = None,
               path: str | Path | None = None) -> Figure:
    """One small panel per quantity, each plotted against the swept parameter ``x``.

    Args:
        x: (n,) parameter values (e.g. τ_rel or the elbow energy).
        panels: ``{y-axis label (with units): (n,) values}``; NaN values are gaps. A panel whose
            values all lie in [0, 1] (a fraction, an overlap) is drawn on a 0–1 axis.
        xlabel: the parameter's name and units.
        mark: a reference value of the parameter (e.g. the default), drawn dashed.
        logx: log-scale x axis.
    """
    if not panels:
        raise ValueError("panels is empty; pass {label: values}.")
    x = np.asarray(x, dtype=float)
    fig = Figure(figsize=(4.2 * len(panels), 3.8), layout="constrained")
    axs = np.atleast_1d(fig.subplots(1, len(panels)))
    for i, (ax, (label, y)) in enumerate(zip(axs, panels.items())):
        y = np.asarray([_num(v) for v in y])
        if y.shape != x.shape:
            raise ValueError(f"panel {label!r} has {y.size} values for {x.size} parameter values.")
        ax.plot(x, y, marker="o", color=_COLORS[i % len(_COLORS)])
        fin = y[np.isfinite(y)]
        if fin.size and fin.min() >= 0 and fin.max() <= 1:  # a fraction / overlap: its whole 0-1 range, no zoom
            ax.set_ylim(0, 1.05)
        if mark is not None:
            ax.axvline(mark, color="black", ls="--", lw=1, label=f"default {mark:g}")
            ax.legend(fontsize=7)
        if logx:
            ax.set_xscale("log")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # tick labels never run into each other
        ax.tick_params(axis="x", labelsize=8)
        # wrapped to the panel's width, so neighbouring panels' labels never overlap
        ax.set_xlabel(textwrap.fill(xlabel, 40), fontsize=9)
        ax.set_ylabel(textwrap.fill(label, 40), fontsize=9)
        ax.set_title(textwrap.fill(label.split(" (")[0], 40), fontsize=10)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_support_matrix(table: Mapping[str, Mapping[str, Any]], ax: Any = None, path: str | Path | None = None,
                        title: str | None = None) -> Figure:
    """Which backend accepts which constraint: green = solved, orange = infeasible, grey = refused.

    Args:
        table: ``{constraint: {backend: outcome}}`` where outcome is ``True``/"ok" (accepted
            and solved), ``"infeasible"`` (accepted, no selection exists), or ``False``/"refused".
    """
    rows = list(table)
    cols = sorted({b for r in table.values() for b in r})
    code = {True: 2, "ok": 2, "infeasible": 1, False: 0, "refused": 0}
    m = np.array([[code.get(table[r].get(c, False), 0) for c in cols] for r in rows], dtype=float)
    fig, ax = _axes(ax, (1.8 + 0.9 * len(cols), 1.2 + 0.5 * len(rows)))
    from matplotlib.colors import ListedColormap

    ax.imshow(m, cmap=ListedColormap(["#bbbbbb", "#ff7f0e", "#2ca02c"]), vmin=0, vmax=2, aspect="auto")
    words = {2: "yes", 1: "infeas.", 0: "refused"}
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, words[int(m[i, j])], ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=8)
    ax.set_xlabel("backend")
    ax.set_ylabel("constraint added")
    ax.set_title(title or "Which backend honours which constraint")
    return _finish(fig, path)


# ------------------------------------------------------------------------- concepts
def plot_flat_stiff_concept(path: str | Path | None = None, lam_stiff: float = 8.0, lam_flat: float = 0.4,
                            lr: float = 0.235, steps: int = 12) -> Figure:
    """The flat/stiff picture on the quadratic loss L(θ) = ½ (λ_s θ_s² + λ_f θ_f²).

    Left: loss contours and gradient descent with a fixed learning rate — the step
    oscillates across the stiff direction and makes slow steady progress along the flat
    one. Right: candidate sample gradients in the same eigenbasis; the program prefers
    samples whose gradients add up along the flat axis and spend little energy
    (λ_s g_s²) along the stiff axis.
    """
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    u = np.linspace(-2.2, 2.2, 200)
    TF, TS = np.meshgrid(u, u)
    L = 0.5 * (lam_stiff * TS**2 + lam_flat * TF**2)
    ax.contour(TF, TS, L, levels=np.geomspace(0.02, 20, 12), colors="#999999", linewidths=0.7)
    th = np.array([-2.0, 0.9])  # (flat, stiff)
    path_pts = [th.copy()]
    for _ in range(steps):
        th = th - lr * np.array([lam_flat * th[0], lam_stiff * th[1]])
        path_pts.append(th.copy())
    pts = np.array(path_pts)
    ax.plot(pts[:, 0], pts[:, 1], "-o", ms=3, color=_COLORS[1], label=f"gradient descent, lr = {lr:g}")
    ax.annotate("", xy=(1.9, 0), xytext=(0.9, 0), arrowprops={"arrowstyle": "->", "color": _COLORS[0], "lw": 2})
    ax.text(0.9, 0.12, f"flat: λ = {lam_flat:g}\nsteps make progress", color=_COLORS[0], fontsize=8)
    ax.annotate("", xy=(0, 1.9), xytext=(0, 0.9), arrowprops={"arrowstyle": "->", "color": _COLORS[3], "lw": 2})
    ax.text(0.1, 1.45, f"stiff: λ = {lam_stiff:g}\nsteps oscillate", color=_COLORS[3], fontsize=8)
    ax.set_xlabel("θ along the flat eigen-direction (parameter units)")
    ax.set_ylabel("θ along the stiff eigen-direction (parameter units)")
    ax.set_title("Loss contours: stiff vs flat directions")
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="lower right")
    rng = np.random.default_rng(0)
    g = np.column_stack([rng.normal(0.6, 0.6, 24), rng.normal(0.0, 0.9, 24)])  # (flat, stiff) per sample
    cost = lam_stiff * g[:, 1] ** 2
    good = (g[:, 0] > 0.3) & (cost < np.median(cost))
    for gi, ok in zip(g, good):
        ax2.annotate("", xy=tuple(gi), xytext=(0, 0),
                     arrowprops={"arrowstyle": "->", "color": _COLORS[2] if ok else "#bbbbbb", "lw": 1.4 if ok else 0.9})
    ax2.plot([], [], color=_COLORS[2], label="preferred: aligned along flat, cheap along stiff")
    ax2.plot([], [], color="#bbbbbb", label="others (large stiff energy λ_s g_s², or no flat push)")
    ax2.set_xlim(-1.6, 2.4)
    ax2.set_ylim(-2.4, 2.4)
    ax2.axhline(0, color="black", lw=0.6)
    ax2.axvline(0, color="black", lw=0.6)
    ax2.set_xlabel("sample gradient along the flat direction g_f (sketch units)")
    ax2.set_ylabel("sample gradient along the stiff direction g_s (sketch units)")
    ax2.set_title("Candidate gradients in the eigenbasis")
    ax2.legend(fontsize=7, loc="lower right")
    return _finish(fig, path)
