"""`direct-opt demo --quick`: the end-to-end job through the evaluation harness.

One quick demo run (module fixture) is checked field by field against the files it wrote
and against the gradient statistics it extracted; a second, smaller run with the same
seed must reproduce it exactly.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from direct_opt import GradientStats, SelectionProblem
from direct_opt.cli import main

PNG = b"\x89PNG\r\n\x1a\n"
BACKENDS = ("sca-exact", "greedy", "frank-wolfe", "fw-block", "pga-dykstra")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    import contextlib
    import io

    out = tmp_path_factory.mktemp("demo")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["demo", "--quick", "--out", str(out), "--quiet"])
    assert code == 0, buf.getvalue()
    return out, json.loads((out / "results.json").read_text()), buf.getvalue()


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_results_json_has_every_method_and_field(demo):
    out, res, _ = demo
    assert res["format"] == "direct_opt.demo" and res["seeds"] == [0, 1] and res["seed"] == 0
    sz = res["sizes"]
    assert sz["k"] == math.ceil(0.1 * sz["n_pool"]) and 0 < sz["k"] < sz["n_pool"]
    for key in ("n_val", "n_test", "n_pretrain", "seq_len", "k_sketch", "r_flat", "k_star", "model_parameters"):
        assert isinstance(sz[key], int) and sz[key] > 0, key
    labels = list(res["methods"])
    assert labels == ["random", *(f"direct/{b}" for b in BACKENDS), "less"]
    before = {m["val_loss_before"] for m in res["methods"].values()}
    assert len(before) == 1, "every method must anneal from the same checkpoint"
    for lab, m in res["methods"].items():
        for key in ("val_loss_before", "val_loss_after", "test_loss_before", "test_loss_after", "solve_time_s",
                    "objective", "upper_bound", "stiff_cost", "tau"):
            assert _finite(m[key]), (lab, key, m[key])
        assert m["solve_time_s"] >= 0 and m["objective"] >= 0
        assert len(m["per_seed"]) == 2
        assert m["val_loss_after"] == pytest.approx(np.mean([p["val_after"] for p in m["per_seed"]]))
        assert m["test_loss_after"] == pytest.approx(np.mean([p["test_after"] for p in m["per_seed"]]))
        if lab == "random":
            assert m["diff_test_vs_random"] is None
        else:
            d = m["diff_test_vs_random"]
            want = np.mean([p["test_after"] - q["test_after"]
                            for p, q in zip(m["per_seed"], res["methods"]["random"]["per_seed"])])
            assert d["mean"] == pytest.approx(want) and d["n"] == 2 and d["low"] <= d["mean"] <= d["high"]


def test_selections_are_k_distinct_in_range_and_match_results(demo):
    out, res, _ = demo
    sel = json.loads((out / "selections.json").read_text())
    k, n = res["sizes"]["k"], res["sizes"]["n_pool"]
    assert sel["k"] == k and sel["n_pool"] == n and sel["selections"] == res["selections"]
    assert set(sel["selections"]) == set(res["methods"])
    for lab, by_seed in sel["selections"].items():
        assert set(by_seed) == {"0", "1"}
        for idx in by_seed.values():
            assert len(idx) == k and len(set(idx)) == k and min(idx) >= 0 and max(idx) < n, lab
    # deterministic backends choose the same set whatever the evaluation seed
    assert sel["selections"]["direct/sca-exact"]["0"] == sel["selections"]["direct/sca-exact"]["1"]
    assert sel["selections"]["random"]["0"] != sel["selections"]["random"]["1"]


def test_objective_and_certificate_agree_with_the_extracted_stats(demo):
    out, res, _ = demo
    stats = GradientStats.load(next(out.glob("work/quick-seed0/eval/extract/stats")))
    assert stats.n == res["sizes"]["n_pool"] and stats.r == res["sizes"]["r_flat"]
    prob = SelectionProblem.from_stats(stats, k=res["sizes"]["k"], tau_rel=0.1)
    assert res["methods"]["random"]["tau"] == pytest.approx(prob.tau)
    for lab, m in res["methods"].items():
        for p in m["per_seed"]:
            idx = np.array(res["selections"][lab][str(p["seed"])])
            assert p["objective"] == pytest.approx(prob.selection_objective(idx), rel=1e-6), lab
        if m["kind"] == "direct":  # budget-feasible by construction: a certified ratio in (0, 1]
            assert m["budget_ok"] and m["stiff_cost"] <= m["tau"] * (1 + 1e-9)
            assert 0 < m["certified_ratio"] <= 1
            assert m["certified_ratio"] == pytest.approx(m["objective"] / m["upper_bound"], rel=1e-9)
            assert m["objective"] <= m["upper_bound"]
            assert all(s in ("converged", "max_iter") for s in m["solver_status"])
        elif not m["budget_ok"]:  # the bound only covers budget-feasible selections
            assert m["certified_ratio"] is None


def test_plots_table_and_verdict(demo):
    out, res, stdout = demo
    for name in ("demo.png", "backends.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG and len(data) > 10_000, name
    table = (out / "table.md").read_text()
    for lab in res["methods"]:
        assert f"| {lab} |" in table and f"| {lab} |" in stdout
    assert res["verdict"] in stdout and res["verdict"].startswith("VERDICT:")
    diffs = [m["diff_test_vs_random"]["mean"] for m in res["methods"].values() if m["kind"] == "direct"]
    if all(d >= 0 for d in diffs):
        assert "did NOT beat random" in res["verdict"]
    else:
        assert "beat random" in res["verdict"] and "did NOT" not in res["verdict"]


def test_same_seed_reproduces_selections_and_losses(demo, tmp_path):
    out, res, _ = demo
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["demo", "--quick", "--out", str(tmp_path / "again"), "--quiet", "--seed", "0",
                     "--n-seeds", "1", "--backends", "sca-exact", "--no-less"])
    assert code == 0
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["seeds"] == [0] and list(again["methods"]) == ["random", "direct/sca-exact"]
    for lab in again["methods"]:
        assert again["selections"][lab]["0"] == res["selections"][lab]["0"]
        assert again["methods"][lab]["per_seed"][0] == {**res["methods"][lab]["per_seed"][0],
                                                        "solve_time_s": again["methods"][lab]["per_seed"][0]["solve_time_s"]}


@pytest.mark.parametrize("argv, fragment", [
    (["demo", "--backends", "sca-exact,nope"], "unknown backend"),
    (["demo", "--seed", "-1"], "must be >= 0"),
    (["demo", "--n-seeds", "0"], "must be > 0"),
])
def test_bad_arguments_exit_2_with_one_line(argv, fragment, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("direct-opt: error:") and fragment in err
    assert not (tmp_path / "x").exists()


def test_seed_sets_data_seed_and_evaluation_seeds():
    from direct_opt.demo import demo_config

    cfg = demo_config(quick=False, seed=5, n_seeds=None, backends=["greedy"], less=False)
    assert cfg["data_seed"] == 5 and cfg["seeds"] == [5, 6, 7]
    assert cfg["selectors"] == ["random", "direct:backend=greedy"]
    assert demo_config(quick=True, seed=2, n_seeds=1, backends=[])["seeds"] == [2]
