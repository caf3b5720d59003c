"""The default stiff budget always admits a selection; an infeasible solve writes no selection;
per-sample ids / token counts in the stats (format 2, format 1 still loads); TokenBudget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from direct_opt import GradientStats, SelectionProblem, TokenBudget, solve
from direct_opt.cli import main
from direct_opt.errors import InvalidInputError, InvalidParameterError
from direct_opt.problem import feasible_budget


def costly_stats(n=60, r=5, seed=0):
    """Every sample has a stiff cost >= 1: the paper's tau_rel = 0.1 admits no K-subset."""
    rng = np.random.default_rng(seed)
    return GradientStats(rng.standard_normal((r, n)), 1.0 + rng.random(n), sample_ids=np.arange(100, 100 + n),
                         token_counts=rng.integers(5, 50, n))


def test_default_budget_is_feasible_where_the_paper_budget_is_not():
    st = costly_stats()
    paper = SelectionProblem.from_stats(st, k=10, tau_rel=0.1)
    assert paper.tau < paper.min_budget()
    assert solve(paper, backend="sca-exact").status == "infeasible"
    prob = SelectionProblem.from_stats(st, k=10)
    tau_min, tau_mean = np.sort(st.a_stiff)[:10].sum(), st.a_stiff.mean() * 10
    assert prob.tau == pytest.approx(tau_min + 0.1 * (tau_mean - tau_min)) and prob.tau >= prob.min_budget()
    res = solve(prob, backend="sca-exact")
    assert res.success and st.a_stiff[res.indices].sum() <= prob.tau * (1 + 1e-12)
    assert SelectionProblem.from_stats(st, k=10, budget_frac=0.0).tau == pytest.approx(tau_min)
    with pytest.raises(InvalidParameterError, match="budget_frac"):
        feasible_budget(st.a_stiff, 10, frac=1.5)


def test_infeasible_cli_solve_writes_no_selection(tmp_path, capsys):
    costly_stats().save(tmp_path / "stats")
    out = tmp_path / "sel.json"
    assert main(["solve", "--stats", str(tmp_path / "stats"), "-k", "10", "--tau-rel", "0.1", "--out", str(out)]) == 1
    assert not out.exists()
    rec = json.loads((tmp_path / "sel.infeasible.json").read_text())
    assert rec["result"]["status"] == "infeasible" and "no selection" in capsys.readouterr().out
    assert main(["solve", "--stats", str(tmp_path / "stats"), "-k", "10", "--out", str(out)]) == 0  # default budget
    assert len(json.loads(out.read_text())["result"]["indices"]) == 10


def test_ids_and_token_counts_roundtrip_and_format_1_loads(tmp_path):
    st = costly_stats()
    st.save(tmp_path / "s")
    back = GradientStats.load(tmp_path / "s")
    assert back.sample_ids.tolist() == st.sample_ids.tolist() and back.token_counts.tolist() == st.token_counts.tolist()
    # a format-1 directory (no ids / token counts) still loads
    man = json.loads((tmp_path / "s" / "manifest.json").read_text())
    man["format_version"] = 1
    for key in ("sample_ids", "token_counts"):
        del man["arrays"][key]
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(man))
    old = GradientStats.load(tmp_path / "s")
    assert old.sample_ids is None and old.token_counts is None
    with pytest.raises(InvalidParameterError, match="not unique"):
        GradientStats(st.G_flat, st.a_stiff, sample_ids=np.zeros(st.n, dtype=np.int64))
    with pytest.raises(InvalidInputError, match="no token_counts"):
        TokenBudget(old, max_tokens=100)


def test_token_budget_from_stats():
    st = costly_stats()
    cap = int(0.8 * st.token_counts.mean() * 10)
    prob = SelectionProblem.from_stats(st, k=10, budget_frac=0.5, constraints=[TokenBudget(st, max_tokens=cap)])
    res = solve(prob, backend="sca-exact")
    assert res.success and st.token_counts[res.indices].sum() <= cap
