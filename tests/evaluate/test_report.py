"""results.json / table.md / eval.png of a full 7-selector evaluation contain what the issue asks for."""

from __future__ import annotations

import json

import numpy as np
import pytest

from direct_opt.evaluate import ALL_SELECTORS, EvalReport, paired_difference
from direct_opt.selectors import available_selectors


def test_every_selector_in_table_json_and_plot(full_report):
    rep, out = full_report
    assert set(ALL_SELECTORS) <= set(available_selectors())
    table = (out / "table.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| selector")]
    assert [r.split("|")[1].strip() for r in rows] == list(ALL_SELECTORS)
    assert "test loss (mean ± sd)" in table and "Δ test vs random [95% CI]" in table
    d = json.loads((out / "results.json").read_text())
    assert d["format"] == "direct_opt.eval_report" and d["labels"] == list(ALL_SELECTORS)
    assert set(d["summary"]) == set(ALL_SELECTORS) and sorted(d["ranking"]) == sorted(ALL_SELECTORS)
    assert sorted((r["label"], r["seed"]) for r in d["runs"]) == sorted((s, i) for s in ALL_SELECTORS for i in (0, 1))
    assert (out / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(f"{s}__seed{i}.json" for s in ALL_SELECTORS
                                                                     for i in (0, 1))
    back = EvalReport.load(out)
    assert back.labels == rep.labels and back.table() == rep.table()


def test_table_numbers_match_the_runs(full_report):
    rep, _ = full_report
    table = rep.table()
    for lab in ALL_SELECTORS:
        fin = rep.final_losses(lab)
        xs = [fin[0], fin[1]]
        row = next(r for r in table.splitlines() if r.startswith(f"| {lab} |"))
        assert f"{np.mean(xs):.4f} ± {np.std(xs, ddof=1):.4f}" in row
        if lab != "random":
            ref = rep.final_losses("random")
            d = paired_difference([fin[0], fin[1]], [ref[0], ref[1]])
            assert f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]" in row
    assert rep.verdict("direct").startswith("direct ")


def test_composition_selection_time_and_program_scores(full_report):
    rep, _ = full_report
    for r in rep.runs:
        comp = r["composition"]
        assert sum(comp.values()) == pytest.approx(1.0)
        assert set(comp) <= {"clean:words", "degraded:random"}
        idx = np.array(r["indices"])
        assert comp.get("degraded:random", 0.0) == pytest.approx(np.mean(idx >= 16))  # rows 16.. are noise
        assert r["selection_time_s"] >= 0 and len(set(r["indices"])) == 8
        p = r["program"]
        # the certified ratio f/UB is reported only for selections within the stiff budget
        assert (p["certified_ratio"] is not None) == p["budget_ok"]
        if p["budget_ok"]:
            assert 0 <= p["certified_ratio"] <= 1 + 1e-9
    s = rep.summary
    assert s["direct"]["program"]["budget_ok_fraction"] == 1.0  # the program's own selection keeps its budget
    assert s["random"]["target_fraction"] == pytest.approx(1 - s["random"]["degraded_fraction"])
    assert rep.stats_info["n"] == 32 and rep.stats_info["extract_time_s"] >= 0


@pytest.mark.parametrize("mean, low, high, word", [
    (-0.05, -0.08, -0.01, "beat"),                  # interval below 0
    (-0.05, -0.12, +0.02, "is not shown to beat"),  # lower mean, interval includes 0
    (-0.05, None, None, "is not shown to beat"),    # one seed, no interval
    (+0.05, -0.01, +0.08, "did NOT beat"),
])
def test_verdict_says_beat_only_when_the_interval_excludes_0(mean, low, high, word):
    d = {"mean": mean, "low": low, "high": high, "n": 3 if low is not None else 1,
         "significant": low is not None and (low > 0 or high < 0)}
    rep = EvalReport(config={}, runs=[], labels=["random", "x"], seeds=[0], baseline="random",
                     summary={"x": {"diff_test_vs_baseline": d}})
    assert rep.verdict("x").startswith(f"x {word} random on held-out test loss")


def test_second_reference_column_and_verdict(full_report):
    rep, _ = full_report
    table = rep.table(against=["less"])
    assert "Δ test vs less [95% CI]" in table and "selector − random, less" in table
    less = rep.final_losses("less")
    for lab in ALL_SELECTORS:
        row = next(r for r in table.splitlines() if r.startswith(f"| {lab} |")).split("|")
        if lab == "less":
            assert row[4].strip() == "—"
            continue
        fin = rep.final_losses(lab)
        d = paired_difference([fin[0], fin[1]], [less[0], less[1]])
        assert row[4].strip().startswith(f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]")
        assert rep.diff(lab, "less")["mean"] == pytest.approx(d.mean)
    assert " less on held-out test loss" in rep.verdict("direct", against="less")
    back = EvalReport.from_dict({**rep.to_dict(), "compare_to": ["less"]})
    assert back.table() == table
    with pytest.raises(Exception, match="no selector labelled 'nope'"):
        rep.table(against=["nope"])
