"""The direct-opt command: solve writes an auditable JSON; bad input is one line, no traceback."""

import json

import numpy as np
import pytest

from direct_opt import GradientStats, SelectionProblem
from direct_opt.cli import main


@pytest.fixture()
def stats_dir(tmp_path):
    rng = np.random.default_rng(0)
    s = GradientStats(G_flat=rng.standard_normal((8, 300)).astype(np.float32), a_stiff=rng.random(300))
    return s.save(tmp_path / "stats")


def test_backends_lists_every_backend(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    for name in ("sca-exact", "sca-osqp", "pga-dykstra", "frank-wolfe", "fw-block", "greedy", "random"):
        assert name in out


def test_solve_writes_selection_json(stats_dir, tmp_path, capsys):
    out = tmp_path / "sel.json"
    assert main(["solve", "--stats", str(stats_dir), "-k", "30", "--out", str(out)]) == 0
    assert "certified_ratio" in capsys.readouterr().out
    rec = json.loads(out.read_text())
    idx = np.array(rec["result"]["indices"])
    assert len(idx) == 30 and rec["backend"] == "sca-exact"
    stats = GradientStats.load(stats_dir)
    assert rec["stats"]["checksum"] == stats.checksum()
    prob = SelectionProblem.from_stats(stats, k=30)  # the default budget (feasible_budget)
    assert prob.selection_objective(idx) == pytest.approx(rec["result"]["objective"], rel=1e-9)
    assert rec["parameters"]["tau"] == pytest.approx(prob.tau)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["solve", "--stats", "{d}", "-k", "0"], "must be > 0"),
        (["solve", "--stats", "{d}", "-k", "3", "--backend", "nope"], "unknown backend"),
        (["solve", "--stats", "/nonexistent/dir", "-k", "3"], "does not exist"),
        (["solve", "--stats", "{d}", "-k", "100000"], "-k 100000 exceeds the pool size"),
        (["solve", "--stats", "{d}", "-k", "3", "--tau-rel", "-1"], "--tau-rel must be > 0"),
        (["solve", "--stats", "{d}", "-k", "3", "--tau", "nan"], "finite"),
        (["frobnicate"], "invalid choice"),
        ([], "no command"),
    ],
)
def test_bad_arguments_one_line_no_traceback(stats_dir, capsys, argv, fragment):
    code = main([a.replace("{d}", str(stats_dir)) for a in argv])
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("direct-opt: error:")
    assert fragment in err


def test_infeasible_budget_exits_nonzero_with_reason(stats_dir, capsys):
    assert main(["solve", "--stats", str(stats_dir), "-k", "30", "--tau", "1e-9"]) == 1
    assert "smallest feasible budget" in capsys.readouterr().out


def test_solve_on_a_torch_device_matches_numpy(stats_dir, tmp_path):
    """--device runs the products with G through torch; the selection is the same as numpy's."""
    a, b = tmp_path / "np.json", tmp_path / "torch.json"
    assert main(["solve", "--stats", str(stats_dir), "-k", "30", "--out", str(a)]) == 0
    assert main(["solve", "--stats", str(stats_dir), "-k", "30", "--device", "cpu", "--out", str(b)]) == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert rb["parameters"]["device"] == "cpu" and ra["parameters"]["device"] is None
    assert ra["result"]["indices"] == rb["result"]["indices"]
    assert rb["result"]["objective"] == pytest.approx(ra["result"]["objective"], rel=1e-6)


def test_solve_on_an_unknown_device_is_one_line_error(stats_dir, capsys):
    assert main(["solve", "--stats", str(stats_dir), "-k", "30", "--device", "tpu9"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("direct-opt: error:") and "tpu9" in err and "\n" not in err
