"""direct_opt.plotting: the comparison/concept plots draw labelled figures from real solver results."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from direct_opt import SelectionProblem, solve
from direct_opt import plotting


@pytest.fixture(scope="module")
def results():
    rng = np.random.default_rng(0)
    G, a = rng.standard_normal((8, 120)), rng.random(120)
    out = {}
    for b in ("sca-exact", "frank-wolfe", "greedy", "random"):
        out[b] = solve(SelectionProblem(G, a, k=12, tau=0.3 * a.mean() * 12), backend=b, seed=0)
    return out


def _labelled(fig: Figure) -> None:
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title(), ax


def test_jaccard():
    assert plotting.jaccard([1, 2, 3], [2, 3, 4]) == pytest.approx(0.5)
    assert plotting.jaccard([], []) == 1.0
    assert plotting.jaccard(np.array([5]), [6]) == 0.0


def test_comparison_plots(results, tmp_path):
    fig = plotting.plot_objective_vs_time(results, path=tmp_path / "ovt.png")
    _labelled(fig)
    assert (tmp_path / "ovt.png").stat().st_size > 1000
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert all(any(t.startswith(name) for t in legend) for name in results)
    fig = plotting.plot_convergence(results, tol=1e-4, max_iter=20)
    _labelled(fig)
    drawn = {l.get_label().split(" ")[0] for l in fig.axes[0].get_lines()}
    assert {"sca-exact", "frank-wolfe"} <= drawn and "greedy" not in drawn  # no history, not drawn
    ys = fig.axes[0].get_lines()[0].get_ydata()
    assert np.all(np.diff(ys) >= -1e-9 * abs(ys).max())  # SCA objective is non-decreasing
    fig = plotting.plot_backend_comparison(results)
    assert len(fig.axes) == 3
    fig = plotting.save_comparison_figure(results, tmp_path / "all.png", title="four panels")
    assert (tmp_path / "all.png").read_bytes()[:4] == b"\x89PNG"
    _labelled(fig)
    assert len([a for a in fig.axes if a.get_label() != "<colorbar>"]) == 4


def test_overlap_heatmap_values(results):
    fig = plotting.plot_overlap(results)
    _labelled(fig)
    img = fig.axes[0].get_images()[0].get_array()
    names = list(results)
    assert img.shape == (4, 4) and np.allclose(np.diag(img), 1.0)
    i, j = names.index("sca-exact"), names.index("random")
    assert img[i, j] == pytest.approx(plotting.jaccard(results["sca-exact"].indices, results["random"].indices))


def test_sweep_support_concept_and_table(results):
    fig = plotting.plot_sweep([0.05, 0.1, 0.2], {"objective (units)": [1, 2, 3], "overlap (0-1)": [0.2, 1, np.nan]},
                              xlabel="τ_rel", mark=0.1, logx=True)
    assert len(fig.axes) == 2
    _labelled(fig)
    with pytest.raises(ValueError, match="values for 3"):
        plotting.plot_sweep([1, 2, 3], {"y": [1, 2]}, xlabel="x")
    fig = plotting.plot_support_matrix({"quota": {"a": "ok", "b": "refused"}, "agg": {"a": "infeasible", "b": True}})
    assert fig.axes[0].get_images()[0].get_array().tolist() == [[2, 0], [1, 2]]
    _labelled(plotting.plot_flat_stiff_concept())
    table = plotting.comparison_table(results)
    lines = table.splitlines()
    assert len(lines) == 2 + len(results) and all(l.startswith("|") and l.endswith("|") for l in lines)
    assert f"| sca-exact | {results['sca-exact'].status} | True | 12 |" in table


def test_spectrum_marks_elbow():
    lam = np.array([50.0, 30.0, 10.0, 5.0, 3.0, 2.0, 0.0])
    fig = plotting.plot_spectrum(lam[::-1], k_star=4, threshold=0.945)  # any order: plotted descending
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and "4 stiff / 3 flat" in ax.get_title()
    assert np.allclose(ax.get_lines()[0].get_ydata()[:6], lam[:6])
    cum = fig.axes[1].get_lines()[0].get_ydata()
    assert cum[-1] == pytest.approx(1.0) and np.all(np.diff(cum) >= 0)
    assert any(l.get_label() == "elbow k* = 4" for l in ax.get_lines())


# ----------------------------------------------------------------- plots that carry their message
def test_one_colour_per_method_in_every_plot(results):
    from matplotlib.colors import to_hex

    assert plotting.method_color("direct/greedy") == plotting.method_color("direct:backend=greedy") \
        == plotting.method_color("greedy")
    known = ["random", "sca-exact", "greedy", "frank-wolfe", "fw-block", "pga-dykstra", "sca-osqp", "less",
             "taylor", "grad-norm", "loss", "excess-loss"]
    assert len({plotting.method_color(n) for n in known}) == len(known)
    assert plotting.method_color("my-new-backend") == plotting.method_color("my-new-backend")  # stable
    fig = plotting.plot_backend_comparison(results)
    want = [plotting.method_color(n) for n in results]
    # the same backend has the same colour in every panel, whatever its position
    for ax in (fig.axes[0], fig.axes[2]):  # objective and time: points on log axes
        assert [to_hex(c[:3]) for c in ax.collections[0].get_facecolor()] == want
    assert [to_hex(b.get_facecolor()[:3]) for b in fig.axes[1].patches[:len(results)]] == want  # ratio bars
    fig = plotting.plot_objective_vs_time(dict(reversed(list(results.items()))))
    for coll in fig.axes[0].collections:
        name = coll.get_label().split(" ")[0]
        rgba = coll.get_facecolor() if coll.get_facecolor().size and coll.get_facecolor()[0][3] > 0 \
            else coll.get_edgecolor()
        assert to_hex(rgba[0][:3]) == plotting.method_color(name)


def _report(means):
    summary = {lab: {"test": {"mean": m, "std": 0.01}, "curves": {"test": {"steps": [0, 5], "mean": [3.0, m],
                                                                            "std": [0, 0.01]}},
                     "diff_test_vs_baseline": None if lab == "random" else
                     {"mean": m - means["random"], "low": m - means["random"] - 0.02,
                      "high": m - means["random"] + 0.02, "n": 3}}
               for lab, m in means.items()}
    return {"labels": list(means), "seeds": [0, 1, 2], "baseline": "random", "summary": summary, "k": 10}


def test_loss_bars_start_at_0_and_identical_curves_are_marked():
    rep = _report({"random": 2.80, "direct/sca-exact": 2.86, "direct/frank-wolfe": 2.86, "less": 2.75})
    fig = plotting.plot_eval_bars(rep, kind="loss")
    assert fig.axes[0].get_ylim()[0] == 0  # no truncated axis exaggerating differences
    fig = plotting.plot_eval_curves(rep)
    labels = [l.get_label() for l in fig.axes[0].get_lines()]
    assert "direct/frank-wolfe (= direct/sca-exact: identical curve)" in labels
    fw = next(l for l in fig.axes[0].get_lines() if l.get_label().startswith("direct/frank-wolfe"))
    assert fw.get_linestyle() != "-"  # drawn dashed over sca-exact, both visible


def test_backend_comparison_reads_a_loose_bound_and_a_low_ratio():
    res = {"sca-exact": {"objective": 1e6, "upper_bound": 8e8, "certified_ratio": 0.00125, "time_s": 0.1},
           "frank-wolfe": {"objective": 1e6, "upper_bound": 8e8, "certified_ratio": 0.00125, "time_s": 0.2},
           "greedy": {"objective": 5e5, "upper_bound": 8e8, "certified_ratio": 0.000625, "time_s": 0.01}}
    fig = plotting.plot_backend_comparison(res)
    ax_obj, ax_ratio = fig.axes[0], fig.axes[1]
    assert ax_obj.get_yscale() == "log"  # an 8e8 bound does not flatten 1e6 objectives
    assert ax_ratio.get_ylim()[0] == 0 and ax_ratio.get_ylim()[1] < 0.01  # ratios of 1e-3 are visible
    texts = [t.get_text() for t in ax_ratio.texts]
    assert "0.001" in texts and any("loose bound" in t for t in texts)
    assert any(t.get_text() == "= sca-exact" for t in ax_obj.texts)  # the tie is marked


def _overlapping_texts(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes = []
    for i, ax in enumerate(fig.axes):
        lo, hi = sorted(ax.get_xlim())
        drawn = [t for t, x in zip(ax.get_xticklabels(), ax.get_xticks()) if lo <= x <= hi]  # in view
        texts = [ax.xaxis.label, ax.title, *drawn]
        boxes += [(i, t.get_window_extent(renderer)) for t in texts if t.get_text() and t.get_visible()]
        # a label wider than its panel runs into the neighbour's (the notebook's sweep panels did)
        assert ax.xaxis.label.get_window_extent(renderer).width <= ax.get_window_extent(renderer).width, i
    return [(a, b) for n, (i, a) in enumerate(boxes) for j, b in boxes[n + 1:] if i != j and a.overlaps(b)]


def test_sweep_panels_do_not_overlap_their_labels():
    taus = [0.03, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]
    fig = plotting.plot_sweep(taus, {"objective f(x) (sketch units²)": range(7),
                                     "budget used aᵀx / τ (fraction)": range(7),
                                     "Jaccard overlap with τ_rel = 0.1 (0 to 1)": range(7)},
                              xlabel="τ_rel (stiff budget relative to mean(a)·K); gaps = infeasible", mark=0.1,
                              logx=True)
    assert not _overlapping_texts(fig)
    fig = plotting.plot_sweep([1, 2, 3], {"budget used (fraction)": [0.997, 0.998, 0.9986]}, xlabel="x")
    assert fig.axes[0].get_ylim() == (0, 1.05)  # a fraction is not zoomed into its noise
    fig = plotting.plot_sweep([0.5, 0.7, 0.8, 0.9, 0.945, 0.98, 0.995], {"k*": range(7), "f": range(7)},
                              xlabel="elbow cumulative-energy threshold; gaps = infeasible", mark=0.945)
    assert not _overlapping_texts(fig)
