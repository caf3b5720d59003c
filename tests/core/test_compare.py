"""`direct-opt compare`: several backends on one saved problem; one-line errors."""

import json

import numpy as np
import pytest

from direct_opt import GradientStats, SelectionProblem
from direct_opt.cli import main
from direct_opt.compare import jaccard

K = 25


@pytest.fixture()
def stats_dir(tmp_path):
    rng = np.random.default_rng(1)
    s = GradientStats(G_flat=rng.standard_normal((8, 200)).astype(np.float32), a_stiff=rng.random(200) ** 3)
    return s.save(tmp_path / "stats")


def test_compare_table_json_and_plot(stats_dir, tmp_path, capsys):
    out, png = tmp_path / "cmp.json", tmp_path / "cmp.png"
    backends = ["sca-exact", "greedy", "random", "frank-wolfe"]
    code = main(["compare", "--stats", str(stats_dir), "-k", str(K), "--backends", ",".join(backends),
                 "--out", str(out), "--plot", str(png)])
    text = capsys.readouterr().out
    assert code == 0
    assert "Jaccard vs sca-exact" in text
    for b in backends:
        assert f"| {b} |" in text
    rec = json.loads(out.read_text())
    assert rec["backends"] == backends
    stats = GradientStats.load(stats_dir)
    prob = SelectionProblem.from_stats(stats, k=K)  # the default budget
    assert rec["stats"]["checksum"] == stats.checksum() and rec["parameters"]["tau"] == pytest.approx(prob.tau)
    rows = rec["results"]
    best = max(r["objective"] for r in rows.values())
    ref = rows["sca-exact"]["indices"]
    for b, r in rows.items():
        idx = np.array(r["indices"])
        assert r["feasible"] and len(idx) == K and len(set(idx.tolist())) == K
        assert prob.a[idx].sum() <= prob.tau * (1 + 1e-9)
        assert r["objective"] == pytest.approx(prob.selection_objective(idx), rel=1e-9)
        assert r["relative_to_best"] == pytest.approx(r["objective"] / best)
        assert 0 < r["certified_ratio"] <= 1 and r["objective"] <= r["upper_bound"]
        inter, union = len(set(ref) & set(r["indices"])), len(set(ref) | set(r["indices"]))
        assert r["jaccard_vs_first"] == pytest.approx(inter / union)
        assert r["result"]["backend"] == b
    assert rows["sca-exact"]["jaccard_vs_first"] == 1.0
    assert max(r["relative_to_best"] for r in rows.values()) == 1.0
    assert rec["tightest_upper_bound"] == pytest.approx(min(r["upper_bound"] for r in rows.values()))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_jaccard():
    assert jaccard([1, 2, 3], [2, 3, 4]) == pytest.approx(0.5)
    assert jaccard([], []) is None


def test_infeasible_budget_exits_1_with_reason(stats_dir, capsys):
    code = main(["compare", "--stats", str(stats_dir), "-k", str(K), "--tau", "1e-9", "--backends", "sca-exact,greedy"])
    out = capsys.readouterr().out
    assert code == 1
    assert "no backend found a feasible selection" in out and "smallest feasible budget" in out


@pytest.mark.parametrize("backends, fragment", [
    ("sca-exact,nope", "unknown backend(s) ['nope']"),
    (",", "--backends is empty"),
    ("greedy,greedy", "more than once"),
])
def test_bad_backend_names_one_line_exit_2(stats_dir, capsys, backends, fragment):
    code = main(["compare", "--stats", str(stats_dir), "-k", "5", "--backends", backends])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("direct-opt: error:") and fragment in err


def test_missing_stats_dir_is_one_line_error(capsys):
    code = main(["compare", "--stats", "/nonexistent/dir", "-k", "3", "--backends", "greedy"])
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1 and "does not exist" in err
