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
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= set(results)
    fig = plotting.plot_convergence(results, tol=1e-4, max_iter=20)
    _labelled(fig)
    drawn = {l.get_label() for l in fig.axes[0].get_lines()}
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
