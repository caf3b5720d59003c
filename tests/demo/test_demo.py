"""`direct-opt demo --quick`: the end-to-end job through the evaluation harness.

The quick demo runs twice, side by side, in two child processes at 1 and 2 CPU threads: their
results.json and selections.json must be byte-identical (the README's numbers are what the
command prints on any machine). The 2-thread run is then checked field by field against the
files it wrote and against the gradient statistics it extracted.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from direct_opt import GradientStats, SelectionProblem
from direct_opt.cli import main

PNG = b"\x89PNG\r\n\x1a\n"
BACKENDS = ("sca-exact", "greedy", "frank-wolfe", "fw-block", "pga-dykstra")
REPO = Path(__file__).resolve().parents[2]


def _spawn_quick_demo(out: Path, threads: int) -> subprocess.Popen:
    """``direct-opt demo --quick --out OUT`` in a child python at ``threads`` CPU threads."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    code = (f"import sys, torch; torch.set_num_threads({threads}); from direct_opt.cli import main; "
            f"sys.exit(main(['demo', '--quick', '--out', {str(out)!r}, '--quiet']))")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """{threads: (out dir, stdout)} of two quick demos run side by side at 1 and 2 threads."""
    base = tmp_path_factory.mktemp("demo")
    procs = {t: _spawn_quick_demo(base / f"threads{t}", t) for t in (1, 2)}
    runs = {}
    for t, proc in procs.items():
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        runs[t] = (base / f"threads{t}", out)
    return runs


@pytest.fixture(scope="module")
def demo(demo_runs):
    out, stdout = demo_runs[2]
    return out, json.loads((out / "results.json").read_text()), stdout


def test_results_are_byte_identical_at_1_and_2_threads(demo_runs):
    (one, _), (two, _) = demo_runs[1], demo_runs[2]
    for name in ("results.json", "selections.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    timings = json.loads((two / "timings.json").read_text())  # what may differ lives apart
    assert timings["phases"]["total"] > 0 and timings["cpu_s"] > 0


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
    assert labels == ["random", *(f"direct/{b}" for b in BACKENDS), "less", "less-diverse"]
    before = {m["val_loss_before"] for m in res["methods"].values()}
    assert len(before) == 1, "every method must anneal from the same checkpoint"
    for lab, m in res["methods"].items():
        for key in ("val_loss_before", "val_loss_after", "test_loss_before", "test_loss_after",
                    "objective", "upper_bound", "stiff_cost", "tau"):
            assert _finite(m[key]), (lab, key, m[key])
        assert m["objective"] >= 0
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
    diffs = [m["diff_test_vs_random"] for m in res["methods"].values() if m["kind"] == "direct"]
    if any(d["mean"] < 0 and d["significant"] for d in diffs):
        assert "beat random" in res["verdict"] and "NOT" not in res["verdict"]
    else:
        assert "NOT" in res["verdict"]
    d = res["methods"]["less-diverse"]["diff_test_vs_random"]
    assert f"The toolkit's default selector less-diverse" in res["verdict"]
    assert f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]" in res["verdict"]
    assert ("beat random" if d["significant"] and d["mean"] < 0 else "random:") in res["verdict"]
    assert "written to" in stdout and "timings.json" in stdout
    assert "gradient statistics of the pool:" in stdout and "on your own data" in stdout
    stats = stdout.split("gradient statistics of the pool: ")[1].splitlines()[0]
    assert GradientStats.load(stats).n == res["sizes"]["n_pool"]  # the path it prints is real


def _fake_report(mean, low, high):
    d = {"mean": mean, "low": low, "high": high, "n": 3, "std": 0.01,
         "significant": low is not None and (low > 0 or high < 0)}
    return SimpleNamespace(labels=["random", "direct/greedy"], baseline="random", winner="direct/greedy",
                           summary={"direct/greedy": {"diff_test_vs_baseline": d}})


@pytest.mark.parametrize("mean, low, high, beats", [
    (-0.05, -0.08, -0.01, True),   # interval below 0: beats
    (-0.05, -0.12, +0.02, False),  # lower mean, interval includes 0: not shown
    (-0.05, None, None, False),    # single seed: no interval, not shown
    (+0.05, +0.01, +0.08, False),  # worse
])
def test_verdict_says_beats_random_only_when_the_interval_excludes_0(mean, low, high, beats):
    from direct_opt.demo import verdict

    text = verdict(_fake_report(mean, low, high))
    assert ("beat random" in text and "NOT" not in text) is beats, text


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


def test_help_quotes_the_measured_run_time(capsys):
    from direct_opt.demo import MEASURED_CPU

    assert main(["demo", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for kind in ("default", "quick"):
        assert f"about {MEASURED_CPU[kind]} of CPU time" in text or f"about {MEASURED_CPU[kind]} for" in text
    assert "<= 5 min" in text and "<= 60 s" in text
