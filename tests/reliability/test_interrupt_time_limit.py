"""Interrupted and time-limited solves (issue 6, "Faults").

* Ctrl-C (SIGINT) during a long ``direct-opt solve`` in a real process: exit code 130, one
  line saying it was interrupted, no traceback, no (partial) selection file.
* ``--time-limit SECONDS`` / ``solve(time_limit=...)``: the best feasible selection found so
  far, status ``"time_limit"``, recorded as such in the selection JSON.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from direct_opt import GradientStats, SelectionProblem, solve

from . import _lib
from .test_fuzz_cli import run_main

# never converges on its own: --tol 0 and a huge --max-iter (only Ctrl-C or the time limit stop it)
ENDLESS = ["-k", "400", "--tau-rel", "0.5", "--tol", "0", "--max-iter", "100000000"]

# the real `direct-opt` main(), plus a marker file written once the stats are loaded and the
# solve starts (so the signal lands inside the solve, not in interpreter start-up)
CHILD = """
import pathlib, sys
import direct_opt.cli as cli
real = cli.load_problem
def load_problem(args):
    loaded = real(args)
    pathlib.Path(sys.argv[1]).write_text("solving")
    return loaded
cli.load_problem = load_problem
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def big_stats(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    n = 20000
    s = GradientStats(G_flat=rng.standard_normal((8, n)).astype(np.float32), a_stiff=rng.random(n).astype(np.float32))
    return s.save(tmp_path_factory.mktemp("interrupt") / "stats")


def test_ctrl_c_exits_130_with_one_line_and_writes_nothing(big_stats, tmp_path):
    marker, out = tmp_path / "solving", tmp_path / "sel.json"
    cmd = [sys.executable, "-c", CHILD, str(marker), "solve", "--stats", str(big_stats), *ENDLESS, "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_lib.child_env())
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the child never started solving"
            time.sleep(0.05)
        time.sleep(0.5)  # well inside the (endless) solve
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stdout + stderr
    assert stderr.strip().splitlines() == [
        "direct-opt: interrupted (Ctrl-C); nothing was written for the unfinished step."], stderr
    assert not out.exists() and not list(tmp_path.glob(".sel.json.*"))  # no partial selection file


def test_cli_time_limit_returns_best_feasible_selection_so_far(big_stats, tmp_path):
    out = tmp_path / "sel.json"
    t0 = time.monotonic()
    code, stdout, stderr = run_main(["solve", "--stats", str(big_stats), *ENDLESS, "--time-limit", "0.5",
                                     "--out", str(out)])
    elapsed = time.monotonic() - t0
    assert code == 0, stderr
    assert "status=time_limit" in stdout
    rec = json.loads(out.read_text())
    res = rec["result"]
    assert res["status"] == "time_limit" and res["feasible"] and rec["parameters"]["time_limit"] == 0.5
    assert res["iterations"] >= 1 and len(res["history"]) == res["iterations"]
    objs = [h["objective"] for h in res["history"]]
    assert all(b >= a * (1 - 1e-12) for a, b in zip(objs, objs[1:]))  # SCA never lost ground: the last is the best
    stats = GradientStats.load(big_stats)
    problem = SelectionProblem.from_stats(stats, k=400, tau_rel=0.5)
    idx = np.array(res["indices"])
    x = np.zeros(problem.n)
    x[idx] = 1
    assert len(np.unique(idx)) == 400 and problem.is_feasible(x)
    assert problem.selection_objective(idx) == pytest.approx(res["objective"], rel=1e-9)
    assert elapsed < 0.5 + 20  # loading + one iteration + rounding past the limit; generous for loaded CI hosts


@pytest.mark.parametrize("backend", ["sca-exact", "frank-wolfe", "fw-block", "pga-dykstra", "greedy"])
def test_time_limit_status_for_every_iterative_backend(backend):
    rng = np.random.default_rng(1)
    n = 3000
    G, a = rng.standard_normal((6, n)), rng.random(n)
    problem = SelectionProblem(G, a, k=60, tau=0.5 * a.mean() * 60)
    res = solve(problem, backend=backend, tol=0.0, max_iter=10**8, time_limit=0.05)
    x = np.zeros(n)
    x[res.indices] = 1
    assert res.feasible and len(res.indices) == 60 and problem.is_feasible(x)
    if backend == "greedy":  # one pass, no iterations to cut short: it finishes unless rounding runs out of time
        assert res.status in ("converged", "time_limit")
    elif backend == "frank-wolfe" and res.converged:  # zero FW gap (a stationary vertex) may come first
        assert res.status in ("converged", "time_limit") and res.gap <= 1e-9 * max(1.0, res.objective_relaxed)
    else:  # with tol=0 these never converge: only the time limit can have stopped them
        assert res.status == "time_limit" and res.iterations >= 1 and not res.converged
    assert res.time_s < 30
