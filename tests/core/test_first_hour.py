"""What a newcomer meets in the first hour: quick start output, CLI listings, help and messages."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from direct_opt import GradientStats, SelectionProblem, solve
from direct_opt.cli import backends_table, build_parser, main
from direct_opt.compare import DEFAULT_BACKENDS
from direct_opt.errors import StatsFormatError
from direct_opt.result import STATUS_MEANING, STATUSES
from direct_opt.solvers import available_backends


@pytest.fixture(scope="module")
def mmap_stats(tmp_path_factory):
    rng = np.random.default_rng(0)
    run = tmp_path_factory.mktemp("run")
    GradientStats(G_flat=rng.standard_normal((8, 300)).astype(np.float32), a_stiff=rng.random(300) ** 2).save(
        run / "work" / "stats")
    return run


def test_memory_mapped_solve_warns_nothing_and_explains_its_status(mmap_stats):
    stats = GradientStats.load(mmap_stats / "work" / "stats", mmap=True)  # read-only arrays
    prob = SelectionProblem.from_stats(stats, k=30, tau_rel=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "NumPy array is not writable" warning used to show here
        res = solve(prob, backend="sca-exact", max_iter=2)
        prob.op.gram()  # torch B B^T on the read-only blocks
    assert res.status in STATUSES
    assert f"status {res.status}: {STATUS_MEANING[res.status]}" in res.summary()
    assert set(STATUS_MEANING) == set(STATUSES)
    assert "usable" in STATUS_MEANING["max_iter"]


def test_backends_listing_is_aligned_and_complete():
    text = backends_table(width=100)
    lines = text.splitlines()
    starts = [line.index("description") for line in lines[:1]]
    names = available_backends()
    rows = [line for line in lines if line.split(" ")[0] in names]
    assert [r.split(" ")[0] for r in rows] == names
    assert all(len(r) <= 100 for r in lines)
    # every description starts in the same column and continuation lines are indented to it
    assert all(r[starts[0] - 2:starts[0]] == "  " and r[starts[0]] != " " for r in rows)
    assert all(line[:starts[0]].strip() == "" for line in lines if line not in rows and line is not lines[0])
    # whole sentences: the descriptions end where their paragraph ends, not mid-sentence
    joined = re.sub(r"\s+", " ", text)
    assert "then 1-swap local search." in joined and "(uniform when the constraints do not bind)." in joined


def test_compare_leaves_out_the_slow_general_backend_by_default():
    assert "sca-osqp" not in DEFAULT_BACKENDS and set(DEFAULT_BACKENDS) <= set(available_backends())


@pytest.mark.parametrize("command", ["", "backends", "solve", "compare", "demo", "evaluate", "extract"])
def test_help_has_no_rest_markup(command, capsys):
    argv = [command, "--help"] if command else ["--help"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.strip() and "``" not in out and not re.search(r":(func|mod|class|meth):`", out)


def test_solve_on_a_run_directory_points_to_its_stats(mmap_stats, capsys):
    with pytest.raises(StatsFormatError, match=re.escape(f"--stats {mmap_stats / 'work' / 'stats'}")):
        GradientStats.load(mmap_stats)
    assert main(["solve", "--stats", str(mmap_stats), "-k", "5"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(mmap_stats / "work" / "stats") in err


def test_parser_builds():
    assert build_parser().prog == "direct-opt"
